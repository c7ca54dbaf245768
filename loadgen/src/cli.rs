//! Command-line parsing and validation (see CONTRACT.md).

use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    Sse,
    Stream,
    LongPoll,
    Ws,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Stream => "stream",
            Transport::LongPoll => "longpoll",
            Transport::Ws => "ws",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PubFormat {
    Raw,
    Pushpin,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    Ch0,
    Random,
    All,
}

/// An `http://` (or `ws://`) URL on a loopback address; `path` may hold `{ch}`.
#[derive(Clone, Debug)]
pub struct Url {
    pub addr: SocketAddrV4,
    /// The Host header value, as written in the URL.
    pub host: String,
    /// Path and query (a template: `{ch}` is replaced by the channel name).
    pub path: String,
    /// `https://` or `wss://`: TLS (verified with `--tls-ca`).
    pub tls: bool,
}

impl Url {
    pub fn path_for(&self, channel: &str) -> String {
        self.path.replace("{ch}", channel)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The first of `sub_urls` (the one TLS names and single-node code use).
    pub sub_url: Url,
    /// Every `--sub-url` template (`a|b|c`): subscriber `i` uses `sub_urls[i % n]`.
    pub sub_urls: Vec<Url>,
    pub transport: Transport,
    pub subscribers: usize,
    pub channels: usize,
    pub channel_prefix: String,
    pub workers: usize,
    pub source_addrs: Vec<Ipv4Addr>,
    pub connect_rate: f64,
    pub headers: Vec<(String, String)>,
    /// Every `--pub-url` template (`a|b|c`): messages go to them in turn.
    pub pub_urls: Vec<Url>,
    pub pub_format: PubFormat,
    pub pub_resp: Option<SocketAddrV4>,
    pub rates: Vec<f64>,
    pub duration: f64,
    pub target: Target,
    pub payload_bytes: usize,
    pub settle: f64,
    pub no_publish: bool,
    pub pids: Vec<u32>,
    pub json: bool,
    pub label: String,
    // Added flags (documented in CONTRACT.md).
    pub pub_conns: usize,
    pub pub_pipeline: usize,
    pub warmup: f64,
    pub connect_timeout: f64,
    pub connect_concurrency: usize,
    /// PEM CA file that verifies the server: subscribers speak TLS
    /// (`--sub-url https://...`, or `wss://`).
    pub tls_ca: Option<String>,
    /// `--h2-streams S`: subscribers are HTTP/2 streams, S per connection
    /// (h2c with prior knowledge, or ALPN h2 with `--tls-ca`).
    pub h2_streams: Option<usize>,
    /// Where progress goes (`--progress PATH`; stderr when `None`).
    pub progress: Option<String>,
    /// `--no-progress`.
    pub no_progress: bool,
    /// Hidden: this process is worker `i` of `W`.
    pub worker: Option<(usize, usize)>,
}

pub const MAX_PER_WORKER: usize = 19_000;
pub const USAGE: &str = include_str!("../CONTRACT.md");

impl Config {
    pub fn channel_name(&self, ch: usize) -> String {
        format!("{}{}", self.channel_prefix, ch)
    }

    /// The hard overall deadline in seconds: the publishing and settling time of
    /// every step, the warm-up, the time --connect-rate needs, and 60 s.
    pub fn hard_deadline_secs(&self) -> f64 {
        let steps = self.rates.len().max(1) as f64;
        let connect = if self.connect_rate > 0.0 { self.subscribers as f64 / self.connect_rate } else { 0.0 };
        let hold = if self.no_publish { self.duration } else { (self.duration + self.settle) * steps };
        hold + self.warmup + connect + self.connect_timeout + 60.0
    }
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim().parse::<T>().map_err(|_| format!("{flag}: cannot use '{v}'"))
}

fn secs(flag: &str, v: &str, max: f64) -> Result<f64, String> {
    let x: f64 = num(flag, v)?;
    if !x.is_finite() || !(0.0..=max).contains(&x) {
        return Err(format!("{flag}: '{v}' is outside 0..={max}"));
    }
    Ok(x)
}

fn loopback(host: &str, what: &str) -> Result<Ipv4Addr, String> {
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse::<Ipv4Addr>().map_err(|_| format!("{what}: '{host}' is not an IPv4 address"))?
    };
    if ip.octets()[0] != 127 {
        return Err(format!("{what}: {ip} is not in 127.0.0.0/8 (loadgen only loads loopback)"));
    }
    Ok(ip)
}

pub fn host_port(s: &str, default_port: u16, what: &str) -> Result<SocketAddrV4, String> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, num::<u16>(what, p)?),
        None => (s, default_port),
    };
    Ok(SocketAddrV4::new(loopback(host, what)?, port))
}

pub fn parse_url(s: &str, what: &str) -> Result<Url, String> {
    let tls = s.starts_with("https://") || s.starts_with("wss://");
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("ws://"))
        .or_else(|| s.strip_prefix("https://"))
        .or_else(|| s.strip_prefix("wss://"))
        .ok_or_else(|| format!("{what}: '{s}' must start with http:// (or ws://, https://, wss://)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{what}: '{s}' has no host"));
    }
    let port = if tls { 443 } else { 80 };
    Ok(Url {
        addr: host_port(authority, port, what)?,
        host: authority.to_string(),
        path: path.to_string(),
        tls,
    })
}

/// A URL list: templates separated by `|` (each parsed by [`parse_url`]).
pub fn parse_url_list(s: &str, what: &str) -> Result<Vec<Url>, String> {
    let urls = s
        .split('|')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| parse_url(u, what))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(format!("{what}: no URL in '{s}'"));
    }
    if urls.len() > 64 {
        return Err(format!("{what}: at most 64 URLs"));
    }
    if urls.iter().any(|u| u.tls != urls[0].tls) {
        return Err(format!("{what}: mix of TLS and plain URLs"));
    }
    Ok(urls)
}

/// `--h2-streams`: a sane count, a transport HTTP/2 carries, and no
/// header HTTP/2 forbids (RFC 9113 section 8.2.2; the Host is `:authority`).
fn check_h2(streams: usize, transport: Transport, headers: &[(String, String)]) -> Result<(), String> {
    if streams == 0 || streams > 10_000 {
        return Err("--h2-streams: must be 1..=10000".into());
    }
    if transport == Transport::Ws {
        return Err("--h2-streams: no WebSocket over HTTP/2 (halley offers no RFC 8441 extended CONNECT); \
                    use --transport sse, stream or longpoll"
            .into());
    }
    const FORBIDDEN: [&str; 6] =
        ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"];
    if let Some((k, _)) = headers.iter().find(|(k, _)| FORBIDDEN.iter().any(|f| k.eq_ignore_ascii_case(f))) {
        return Err(format!("--header {k}: not allowed over HTTP/2 (--h2-streams)"));
    }
    Ok(())
}

fn split_flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let body = arg.strip_prefix("--")?;
    Some(match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    })
}

pub enum Parsed {
    Run(Box<Config>),
    Help,
    Version,
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut sub_url = None;
    let mut transport = Transport::Sse;
    let mut subscribers = 100usize;
    let mut channels = 1usize;
    let mut channel_prefix = "ch".to_string();
    let mut workers = None;
    let mut source_addrs = Vec::new();
    let mut connect_rate = 0.0;
    let mut headers = Vec::new();
    let mut pub_url = None;
    let mut pub_format = PubFormat::Raw;
    let mut pub_resp = None;
    let mut rate = 100.0;
    let mut rate_steps: Option<Vec<f64>> = None;
    let mut duration = 10.0;
    let mut target = Target::Ch0;
    let mut payload_bytes = 64usize;
    let mut settle = 3.0;
    let mut no_publish = false;
    let mut pids = Vec::new();
    let mut json = false;
    let mut label = String::new();
    let mut pub_conns = 8usize;
    let mut pub_pipeline = 16usize;
    let mut warmup = 0.5;
    let mut connect_timeout = 15.0;
    let mut connect_concurrency = 1000usize;
    let mut tls_ca: Option<String> = None;
    let mut h2_streams: Option<usize> = None;
    let mut progress = None;
    let mut no_progress = false;
    let mut worker = None;

    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        match arg.as_str() {
            "-h" => return Ok(Parsed::Help),
            "-V" => return Ok(Parsed::Version),
            _ => {}
        }
        let Some((name, inline)) = split_flag(arg) else {
            return Err(format!("unexpected argument '{arg}'; run with --help"));
        };
        let flag = format!("--{name}");
        match name {
            "help" => return Ok(Parsed::Help),
            "version" => return Ok(Parsed::Version),
            "json" | "no-publish" | "no-progress" => {
                if inline.is_some() {
                    return Err(format!("{flag} takes no value"));
                }
                match name {
                    "json" => json = true,
                    "no-publish" => no_publish = true,
                    _ => no_progress = true,
                }
                continue;
            }
            _ => {}
        }
        const WITH_VALUE: &[&str] = &[
            "sub-url",
            "transport",
            "subscribers",
            "channels",
            "channel-prefix",
            "workers",
            "source-addrs",
            "connect-rate",
            "header",
            "pub-url",
            "pub-format",
            "pub-resp",
            "rate",
            "rate-steps",
            "duration",
            "target",
            "payload-bytes",
            "settle",
            "pid",
            "label",
            "pub-conns",
            "pub-pipeline",
            "warmup",
            "connect-timeout",
            "connect-concurrency",
            "tls-ca",
            "h2-streams",
            "progress",
            "worker",
        ];
        if !WITH_VALUE.contains(&name) {
            return Err(format!("unknown flag '{flag}'; run with --help"));
        }
        let value: String = match inline {
            Some(v) => v.to_string(),
            None => {
                let v = args.get(i).ok_or_else(|| format!("{flag}: missing value"))?;
                i += 1;
                v.clone()
            }
        };
        let v = value.as_str();
        match name {
            "sub-url" => sub_url = Some(parse_url_list(v, &flag)?),
            "progress" => progress = Some(v.to_string()),
            "transport" => {
                transport = match v {
                    "sse" => Transport::Sse,
                    "stream" => Transport::Stream,
                    "longpoll" => Transport::LongPoll,
                    "ws" => Transport::Ws,
                    _ => return Err(format!("{flag}: expected sse, stream, longpoll or ws, got '{v}'")),
                }
            }
            "subscribers" => subscribers = num(&flag, v)?,
            "channels" => channels = num(&flag, v)?,
            "channel-prefix" => channel_prefix = v.to_string(),
            "workers" => workers = Some(num::<usize>(&flag, v)?),
            "source-addrs" => {
                source_addrs = v
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| loopback(s.trim(), &flag))
                    .collect::<Result<_, _>>()?
            }
            "connect-rate" => connect_rate = secs(&flag, v, 10_000_000.0)?,
            "header" => {
                let (k, val) = v.split_once(':').ok_or_else(|| format!("{flag}: expected 'Name: value'"))?;
                let k = k.trim();
                if k.is_empty() || k.bytes().any(|b| b <= b' ' || b >= 127) || val.contains(['\r', '\n']) {
                    return Err(format!("{flag}: bad header '{v}'"));
                }
                headers.push((k.to_string(), val.trim().to_string()));
            }
            "pub-url" => pub_url = Some(parse_url_list(v, &flag)?),
            "pub-format" => {
                pub_format = match v {
                    "raw" => PubFormat::Raw,
                    "pushpin" => PubFormat::Pushpin,
                    _ => return Err(format!("{flag}: expected raw or pushpin, got '{v}'")),
                }
            }
            "pub-resp" => pub_resp = Some(host_port(v, 6379, &flag)?),
            "rate" => rate = num(&flag, v)?,
            "rate-steps" => {
                rate_steps = Some(
                    v.split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| num::<f64>(&flag, s))
                        .collect::<Result<_, _>>()?,
                )
            }
            "duration" => duration = secs(&flag, v, 3600.0)?,
            "target" => {
                target = match v {
                    "ch0" => Target::Ch0,
                    "random" => Target::Random,
                    "all" => Target::All,
                    _ => return Err(format!("{flag}: expected ch0, random or all, got '{v}'")),
                }
            }
            "payload-bytes" => payload_bytes = num(&flag, v)?,
            "settle" => settle = secs(&flag, v, 600.0)?,
            "pid" => pids.push(num(&flag, v)?),
            "label" => label = v.to_string(),
            "pub-conns" => pub_conns = num(&flag, v)?,
            "pub-pipeline" => pub_pipeline = num(&flag, v)?,
            "warmup" => warmup = secs(&flag, v, 60.0)?,
            "connect-timeout" => connect_timeout = secs(&flag, v, 120.0)?,
            "connect-concurrency" => connect_concurrency = num(&flag, v)?,
            "tls-ca" => tls_ca = Some(v.to_string()),
            "h2-streams" => h2_streams = Some(num(&flag, v)?),
            "worker" => {
                let (a, b) = v.split_once('/').ok_or_else(|| format!("{flag}: expected i/W"))?;
                worker = Some((num::<usize>(&flag, a)?, num::<usize>(&flag, b)?));
            }
            _ => return Err(format!("unknown flag '{flag}'; run with --help")),
        }
    }

    let sub_urls: Vec<Url> = sub_url.ok_or("--sub-url is required")?;
    let sub_url = sub_urls[0].clone();
    let pub_urls: Vec<Url> = pub_url.unwrap_or_default();
    let pub_url = pub_urls.first().cloned();
    if subscribers == 0 || subscribers > 1_000_000 {
        return Err("--subscribers: must be 1..=1000000".into());
    }
    if channels == 0 || channels > 100_000 {
        return Err("--channels: must be 1..=100000".into());
    }
    if channel_prefix.is_empty()
        || !channel_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@/".contains(&b))
    {
        return Err("--channel-prefix: use 1 or more of A-Z a-z 0-9 _ - . : @ /".into());
    }
    let workers = workers.unwrap_or_else(|| subscribers.div_ceil(15_000).max(1));
    if workers == 0 || workers > 64 {
        return Err("--workers: must be 1..=64".into());
    }
    if subscribers.div_ceil(workers) > MAX_PER_WORKER {
        return Err(format!(
            "--workers {workers}: {} subscribers per worker is over {MAX_PER_WORKER} (fd limit); use more workers",
            subscribers.div_ceil(workers)
        ));
    }
    let rates = rate_steps.unwrap_or_else(|| vec![rate]);
    if rates.is_empty() {
        return Err("--rate-steps: no rates".into());
    }
    if let Some(bad) = rates.iter().find(|r| !r.is_finite() || **r <= 0.0 || **r > 1_000_000.0) {
        return Err(format!("--rate: {bad} is outside (0, 1000000]"));
    }
    if duration <= 0.0 {
        return Err("--duration: must be over 0".into());
    }
    if payload_bytes > 65_536 {
        return Err("--payload-bytes: at most 65536".into());
    }
    if !no_publish {
        match (&pub_url, &pub_resp) {
            (None, None) => return Err("give --pub-url or --pub-resp (or --no-publish)".into()),
            (Some(_), Some(_)) => return Err("--pub-url and --pub-resp exclude each other".into()),
            _ => {}
        }
        if pub_format == PubFormat::Pushpin && pub_url.is_none() {
            return Err("--pub-format pushpin needs --pub-url".into());
        }
        let max_msgs: f64 = rates.iter().map(|r| r * duration).sum();
        if max_msgs > 50_000_000.0 {
            return Err("rate x duration: at most 50,000,000 messages per run".into());
        }
    }
    if pub_conns == 0 || pub_conns > 256 {
        return Err("--pub-conns: must be 1..=256".into());
    }
    if pub_pipeline == 0 || pub_pipeline > 4096 {
        return Err("--pub-pipeline: must be 1..=4096".into());
    }
    if sub_url.tls != tls_ca.is_some() {
        return Err("--tls-ca FILE goes with an https:// or wss:// --sub-url, and only with one".into());
    }
    if connect_concurrency == 0 {
        return Err("--connect-concurrency: must be at least 1".into());
    }
    if let Some(s) = h2_streams {
        check_h2(s, transport, &headers)?;
    }
    if let Some((i, w)) = worker {
        if w != workers || i >= w {
            return Err(format!("--worker {i}/{w} does not match --workers {workers}"));
        }
    }
    Ok(Parsed::Run(Box::new(Config {
        sub_url,
        sub_urls,
        transport,
        subscribers,
        channels,
        channel_prefix,
        workers,
        source_addrs,
        connect_rate,
        headers,
        pub_urls,
        pub_format,
        pub_resp,
        rates,
        duration,
        target,
        payload_bytes,
        settle,
        no_publish,
        pids,
        json,
        label,
        pub_conns,
        pub_pipeline,
        warmup,
        connect_timeout,
        connect_concurrency,
        tls_ca,
        h2_streams,
        progress,
        no_progress,
        worker,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Result<Config, String> {
        let args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            Parsed::Run(c) => Ok(*c),
            Parsed::Help | Parsed::Version => Err("help".into()),
        }
    }

    #[test]
    fn url_lists() {
        let c = p(&[
            "--sub-url",
            "http://127.0.0.1:8080/sub/{ch}|http://127.0.0.1:8180/sub/{ch} | http://127.0.0.2:8280/s/{ch}",
            "--pub-url=http://127.0.0.1:8081/pub/{ch}|http://127.0.0.1:8181/pub/{ch}",
        ])
        .unwrap();
        assert_eq!(c.sub_urls.len(), 3);
        assert_eq!(c.sub_url.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.sub_urls[1].addr, "127.0.0.1:8180".parse().unwrap());
        assert_eq!(c.sub_urls[2].addr, "127.0.0.2:8280".parse().unwrap());
        assert_eq!(c.sub_urls[2].path_for("x"), "/s/x");
        assert_eq!(c.sub_urls[2].host, "127.0.0.2:8280");
        assert_eq!(c.pub_urls.len(), 2);
        assert_eq!(c.pub_urls[0].addr, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.pub_urls[1].addr, "127.0.0.1:8181".parse().unwrap());
        // One URL: exactly as before.
        let c = p(&["--sub-url", "http://127.0.0.1:8080/sub/{ch}", "--no-publish"]).unwrap();
        assert_eq!(c.sub_urls.len(), 1);
        assert!(c.pub_urls.is_empty());
        for (args, want) in [
            (&["--sub-url", "|", "--no-publish"][..], "no URL"),
            (&["--sub-url", "http://127.0.0.1:1/|http://10.0.0.1:1/", "--no-publish"][..], "127.0.0.0/8"),
            (&["--sub-url", "http://127.0.0.1:1/|https://127.0.0.1:2/", "--no-publish"][..], "mix of TLS"),
            (
                &["--sub-url", "http://127.0.0.1:1/", "--pub-url", "http://127.0.0.1:2/|ftp://x"][..],
                "must start",
            ),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn parses_and_validates() {
        let c =
            p(&["--sub-url", "http://127.0.0.1:8080/sub/{ch}", "--pub-url=http://localhost:8081/pub/{ch}"])
                .unwrap();
        assert_eq!(c.sub_url.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.sub_url.path_for("ch3"), "/sub/ch3");
        assert_eq!(c.workers, 1);
        let c =
            p(&["--sub-url", "http://127.0.0.1/s/{ch}", "--no-publish", "--subscribers", "40000"]).unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.sub_url.addr.port(), 80);
        assert_eq!(c.h2_streams, None);
        let c = p(&["--sub-url", "http://127.0.0.1/s/{ch}", "--no-publish", "--h2-streams", "100"]).unwrap();
        assert_eq!(c.h2_streams, Some(100));
        for (args, err) in [
            (&["--sub-url", "http://10.0.0.1:80/"][..], "127.0.0.0/8"),
            (&["--sub-url", "http://127.0.0.1:80/", "--no-publish", "--bogus", "1"], "unknown flag"),
            (&["--sub-url", "http://127.0.0.1:80/"], "--pub-url or --pub-resp"),
            (
                &[
                    "--sub-url",
                    "http://127.0.0.1:80/",
                    "--no-publish",
                    "--subscribers",
                    "40000",
                    "--workers",
                    "2",
                ],
                "fd",
            ),
            (&["--sub-url", "http://127.0.0.1:80/", "--no-publish", "--transport", "x"], "expected sse"),
            (&["--sub-url", "http://127.0.0.1:80/", "--no-publish", "--h2-streams", "0"], "1..=10000"),
            (
                &[
                    "--sub-url",
                    "http://127.0.0.1:80/",
                    "--no-publish",
                    "--h2-streams",
                    "10",
                    "--transport",
                    "ws",
                ],
                "no WebSocket over HTTP/2",
            ),
            (
                &[
                    "--sub-url",
                    "http://127.0.0.1:80/",
                    "--no-publish",
                    "--h2-streams",
                    "10",
                    "--header",
                    "Host: x",
                ],
                "not allowed over HTTP/2",
            ),
            (&["--sub-url", "http://127.0.0.1:80/", "--pub-resp", "127.0.0.1:1", "--rate", "0"], "outside"),
            (
                &["--sub-url", "http://127.0.0.1:80/", "--no-publish", "--source-addrs", "127.0.0.2,8.8.8.8"],
                "8.8.8.8",
            ),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(err), "{args:?}: {e}");
        }
    }
}
