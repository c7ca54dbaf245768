//! Pushlet on the worker: hands requests to the Pushlet thread and writes its
//! answers: whole responses, or the pieces of an open stream.

use super::conn::{Awaiting, Conn, Phase};
use super::worker::{set_phase, Worker};
use crate::chunk::Chunk;
use crate::http::response::BodyKind;
use crate::http::{Response, Version};
use crate::pushlet::engine::ConnRef;
use crate::pushlet::thread::{Part, PushletIn};
use crate::reactor::{ConnKey, Io};
use crate::transport::chunk_of;

fn pushlet_response(content_type: &str) -> Response {
    Response::new(200)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-store, no-cache, must-revalidate")
        .header("Pragma", "no-cache")
        .header("Expires", "Sat, 6 May 1995 12:00:00 GMT")
        .header("X-Accel-Buffering", "no")
}

impl Worker {
    pub(super) fn pushlet_request(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        mut fields: Vec<(String, String)>,
        path: String,
        bearer: Option<String>,
    ) {
        // A token in `Authorization: Bearer` counts like `token=`.
        if let Some(token) = bearer.filter(|_| !fields.iter().any(|(n, _)| n == "token" || n == "p_token")) {
            fields.push(("token".into(), token));
        }
        set_phase(io, key, Phase::Waiting(Awaiting::Pushlet));
        let remote = io.peer(key).map(|a| a.ip());
        let from = ConnRef { loop_id: self.loop_id, conn: key.to_u64() };
        self.pushlet.send(PushletIn::Request { from, fields, path, remote });
    }

    pub(super) fn on_pushlet(&mut self, io: &mut Io<Conn>, conn: u64, part: Part) {
        let key = ConnKey::from_u64(conn);
        let Some(c) = io.conn(key) else { return };
        let (version, chunked) = (c.version, c.version == Version::Http11);
        match (&c.phase, part) {
            (Phase::Waiting(Awaiting::Pushlet), Part::Whole { content_type, body }) => {
                let answer = |v: Version, k: bool| pushlet_response(content_type).with_body(&body, v, k);
                self.finish_waiting(io, key, answer);
            }
            (Phase::Waiting(Awaiting::Pushlet), Part::Open { content_type, body }) => {
                let kind = if chunked { BodyKind::Chunked } else { BodyKind::UntilClose };
                let mut head = pushlet_response(content_type).head(kind, version, chunked);
                if let Some(origin) = &c.cors {
                    super::respond::add_cors(&mut head, origin);
                }
                c.phase = Phase::Waiting(Awaiting::PushletStream);
                io.send_exempt(key, Chunk::Owned(head));
                io.send_exempt(key, Chunk::Owned(chunk_of(&body, chunked)));
            }
            (Phase::Waiting(Awaiting::PushletStream), Part::More(body)) => {
                io.send(key, Chunk::Owned(chunk_of(&body, chunked)));
            }
            (Phase::Waiting(Awaiting::PushletStream), Part::End(body)) => {
                c.phase = Phase::Closing;
                io.send_exempt(key, Chunk::Owned(chunk_of(&body, chunked)));
                if chunked {
                    io.send_exempt(key, Chunk::Static(crate::http::chunked::LAST_CHUNK));
                }
                io.close_after_flush(key);
            }
            _ => {}
        }
    }

    /// A connection holding a Pushlet request or stream went away.
    pub(super) fn pushlet_closed(&mut self, key: ConnKey) {
        self.pushlet.send(PushletIn::Closed(ConnRef { loop_id: self.loop_id, conn: key.to_u64() }));
    }
}
