//! A TCP proxy the tests can cut: one halley node reaches Redis through it,
//! so that node alone loses Redis (its connections are shut down and new
//! ones closed at once) while the other nodes keep working. `restore` lets
//! connections through again.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Default)]
struct State {
    /// Cut: close every connection, accept none.
    down: AtomicBool,
    /// Dropped: the accept thread ends.
    stop: AtomicBool,
    /// Both sides of every proxied connection, to shut down on a cut.
    live: Mutex<Vec<TcpStream>>,
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
                {
                    let mut live = shared.live.lock().unwrap();
                    live.retain(|s| s.peer_addr().is_ok());
                    live.push(client.try_clone().unwrap());
                    live.push(upstream.try_clone().unwrap());
                }
                pump(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pump(upstream, client);
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
}

/// Copies `from` to `to` until either side ends, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
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
