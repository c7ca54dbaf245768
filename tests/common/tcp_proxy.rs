//! A TCP proxy the tests can cut: one halley node reaches Redis through it,
//! so that node alone loses Redis (its connections are shut down and new
//! ones closed at once) while the other nodes keep working. `restore` lets
//! connections through again.
//!
//! `refuse_commands_for` makes the way back uneven: for a while after it, a
//! connection is closed as soon as it sends a command other than `CLIENT …`
//! (what client libraries send first) unless it has subscribed (SUBSCRIBE,
//! PSUBSCRIBE, SSUBSCRIBE). So a node's Redis listener comes back at once
//! and its command connection (publishes, history reads) only later.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Cut: close every connection, accept none.
    down: AtomicBool,
    /// Dropped: the accept thread ends.
    stop: AtomicBool,
    /// Both sides of every proxied connection, to shut down on a cut.
    live: Mutex<Vec<TcpStream>>,
    /// Until then, connections that send commands without subscribing are closed.
    refuse_commands_until: Mutex<Option<Instant>>,
}

impl State {
    fn refusing_commands(&self) -> bool {
        self.refuse_commands_until.lock().unwrap().is_some_and(|t| Instant::now() < t)
    }
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                if shared.down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                shared
                    .live
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                pump(client.try_clone().unwrap(), upstream.try_clone().unwrap(), Some(shared.clone()));
                pump(upstream, client, None);
            }
        });
        TcpProxy { addr, state }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Shuts down every proxied connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        for s in self.state.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// For `how_long` from now, closes connections that send a command
    /// (other than `CLIENT …`) without having subscribed.
    pub fn refuse_commands_for(&self, how_long: Duration) {
        *self.state.refuse_commands_until.lock().unwrap() = Some(Instant::now() + how_long);
    }
}

/// What a chunk a client sent says about its connection.
enum Sent {
    /// SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE: a listener.
    Subscribes,
    /// Only `CLIENT …` commands (setup every library sends first).
    Setup,
    /// Any other command.
    Command,
}

/// Classifies a chunk of RESP a client sent (command words are whole bulk
/// strings right after an array header: `*N\r\n$len\r\nWORD\r\n`).
fn classify(bytes: &[u8]) -> Sent {
    let text = String::from_utf8_lossy(bytes).to_ascii_uppercase();
    if ["\r\nSUBSCRIBE\r\n", "\r\nPSUBSCRIBE\r\n", "\r\nSSUBSCRIBE\r\n"].iter().any(|w| text.contains(w)) {
        return Sent::Subscribes;
    }
    let commands = text.split('*').filter(|part| !part.is_empty()).count();
    let setup = text.matches("\r\nCLIENT\r\n").count();
    if commands > 0 && commands == setup {
        Sent::Setup
    } else {
        Sent::Command
    }
}

/// Copies `from` to `to` until either side ends, then shuts both down. With
/// `gate` (the client-to-Redis direction), a connection that sends a command
/// without having subscribed while the proxy refuses commands is closed.
fn pump(mut from: TcpStream, mut to: TcpStream, gate: Option<Arc<State>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut listener = false;
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(state) = &gate {
                        match classify(&buf[..n]) {
                            Sent::Subscribes => listener = true,
                            Sent::Setup => {}
                            Sent::Command if !listener && state.refusing_commands() => break,
                            Sent::Command => {}
                        }
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}
