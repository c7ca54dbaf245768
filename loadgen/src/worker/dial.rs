//! How a worker's sockets are made and written: the nonblocking TCP connect
//! (from one of `--source-addrs`), with `--tls-ca` the TLS client config
//! (ALPN `h2` with `--h2-streams`, else `http/1.1`), and the write of what a
//! subscriber or an HTTP/2 link has queued.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::Config;

/// ring with X25519 preferred, as browsers (and halley) do; ring's own list
/// starts with P-384, several times dearer per handshake.
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    rustls::crypto::CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    }
}

/// The TLS client config that trusts `ca` (PEM), and the name to verify.
#[allow(deprecated)] // ring: the provider halley uses; aws-lc-rs needs cmake
pub(super) fn tls_client(
    cfg: &Config,
) -> io::Result<Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>> {
    use rustls_pki_types::pem::PemObject;
    let Some(ca) = &cfg.tls_ca else { return Ok(None) };
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let pem = std::fs::read(ca).map_err(|e| bad(format!("--tls-ca {ca}: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("--tls-ca {ca}: {e}")))?;
        roots.add(cert).map_err(|e| bad(format!("--tls-ca {ca}: {e}")))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols =
        vec![if cfg.h2_streams.is_some() { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let host = cfg.sub_url.host.rsplit_once(':').map_or(cfg.sub_url.host.as_str(), |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| bad(e.to_string()))?;
    Ok(Some((Arc::new(config), name)))
}

/// A nonblocking TCP connect to `target`, from source address number
/// `pick` of `--source-addrs` (if any).
pub(super) fn dial(cfg: &Config, pick: usize, target: SocketAddrV4) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    if !cfg.source_addrs.is_empty() {
        let src: Ipv4Addr = cfg.source_addrs[pick % cfg.source_addrs.len()];
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a c_int option value on our socket. Lets
        // the kernel pick the port at connect() time so each source
        // address has its own port range.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SocketAddrV4::new(src, 0).into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// Whether a nonblocking connect finished (Ok(false): still in progress).
pub(super) fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => Err(e),
        Ok(None) => match stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        },
    }
}

/// Writes what `out` holds to the socket, through TLS when there is one, as
/// far as the socket takes it now; what is left waits for the next writable
/// event.
pub fn write_out(
    stream: &mut TcpStream,
    tls: Option<&mut rustls::ClientConnection>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if let Some(tls) = tls {
        // rustls holds what is written before the handshake completes.
        if !out.is_empty() {
            tls.writer().write_all(out)?;
            out.clear();
        }
        while tls.wants_write() {
            match tls.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    }
    let mut done = 0;
    while done < out.len() {
        match stream.write(&out[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.drain(..done);
    Ok(())
}

/// The next plaintext rustls has decrypted, into `buf`: its length, or
/// `None` when there is none for now (or the peer has ended it).
pub fn plaintext(tls: &mut rustls::ClientConnection, buf: &mut [u8]) -> Result<Option<usize>, String> {
    match tls.reader().read(buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(format!("tls read: {e}")),
    }
}
