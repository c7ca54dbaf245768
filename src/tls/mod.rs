//! TLS for the public port (and, optionally, the ingest port), with rustls.
//!
//! The server installs a [`TlsFilter`] on each accepted connection of a TLS
//! port; the filter is a `reactor::filter::Filter`, so the loop and the HTTP
//! code see plaintext only. This module owns what all connections share: the
//! rustls `ServerConfig` (built once), the certificate it presents (swapped
//! on reload, so new handshakes get the new one and open connections keep
//! theirs), and the handshake counters behind `/metrics`.

mod filter;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use filter::TlsFilter;

/// Resumption sessions kept for TLS 1.2 clients without ticket support
/// (about 200 bytes each). TLS 1.3 and most 1.2 clients resume by ticket,
/// which costs the server no memory.
const SESSION_CACHE: usize = 4096;

/// Handshake failure reasons, as `/metrics` labels them.
pub const FAILURE_REASONS: [&str; 7] =
    ["not_tls", "bad_message", "incompatible", "alert", "timeout", "closed", "other"];

/// Counters for `/metrics`, shared by every loop.
#[derive(Debug, Default)]
pub struct TlsStats {
    pub handshakes: AtomicU64,
    /// Indexed like [`FAILURE_REASONS`].
    pub failures: [AtomicU64; FAILURE_REASONS.len()],
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

impl TlsStats {
    pub fn fail(&self, reason: &str) {
        let i = FAILURE_REASONS.iter().position(|r| *r == reason).unwrap_or(FAILURE_REASONS.len() - 1);
        if let Some(c) = self.failures.get(i) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// `halley_tls_*` lines in Prometheus text format.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP halley_tls_handshakes_total TLS handshakes completed.");
        let _ = writeln!(out, "# TYPE halley_tls_handshakes_total counter");
        let _ = writeln!(out, "halley_tls_handshakes_total {}", self.handshakes.load(Relaxed));
        let _ = writeln!(out, "# HELP halley_tls_handshake_failures_total TLS connections closed before their handshake completed, by reason.");
        let _ = writeln!(out, "# TYPE halley_tls_handshake_failures_total counter");
        for (reason, n) in FAILURE_REASONS.iter().zip(&self.failures) {
            let _ = writeln!(
                out,
                "halley_tls_handshake_failures_total{{reason=\"{reason}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP halley_tls_reloads_total Certificate reloads (SIGHUP) by result.");
        let _ = writeln!(out, "# TYPE halley_tls_reloads_total counter");
        let _ = writeln!(out, "halley_tls_reloads_total{{result=\"ok\"}} {}", self.reloads.load(Relaxed));
        let _ = writeln!(
            out,
            "halley_tls_reloads_total{{result=\"failed\"}} {}",
            self.reload_failures.load(Relaxed)
        );
    }
}

/// The certificate handed to each new handshake; replaced whole on reload.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// What every TLS connection of the process shares.
pub struct Tls {
    /// The public port's: ALPN `h2`, then `http/1.1`.
    config: Arc<ServerConfig>,
    /// The ingest port's: ALPN `http/1.1` only (it serves no HTTP/2).
    config_h1: Arc<ServerConfig>,
    resolver: Arc<Resolver>,
    cert_path: String,
    key_path: String,
    pub stats: Arc<TlsStats>,
}

impl Tls {
    /// Reads the certificate chain and key, and builds the server config:
    /// TLS 1.3 and 1.2, rustls' safe cipher suites (ring), ALPN `h2` and
    /// `http/1.1` (public port) or `http/1.1` alone (ingest port), resumption by tickets and by a bounded session cache.
    pub fn load(cert_path: &str, key_path: &str) -> Result<Tls, String> {
        let cert_pem = std::fs::read(cert_path).map_err(|e| format!("tls_cert '{cert_path}': {e}"))?;
        let key_pem = std::fs::read(key_path).map_err(|e| format!("tls_key '{key_path}': {e}"))?;
        let key = certified_key(&cert_pem, &key_pem, cert_path, key_path)?;
        Tls::with_key(key, cert_path, key_path)
    }

    /// The same from PEM bytes (tests and fuzzing; `reload` has no files then).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Tls, String> {
        Tls::with_key(certified_key(cert_pem, key_pem, "(memory)", "(memory)")?, "", "")
    }

    fn with_key(key: CertifiedKey, cert_path: &str, key_path: &str) -> Result<Tls, String> {
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(key))));
        let mut config = ServerConfig::builder_with_provider(Arc::new(crypto()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = provider::Ticketer::new().map_err(|e| format!("TLS ticketer: {e}"))?;
        // In preference order: a client that offers both gets HTTP/2.
        let mut config_h1 = config.clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            config_h1: Arc::new(config_h1),
            resolver,
            cert_path: cert_path.to_string(),
            key_path: key_path.to_string(),
            stats: Arc::default(),
        })
    }

    /// Reads the files again; on success new handshakes present the new
    /// certificate. On failure the old one stays and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let read = |path: &str, what: &str| std::fs::read(path).map_err(|e| format!("{what} '{path}': {e}"));
        let loaded = read(&self.cert_path, "tls_cert").and_then(|cert| {
            let key = read(&self.key_path, "tls_key")?;
            certified_key(&cert, &key, &self.cert_path, &self.key_path)
        });
        match loaded {
            Ok(key) => {
                if let Ok(mut current) = self.resolver.0.write() {
                    *current = Arc::new(key);
                }
                self.stats.reloads.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.reload_failures.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// A filter for a newly accepted connection; `h2`: offer HTTP/2 by ALPN.
    pub fn accept(self: &Arc<Self>, h2: bool) -> Result<TlsFilter, String> {
        let config = if h2 { self.config.clone() } else { self.config_h1.clone() };
        TlsFilter::new(self.clone(), config)
    }
}

/// rustls' ring provider: its defaults are the safe suites (TLS 1.3 AES-GCM
/// and ChaCha20-Poly1305; TLS 1.2 ECDHE with the same) and X25519, P-256,
/// P-384. rustls marks it deprecated for lacking post-quantum key exchange,
/// which only its aws-lc-rs provider has; that one needs cmake and a much
/// longer build, which the machines this builds on do not have.
///
/// Key exchange prefers X25519, as browsers do: rustls' ring provider lists
/// P-384 first, which costs the server about three times the CPU per
/// handshake (measured: ~1 ms against ~0.3 ms on this VM) for no gain a
/// push tier needs. P-256 and P-384 stay for clients that ask for them.
#[allow(deprecated)]
fn crypto() -> rustls::crypto::CryptoProvider {
    use provider::kx_group::{SECP256R1, SECP384R1, X25519};
    rustls::crypto::CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..provider::default_provider()
    }
}

/// Loads a chain (leaf first) and its private key, and checks they match.
fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &str,
    key_path: &str,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_cert '{cert_path}': not a PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err(format!("tls_cert '{cert_path}': no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("tls_key '{key_path}': not a PEM private key: {e}"))?;
    CertifiedKey::from_der(chain, key, &crypto())
        .map_err(|e| format!("tls_cert '{cert_path}' / tls_key '{key_path}': {e}"))
}
