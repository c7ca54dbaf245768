//! Bayeux on the worker: hands requests to the Bayeux thread and writes its
//! answers, as an HTTP response (long-polling, callback-polling) or as a
//! WebSocket frame. The protocol itself lives in `crate::bayeux`.

use super::conn::{Awaiting, Conn, Phase, Subscription, WsSession};
use super::respond;
use super::worker::{set_phase, Worker};
use crate::bayeux::engine::{ConnRef, Transport};
use crate::bayeux::message::{parse_body, Incoming, Unreadable};
use crate::bayeux::thread::BayeuxIn;
use crate::chunk::Chunk;
use crate::http::Version;
use crate::reactor::{ConnKey, Io};
use crate::transport::{Encoding, Transport as Hub};
use crate::ws::{encode_frame, Opcode};

impl Worker {
    fn conn_ref(&self, key: ConnKey) -> ConnRef {
        ConnRef { loop_id: self.loop_id, conn: key.to_u64() }
    }

    /// A polling request: the connection waits for the Bayeux thread's answer.
    pub(super) fn bayeux_request(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        messages: Vec<Result<Incoming, Unreadable>>,
        jsonp: Option<String>,
    ) {
        let transport = if jsonp.is_some() { Transport::CallbackPolling } else { Transport::LongPolling };
        let remote = io.peer(key).map(|a| a.ip());
        if let Some(conn) = io.conn(key) {
            conn.jsonp = jsonp;
            conn.phase = Phase::Waiting(Awaiting::Bayeux);
        }
        let from = self.conn_ref(key);
        self.bayeux.send(BayeuxIn::Request { from, transport, messages, remote });
    }

    /// Upgrades to a WebSocket that carries Bayeux messages.
    pub(super) fn bayeux_socket(&mut self, io: &mut Io<Conn>, key: ConnKey, accept: String) {
        let mut session = WsSession::new(accept.clone());
        session.bayeux = true;
        let now = io.now();
        let sub = Subscription {
            channels: Vec::new(),
            transport: Hub::Ws,
            encoding: Encoding::Ws,
            chunked: false,
            callback: None,
            poll_timeout: Default::default(),
            last_id: Default::default(),
            gap: false,
            registered: false,
            collected: Vec::new(),
            ends_at: Some(now + self.shared.max_stream_age),
            end_reason: crate::transport::EndReason::MaxAge,
            token_expires: None,
            ws: Some(Box::new(session)),
        };
        io.send_exempt(key, Chunk::Owned(respond::ws_head(&accept, false)));
        set_phase(io, key, Phase::Streaming(Box::new(sub)));
        io.set_deadline(key, now + self.shared.heartbeat);
    }

    /// A text message on a Bayeux WebSocket.
    pub(super) fn bayeux_frame(&mut self, io: &mut Io<Conn>, key: ConnKey, text: &str) {
        match parse_body(text.as_bytes()) {
            Ok(messages) => {
                let remote = io.peer(key).map(|a| a.ip());
                let from = self.conn_ref(key);
                self.bayeux.send(BayeuxIn::Request {
                    from,
                    transport: Transport::WebSocket,
                    messages,
                    remote,
                });
            }
            Err(e) => {
                let reply = serde_json::json!([{ "channel": "/meta/unknown", "successful": false, "error": format!("400::{}", e.0) }]);
                io.send(key, Chunk::Owned(encode_frame(Opcode::Text, reply.to_string().as_bytes())));
            }
        }
    }

    /// The Bayeux thread answered: write it the way the connection expects.
    pub(super) fn on_bayeux(&mut self, io: &mut Io<Conn>, conn: u64, body: Vec<u8>) {
        let key = ConnKey::from_u64(conn);
        let Some(c) = io.conn(key) else { return };
        match &c.phase {
            Phase::Streaming(sub) if sub.ws.as_ref().is_some_and(|w| w.bayeux) => {
                io.send(key, Chunk::Owned(encode_frame(Opcode::Text, &body)));
            }
            Phase::Waiting(Awaiting::Bayeux) => {
                let jsonp = c.jsonp.take();
                let answer = |v: Version, k: bool| respond::bayeux(&body, jsonp.as_deref(), v, k);
                self.finish_waiting(io, key, answer);
            }
            _ => {}
        }
    }

    /// A Bayeux WebSocket closed: its sessions fall back to queueing.
    pub(super) fn bayeux_closed(&mut self, key: ConnKey) {
        let from = self.conn_ref(key);
        self.bayeux.send(BayeuxIn::Closed(from));
    }
}
