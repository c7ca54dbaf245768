//! TLS on the public port: every subscriber transport, Bayeux, Pushlet and
//! the demo page over https/wss (curl with `--cacert`, a rustls client for
//! raw checks), bad input closed and counted without hurting a control
//! subscriber, the handshake timeout,
//! certificate reload on SIGHUP, resumption, and start-up errors.
//!
//! Certificates come from a test CA that each test makes with the openssl CLI.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A directory with a test CA and a server certificate for localhost and 127.0.0.1.
struct Pki {
    dir: PathBuf,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    fn new() -> Pki {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("halley-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        let pki = Pki { dir };
        pki.issue("ca", "server");
        pki
    }

    /// Makes CA `ca` (if new) and a server certificate `name`.pem / `name`.key signed by it.
    fn issue(&self, ca: &str, name: &str) {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        if !self.dir.join(format!("{ca}.pem")).exists() {
            let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-days", "2", "-subj", "/CN=halley test CA", "-keyout", &key, "-out", &pem]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            openssl(&self.dir, &args);
        }
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
        openssl(&self.dir, &args);
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext",
                "-out",
                &pem,
            ],
        );
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// Flags that turn TLS on with certificate `name`.
    fn flags(&self, name: &str) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path(&format!("{name}.pem")),
            "--tls-key".into(),
            self.path(&format!("{name}.key")),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(pki: &Pki, extra: &[&str]) -> Server {
    let mut args = pki.flags("server");
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

#[allow(deprecated)]
fn client_config(pki: &Pki, ca: &str, tls12_only: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(pki.path(&format!("{ca}.pem"))).unwrap();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection whose handshake is complete (or the handshake's error).
fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Tls, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

/// Reads from `tls` until `buf` holds `needle`; panics at the deadline or a close.
fn read_until(tls: &mut Tls, buf: &mut Vec<u8>, needle: &str, what: &str) {
    let start = Instant::now();
    let mut chunk = [0u8; 16 * 1024];
    while find(buf, needle.as_bytes()).is_none() {
        assert!(start.elapsed() < DEADLINE, "{what}: no {needle:?} in {}", esc(buf));
        match tls.read(&mut chunk) {
            Ok(0) => panic!("{what}: closed before {needle:?}; got {}", esc(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("{what}: {e} before {needle:?}; got {}", esc(buf)),
        }
    }
}

/// An SSE subscriber over TLS whose response head has arrived (so it is registered).
fn sse_subscriber(server: &Server, config: &Arc<ClientConfig>, channel: &str) -> (Tls, Vec<u8>) {
    let mut tls = tls_connect(server.public, config).expect("handshake");
    let req = format!("GET /sub/{channel}?transport=sse HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tls.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    read_until(&mut tls, &mut buf, "\r\n\r\n", "SSE head");
    assert!(buf.starts_with(b"HTTP/1.1 200"), "SSE head: {}", esc(&buf));
    (tls, buf)
}

/// curl with the test CA, its stdout collected as it arrives.
struct Curl {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Curl {
    fn spawn(pki: &Pki, args: &[&str]) -> Curl {
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--cacert", &pki.path("ca.pem"), "--max-time", "60"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn curl");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Curl { child, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits for the whole run and returns its exit code and output.
    fn finish(mut self) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last bytes.
                wait_until("curl output read", || Arc::strong_count(&self.out) == 1);
                return (status.code().unwrap_or(-1), self.text());
            }
            assert!(start.elapsed() < DEADLINE, "curl still running; got {}", self.text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Curl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn subscribers(server: &Server, channel: &str) -> u64 {
    let resp = get(server.ingest, &format!("/pub/{channel}"));
    if resp.status != 200 {
        return 0;
    }
    resp.json()["subscribers"].as_u64().unwrap_or(0)
}

fn metric(server: &Server, name: &str) -> u64 {
    let text = get(server.ingest, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn every_http_transport_works_over_https_with_curl() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let base = format!("https://localhost:{}", server.public.port());
    for transport in ["sse", "stream", "iframe", "multipart", "longpoll", "jsonp"] {
        let channel = format!("t-{transport}");
        let mut url = format!("{base}/sub/{channel}?transport={transport}");
        if transport == "jsonp" {
            url.push_str("&callback=cb");
        }
        let curl = Curl::spawn(&pki, &[&url]);
        wait_until(&format!("{transport} subscriber registered"), || subscribers(&server, &channel) == 1);
        let payload = format!("over-tls-{transport}");
        server.publish(&channel, &payload);
        wait_until(&format!("{transport} got {payload}; so far: {}", curl.text()), || {
            curl.text().contains(&payload)
        });
    }
    let (code, page) = Curl::spawn(&pki, &[&format!("{base}/")]).finish();
    assert_eq!(code, 0, "demo page over https: {page}");
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"), "{page}");
    let handshake =
        r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#;
    let (code, body) = Curl::spawn(
        &pki,
        &["-H", "Content-Type: application/json", "--data", handshake, &format!("{base}/bayeux")],
    )
    .finish();
    assert_eq!(code, 0, "Bayeux over https: {body}");
    assert!(body.contains(r#""successful":true"#), "Bayeux handshake over https: {body}");
    let (code, body) =
        Curl::spawn(&pki, &[&format!("{base}/pushlet/pushlet.srv?p_event=join&p_format=xml")]).finish();
    assert_eq!(code, 0, "Pushlet over https: {body}");
    assert!(body.contains("join-ack"), "Pushlet join over https: {body}");
}

#[test]
fn websocket_over_wss_and_a_large_burst_arrive_intact() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let config = client_config(&pki, "ca", false);
    let mut ws = tls_connect(server.public, &config).expect("handshake");
    assert_eq!(ws.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "ALPN");
    ws.write_all(&upgrade_request("/sub/wss?transport=ws", FIXED_KEY, &[])).unwrap();
    let mut buf = Vec::new();
    read_until(&mut ws, &mut buf, "\r\n\r\n", "wss upgrade");
    assert!(buf.starts_with(b"HTTP/1.1 101"), "wss upgrade: {}", esc(&buf));
    let head_end = find(&buf, b"\r\n\r\n").unwrap() + 4;
    buf.drain(..head_end);
    wait_until("wss subscriber registered", || subscribers(&server, "wss") == 1);
    server.publish("wss", "hello wss");
    let start = Instant::now();
    let frame = loop {
        if let Some(f) = take_frame(&mut buf) {
            break f;
        }
        assert!(start.elapsed() < DEADLINE, "no frame; got {}", esc(&buf));
        let mut chunk = [0u8; 4096];
        let n = ws.read(&mut chunk).expect("read wss");
        assert!(n > 0, "wss closed");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(frame.text().contains("hello wss"), "wss frame: {}", frame.describe());

    // Many large messages at once: a flush spans many records and writes.
    let (mut sse, mut got) = sse_subscriber(&server, &config, "burst");
    let big = "x".repeat(20_000);
    for i in 0..40 {
        server.publish("burst", &format!("{i:02}{big}"));
    }
    read_until(&mut sse, &mut got, &format!("data: 39{big}"), "burst");
    let text = String::from_utf8_lossy(&got);
    for i in 0..40 {
        assert!(text.contains(&format!("data: {i:02}{big}\n")), "message {i} missing or damaged");
    }
}

#[test]
fn tls12_and_session_resumption_work() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    for tls12 in [false, true] {
        let config = client_config(&pki, "ca", tls12);
        let mut first = tls_connect(server.public, &config).expect("first handshake");
        let version = first.conn.protocol_version();
        assert_eq!(version == Some(rustls::ProtocolVersion::TLSv1_2), tls12, "version {version:?}");
        first
            .write_all(b"GET /sub/r?timeout=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        read_until(&mut first, &mut buf, "last_id", "long-poll over TLS");
        // TLS 1.3 tickets arrive after the handshake: read them before leaving.
        drop(first);
        let second = tls_connect(server.public, &config).expect("second handshake");
        assert_eq!(
            second.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "tls12={tls12}: the second connection resumes"
        );
    }
}

#[test]
fn bad_input_is_closed_and_counted_and_a_control_subscriber_keeps_receiving() {
    let pki = Pki::new();
    let server = start(&pki, &["--head-timeout-secs", "1"]);
    let config = client_config(&pki, "ca", false);
    let (mut control, mut got) = sse_subscriber(&server, &config, "control");
    let mut sent = 0;
    let mut check_control = |what: &str, control: &mut Tls, got: &mut Vec<u8>| {
        sent += 1;
        let payload = format!("after-{what}-{sent}");
        server.publish("control", &payload);
        read_until(control, got, &format!("data: {payload}\n"), &format!("control after {what}"));
    };

    // Plain HTTP to the TLS port: a clear-text 400 and a close.
    let mut plain = HttpConn::new(server.public);
    plain.send(b"GET /sub/control HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let answer = String::from_utf8_lossy(&plain.read_to_close()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("HTTPS only"), "plain HTTP: {answer}");
    check_control("plain HTTP", &mut control, &mut got);

    // Random bytes, and a handshake record with a garbage body.
    for (what, bytes) in [
        ("random bytes", vec![0x8f, 0x01, 0xee, 0x42, 0x00, 0x13, 0x37, 0x99]),
        ("garbage record", vec![0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff]),
    ] {
        let mut conn = HttpConn::new(server.public);
        conn.send(&bytes);
        conn.read_to_close();
        check_control(what, &mut control, &mut got);
    }

    // A ClientHello cut short, then the client leaves.
    let hello = {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config.clone(), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    };
    let mut cut = TcpStream::connect(server.public).unwrap();
    cut.write_all(&hello[..hello.len() / 2]).unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    cut.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut sink = Vec::new();
    let _ = cut.read_to_end(&mut sink);
    check_control("a truncated ClientHello", &mut control, &mut got);

    // Handshakes that never finish: nothing sent, and half a ClientHello.
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.public).unwrap();
    let mut stalled = TcpStream::connect(server.public).unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    for (what, sock) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut sink = Vec::new();
        let _ = sock.read_to_end(&mut sink);
        assert!(started.elapsed() < DEADLINE, "{what} handshake not closed by the head timeout");
    }
    check_control("stalled handshakes", &mut control, &mut got);

    let failures = |reason: &str| {
        metric(&server, &format!("halley_tls_handshake_failures_total{{reason=\"{reason}\"}}"))
    };
    assert_eq!(failures("not_tls"), 2, "plain HTTP and random bytes");
    assert_eq!(failures("bad_message"), 1, "garbage record");
    assert_eq!(failures("closed"), 1, "truncated ClientHello");
    assert_eq!(failures("timeout"), 2, "silent and stalled");
    assert!(metric(&server, "halley_tls_handshakes_total") >= 1);
}

/// Waits for a log line containing `needle` after the log had `from` bytes.
fn wait_log(server: &Server, from: usize, needle: &str) {
    wait_until(&format!("log line {needle:?}"), || {
        server.log_text().get(from..).is_some_and(|l| l.contains(needle))
    });
}

fn sighup(server: &Server) {
    let status = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reloads_the_certificate_and_a_bad_file_keeps_the_old_one() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let old_ca = client_config(&pki, "ca", false);
    let (mut stream, mut got) = sse_subscriber(&server, &old_ca, "reload");

    // A certificate from another CA replaces the files; SIGHUP.
    pki.issue("ca2", "next");
    std::fs::copy(pki.path("next.pem"), pki.path("server.pem")).unwrap();
    std::fs::copy(pki.path("next.key"), pki.path("server.key")).unwrap();
    let from = server.log_text().len();
    sighup(&server);
    wait_log(&server, from, "TLS certificate and key reloaded");
    let new_ca = client_config(&pki, "ca2", false);
    tls_connect(server.public, &new_ca).expect("a new connection gets the new certificate");
    // A fresh config: the first one would resume its session (no certificate).
    let old_ca_fresh = client_config(&pki, "ca", false);
    let Err(err) = tls_connect(server.public, &old_ca_fresh) else { panic!("the old CA still verifies") };
    assert!(err.to_lowercase().contains("certificate"), "old CA: {err}");
    server.publish("reload", "still-streaming");
    read_until(&mut stream, &mut got, "data: still-streaming\n", "open stream across the reload");

    // A broken file: the reload fails loudly and the current pair stays.
    std::fs::write(pki.path("server.pem"), "not a certificate\n").unwrap();
    let from = server.log_text().len();
    sighup(&server);
    wait_log(&server, from, "TLS reload failed, keeping the old certificate");
    tls_connect(server.public, &client_config(&pki, "ca2", false)).expect("still the reloaded certificate");
    assert_eq!(metric(&server, "halley_tls_reloads_total{result=\"ok\"}"), 1);
    assert_eq!(metric(&server, "halley_tls_reloads_total{result=\"failed\"}"), 1);
}

#[test]
fn unusable_certificate_files_stop_start_up_with_exit_code_2() {
    let pki = Pki::new();
    pki.issue("ca3", "other");
    std::fs::write(pki.path("junk.pem"), "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    let cases = [
        (
            "missing",
            vec!["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
            "tls_cert",
        ),
        ("junk", vec!["--tls-cert", "JUNK", "--tls-key", "KEY"], "tls_cert"),
        ("mismatched key", vec!["--tls-cert", "CERT", "--tls-key", "OTHERKEY"], "tls_cert"),
        ("cert without key", vec!["--tls-cert", "CERT"], "tls_key"),
    ];
    for (what, args, needle) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "JUNK" => pki.path("junk.pem"),
                "KEY" => pki.path("server.key"),
                "CERT" => pki.path("server.pem"),
                "OTHERKEY" => pki.path("other.key"),
                a => a.to_string(),
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_halley"))
            .args(["--listen", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "--resp", "127.0.0.1:0"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: the error names {needle}: {stderr}");
        let first = BufReader::new(&out.stderr[..]).lines().count();
        assert!(first <= 2, "{what}: a short error, got {stderr}");
    }
}

#[test]
fn ingest_tls_puts_the_ingest_port_behind_tls_too() {
    let pki = Pki::new();
    let server = {
        let mut args = pki.flags("server");
        args.extend(["--ingest-tls".to_string(), "true".to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Server::start learns the ports from the log; it never talks to them.
        Server::start(&args)
    };
    let url = format!("https://localhost:{}/pub/it", server.ingest.port());
    let (code, body) = Curl::spawn(&pki, &["--data", "hi", &url]).finish();
    assert_eq!(code, 0, "publish over https: {body}");
    assert!(body.contains(r#""channel":"it""#), "publish answer: {body}");
    let mut plain = HttpConn::new(server.ingest);
    plain.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = String::from_utf8_lossy(&plain.read_to_close()).into_owned();
    assert!(answer.contains("HTTPS only"), "plain HTTP to the TLS ingest port: {answer}");
}

#[test]
fn sigterm_ends_tls_streams_with_their_terminator_and_close_notify() {
    let pki = Pki::new();
    let mut server = start(&pki, &[]);
    let config = client_config(&pki, "ca", false);
    let (mut sse, mut got) = sse_subscriber(&server, &config, "bye");
    server.publish("bye", "before");
    read_until(&mut sse, &mut got, "data: before\n", "before SIGTERM");
    let (status, took) = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}; log:\n{}", server.log_text());
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    // The chunked terminator arrives, then the TLS session ends cleanly: a
    // close_notify (read gives Ok(0)), not a bare TCP close (an error).
    let mut rest = Vec::new();
    let end = sse.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    assert!(end.is_ok(), "the TLS session ended without close_notify: {end:?}; got {}", esc(&got));
    assert!(got.ends_with(b"0\r\n\r\n"), "no chunked terminator at the end: {}", esc(&got));
}

/// HTTP/2 by ALPN on the TLS port: curl `--http2` gets h2 (and `--http1.1`
/// still HTTP/1.1 on the same port); 100 long-polls multiplexed on one h2
/// connection with `curl --parallel` are all answered by one publish.
#[test]
fn alpn_h2_and_a_hundred_polls_multiplexed_with_curl() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let base = format!("https://localhost:{}", server.public.port());
    let (code, head) = Curl::spawn(&pki, &["--http2", "-i", &format!("{base}/sub/alpn?timeout=0")]).finish();
    assert_eq!(code, 0, "{head}");
    assert!(head.starts_with("HTTP/2 200"), "ALPN h2: {head}");
    let (code, head) =
        Curl::spawn(&pki, &["--http1.1", "-i", &format!("{base}/sub/alpn?timeout=0")]).finish();
    assert_eq!(code, 0, "{head}");
    assert!(head.starts_with("HTTP/1.1 200"), "ALPN http/1.1: {head}");
    let url = format!("{base}/sub/hundred?timeout=30");
    let mut args =
        vec!["--http2", "--parallel", "--parallel-max", "100", "-w", "%{http_version} %{num_connects}\\n"];
    for _ in 0..100 {
        args.extend(["-o", "/dev/stdout", url.as_str()]);
    }
    let curl = Curl::spawn(&pki, &args);
    wait_until("100 polls parked", || subscribers(&server, "hundred") == 100);
    server.publish("hundred", "to all");
    let (code, text) = curl.finish();
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.matches(r#""data":"to all""#).count(), 100, "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("2 ")).collect();
    assert_eq!(lines.len(), 100, "every poll over HTTP/2: {text}");
    let connects: u32 = lines.iter().filter_map(|l| l[2..].trim().parse::<u32>().ok()).sum();
    assert_eq!(connects, 1, "the 100 polls share one connection: {text}");
    assert!(metric(&server, "halley_h2_streams_total") >= 101, "h2 streams counted");
}
