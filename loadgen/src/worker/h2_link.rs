//! `--h2-streams S`: subscribers as HTTP/2 streams, S to a connection (a
//! "link"). The link owns the socket (and TLS, ALPN `h2`) and the sans-IO
//! `crate::h2::Client`; each stream is one `Sub`, decoded and counted by the
//! same code as an HTTP/1.1 subscriber (`sub.rs`), so every statistic
//! means the same: connect time until the stream's response HEADERS,
//! deliveries, losses, order and latency per stream.
//!
//! A link's token is its index (in HTTP/2 mode no subscriber has a socket).
//! When a link fails (connect error, EOF, a protocol error, GOAWAY) every
//! subscriber on it ends with that reason.

use std::collections::HashMap;
use std::io::{self, Read};
use std::ops::Range;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::dial::{connect_result, dial};
use super::sub::{end_sub, mark_connected, on_h2_data, on_h2_end, on_h2_head, Decoder, Flow, State};
use super::Worker;
use crate::cli::Transport;
use crate::decode::{sse, stream};
use crate::h2::{frame, hpack, Client, Event};

/// One HTTP/2 connection and the subscribers it carries.
pub struct Link {
    stream: Option<TcpStream>,
    tls: Option<Box<rustls::ClientConnection>>,
    client: Client,
    /// An incomplete frame left from the last read.
    carry: Vec<u8>,
    /// Open stream id → local subscriber index.
    streams: HashMap<u32, usize>,
    /// The local subscribers on this connection.
    pub subs: Range<usize>,
    /// Which `--sub-url` (node) it goes to; also picks the source address.
    ordinal: usize,
    connecting: bool,
    alpn_checked: bool,
    closed: bool,
}

impl Link {
    pub fn new(subs: Range<usize>, ordinal: usize) -> Link {
        Link {
            stream: None,
            tls: None,
            client: Client::new(),
            carry: Vec::new(),
            streams: HashMap::new(),
            subs,
            ordinal,
            connecting: false,
            alpn_checked: false,
            closed: false,
        }
    }
}

/// What is left to do after a batch of events (the client was busy).
pub enum Todo {
    /// A long-poll answer is complete: request the next one.
    Repoll(usize),
    /// A stream loadgen gave up on (bad head): tell the server.
    Cancel(u32),
    /// The server reset this subscriber's stream.
    Reset(usize, u32),
}

/// A subscriber's request header lines (HTTP/1.1 text, shared with
/// `sub::write_request`) as HTTP/2 fields.
fn h1_fields(lines: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r")?;
        let colon = memchr::memchr(b':', line)?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

impl Worker<'_> {
    /// Opens link `l`: its subscribers start connecting.
    pub(super) fn open_link(&mut self, l: usize) {
        let now = Instant::now();
        let range = self.links[l].subs.clone();
        for i in range.clone() {
            self.subs[i].started = now;
            self.subs[i].state = State::Connecting;
            self.ctx.pending += 1;
        }
        self.next = range.end;
        if let Err(e) = self.dial_link(l) {
            self.fail_link(l, &format!("connect: {e}"));
        }
    }

    fn dial_link(&mut self, l: usize) -> io::Result<()> {
        let link = &mut self.links[l];
        let target = self.cfg.sub_urls[link.ordinal % self.cfg.sub_urls.len()].addr;
        let mut stream = dial(self.cfg, link.ordinal, target)?;
        self.poll.registry().register(&mut stream, Token(l), Interest::READABLE | Interest::WRITABLE)?;
        link.stream = Some(stream);
        link.connecting = true;
        if let Some((config, name)) = &self.tls {
            let tls =
                rustls::ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
            link.tls = Some(Box::new(tls));
        }
        Ok(())
    }

    /// Ends link `l` and every subscriber still on it.
    pub(super) fn fail_link(&mut self, l: usize, why: &str) {
        let link = &mut self.links[l];
        if let Some(mut s) = link.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        link.closed = true;
        link.streams.clear();
        for i in link.subs.clone() {
            end_sub(&mut self.subs[i], &mut self.ctx, why);
        }
    }

    /// Subscriber `i` ended on loadgen's side: reset its stream.
    pub(super) fn h2_drop_stream(&mut self, i: usize) {
        let id = std::mem::take(&mut self.subs[i].h2_stream);
        let Some(link) = self.links.iter_mut().find(|k| k.subs.contains(&i)) else { return };
        if id != 0 && link.streams.remove(&id).is_some() {
            link.client.reset(id, frame::CANCEL);
        }
    }

    /// Queues subscriber `i`'s request (the first, or the next poll).
    fn request(&mut self, l: usize, i: usize) -> Result<(), String> {
        let link = &mut self.links[l];
        let node = link.ordinal % self.cfg.sub_urls.len();
        let url = &self.cfg.sub_urls[node];
        let sub = &mut self.subs[i];
        let base = &self.paths[node][sub.ch as usize];
        let (mut path, mut lines) = (Vec::with_capacity(base.len() + 32), Vec::with_capacity(128));
        path.extend_from_slice(base.as_bytes());
        match &sub.dec {
            Decoder::Sse(_) => lines.extend_from_slice(sse::REQUEST_HEADERS),
            Decoder::Stream(_) => lines.extend_from_slice(stream::REQUEST_HEADERS),
            Decoder::Poll(p) => {
                p.write_query(&mut path, base);
                p.write_headers(&mut lines);
            }
            Decoder::Ws(_) => return Err("no WebSocket over HTTP/2".into()),
        }
        let extra = self.cfg.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()));
        let mut block = Vec::with_capacity(256);
        let scheme = if url.tls { "https" } else { "http" };
        hpack::write_request(&mut block, scheme, &url.host, &path, h1_fields(&lines).chain(extra));
        let id = link.client.request(&block)?;
        link.streams.insert(id, i);
        sub.h2_stream = id;
        sub.state = State::Head;
        Ok(())
    }

    pub(super) fn link_event(&mut self, l: usize, closed: bool) {
        if l >= self.links.len() || self.links[l].closed {
            return;
        }
        if self.links[l].connecting {
            let stream = self.links[l].stream.as_ref().expect("stream");
            match connect_result(stream) {
                Ok(false) => return,
                Err(e) => return self.fail_link(l, &format!("connect: {e}")),
                Ok(true) => {
                    self.links[l].connecting = false;
                    for i in self.links[l].subs.clone() {
                        if self.subs[i].state != State::Connecting {
                            continue; // expired meanwhile
                        }
                        if let Err(e) = self.request(l, i) {
                            return self.fail_link(l, &e);
                        }
                        // A long-poll counts as connected once its first request is out.
                        if self.ctx.transport == Transport::LongPoll {
                            mark_connected(&mut self.subs[i], &mut self.ctx);
                        }
                    }
                }
            }
        }
        if let Err(e) = self.pump(l, closed) {
            self.fail_link(l, &e);
        }
    }

    /// Reads until the socket would block, handling what arrives, and writes
    /// what the client has to send.
    fn pump(&mut self, l: usize, closed: bool) -> Result<(), String> {
        flush(&mut self.links[l]).map_err(|e| format!("write: {e}"))?;
        let mut buf = std::mem::take(&mut self.buf);
        let result = if self.links[l].tls.is_some() {
            self.link_read_tls(l, &mut buf)
        } else {
            self.link_read_plain(l, &mut buf, closed)
        };
        self.buf = buf;
        result?;
        flush(&mut self.links[l]).map_err(|e| format!("write: {e}"))
    }

    fn link_read_plain(&mut self, l: usize, buf: &mut [u8], closed: bool) -> Result<(), String> {
        loop {
            let Some(stream) = self.links[l].stream.as_mut() else { return Ok(()) };
            let n = match stream.read(buf) {
                Ok(0) => return Err(eof_reason(&self.links[l])),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            self.feed(l, &buf[..n])?;
            flush(&mut self.links[l]).map_err(|e| format!("write: {e}"))?;
            // A short read drained the socket: the next data brings a new edge.
            if n < buf.len() && !closed {
                return Ok(());
            }
        }
    }

    /// `read_plain` through TLS; checks ALPN once the handshake is done.
    fn link_read_tls(&mut self, l: usize, buf: &mut [u8]) -> Result<(), String> {
        loop {
            let link = &mut self.links[l];
            let (Some(stream), Some(tls)) = (link.stream.as_mut(), link.tls.as_mut()) else { return Ok(()) };
            match tls.read_tls(stream) {
                Ok(0) => return Err(eof_reason(link)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
            let state = tls.process_new_packets().map_err(|e| format!("tls: {e}"))?;
            if !link.alpn_checked && !tls.is_handshaking() {
                if tls.alpn_protocol() != Some(&b"h2"[..]) {
                    return Err("TLS: the server did not agree to HTTP/2 (ALPN h2)".into());
                }
                link.alpn_checked = true;
            }
            loop {
                let Some(tls) = self.links[l].tls.as_mut() else { return Ok(()) };
                let Some(n) = super::dial::plaintext(tls, buf)? else { break };
                self.feed(l, &buf[..n])?;
            }
            flush(&mut self.links[l]).map_err(|e| format!("write: {e}"))?;
            if state.peer_has_closed() {
                return Err(eof_reason(&self.links[l]));
            }
        }
    }

    /// Hands received bytes to the client; stream events go to their
    /// subscribers, then what had to wait for the client is done.
    fn feed(&mut self, l: usize, data: &[u8]) -> Result<(), String> {
        let now = crate::parse::realtime_ns();
        let Worker { links, subs, ctx, h2_todo: todo, .. } = self;
        let Link { client, carry, streams, .. } = &mut links[l];
        let mut goaway = None;
        let mut on = |e: Event<'_>| {
            let stream = match &e {
                Event::GoAway { last_stream, code, debug } => {
                    let debug = String::from_utf8_lossy(debug);
                    goaway = Some(format!(
                        "GOAWAY {} (last stream {last_stream}){}",
                        frame::code_name(*code),
                        if debug.is_empty() { String::new() } else { format!(": {debug}") }
                    ));
                    return;
                }
                Event::Response { stream, .. }
                | Event::BadResponse { stream, .. }
                | Event::Data { stream, .. }
                | Event::End { stream }
                | Event::Reset { stream, .. } => *stream,
            };
            let Some(&i) = streams.get(&stream) else { return };
            let sub = &mut subs[i];
            let flow = match e {
                Event::Response { head, .. } => {
                    on_h2_head(sub, head.status, head.content_type(), ctx).map(|_| Flow::Ok)
                }
                Event::Data { data, .. } => on_h2_data(sub, data, now, ctx),
                Event::End { .. } => {
                    streams.remove(&stream);
                    Ok(on_h2_end(sub, now, ctx))
                }
                Event::BadResponse { why, .. } => {
                    streams.remove(&stream);
                    Err(why)
                }
                Event::Reset { code, .. } => {
                    streams.remove(&stream);
                    todo.push(Todo::Reset(i, code));
                    return;
                }
                Event::GoAway { .. } => return,
            };
            match flow {
                Ok(Flow::Ok) => {}
                Ok(Flow::Repoll) => todo.push(Todo::Repoll(i)),
                Ok(Flow::Ended(why)) => end_sub(sub, ctx, why),
                Ok(Flow::Reconnect) => end_sub(sub, ctx, "long-poll: connection not kept"),
                Err(why) => {
                    if streams.remove(&stream).is_some() {
                        todo.push(Todo::Cancel(stream));
                    }
                    end_sub(sub, ctx, &why);
                }
            }
        };
        let result = if carry.is_empty() {
            client.recv(data, &mut on).map(|used| carry.extend_from_slice(&data[used..]))
        } else {
            carry.extend_from_slice(data);
            client.recv(carry, &mut on).map(|used| {
                carry.drain(..used);
            })
        };
        self.after_events(l)?;
        result?;
        match goaway {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn after_events(&mut self, l: usize) -> Result<(), String> {
        let mut todo = std::mem::take(&mut self.h2_todo);
        for t in todo.drain(..) {
            match t {
                Todo::Repoll(i) => self.request(l, i)?,
                Todo::Cancel(stream) => self.links[l].client.reset(stream, frame::CANCEL),
                Todo::Reset(i, code) => {
                    let mut why = format!("stream reset by the server: {}", frame::code_name(code));
                    if let (frame::REFUSED_STREAM, Some(max)) = (code, self.links[l].client.max_streams) {
                        why +=
                            &format!(" (the server allows {max} streams per connection; see --h2-streams)");
                    }
                    self.subs[i].h2_stream = 0;
                    end_sub(&mut self.subs[i], &mut self.ctx, &why);
                }
            }
        }
        self.h2_todo = todo;
        Ok(())
    }
}

/// Why a link's connection ended under it.
fn eof_reason(link: &Link) -> String {
    match link.client.open_streams() {
        0 => "server closed the HTTP/2 connection".into(),
        n => format!("server closed the HTTP/2 connection with {n} stream(s) open"),
    }
}

/// Writes what the client has queued (through TLS when there is one).
fn flush(link: &mut Link) -> io::Result<()> {
    let Some(stream) = link.stream.as_mut() else { return Ok(()) };
    super::dial::write_out(stream, link.tls.as_deref_mut(), &mut link.client.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_become_fields() {
        let lines = b"Accept: text/event-stream\r\nCache-Control:  no-cache \r\nIf-None-Match: \"3\"\r\n";
        let got: Vec<_> = h1_fields(lines).collect();
        let want: [(&[u8], &[u8]); 3] = [
            (b"Accept", b"text/event-stream"),
            (b"Cache-Control", b"no-cache"),
            (b"If-None-Match", b"\"3\""),
        ];
        assert_eq!(got, want);
        assert_eq!(h1_fields(sse::REQUEST_HEADERS).count(), 2);
        assert_eq!(h1_fields(b"").count(), 0);
    }
}
