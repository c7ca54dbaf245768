//! The command line of `loadgen publish-rate` (see CONTRACT.md).

use std::net::SocketAddrV4;

use crate::cli::{host_port, parse_url, Url};

/// Where the publishes go.
#[derive(Clone, Debug)]
pub enum Target {
    /// `POST` to this URL (`{ch}` replaced by the channel).
    Http(Url),
    /// RESP `PUBLISH` to this address.
    Resp(SocketAddrV4),
}

impl Target {
    pub fn protocol(&self) -> &'static str {
        match self {
            Target::Http(_) => "http",
            Target::Resp(_) => "resp",
        }
    }

    pub fn addr(&self) -> SocketAddrV4 {
        match self {
            Target::Http(u) => u.addr,
            Target::Resp(a) => *a,
        }
    }

    /// The target as given (the URL with the channel filled in, or HOST:PORT).
    pub fn describe(&self, channel: &str) -> String {
        match self {
            Target::Http(u) => format!("http://{}{}", u.host, u.path_for(channel)),
            Target::Resp(a) => a.to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Args {
    pub target: Target,
    pub connections: usize,
    pub pipeline: usize,
    pub duration: f64,
    pub warmup: f64,
    pub payload_bytes: usize,
    pub channel: String,
    pub pids: Vec<u32>,
    pub json: bool,
    pub label: String,
}

/// Parses the arguments after `publish-rate`; Ok(None) asks for the help text.
pub fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let (mut http, mut resp) = (None, None);
    let mut connections = 1usize;
    let mut pipeline = 1usize;
    let mut duration = 10.0f64;
    let mut warmup = 0.5f64;
    let mut payload_bytes = 64usize;
    let mut channel = "ch".to_string();
    let mut pids = Vec::new();
    let mut json = false;
    let mut label = String::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg, None),
        };
        match name {
            "-h" | "--help" => return Ok(None),
            "--json" => {
                json = true;
                continue;
            }
            _ => {}
        }
        let v = match inline {
            Some(v) => v,
            None => {
                let v = args.get(i).ok_or_else(|| format!("{name}: missing value"))?;
                i += 1;
                v.clone()
            }
        };
        let v = v.as_str();
        let n = |what: &str| v.trim().parse::<usize>().map_err(|_| format!("{what}: cannot use '{v}'"));
        let f = |what: &str| v.trim().parse::<f64>().map_err(|_| format!("{what}: cannot use '{v}'"));
        match name {
            "--http" => http = Some(parse_url(v, name)?),
            "--resp" => resp = Some(host_port(v, 6379, name)?),
            "--connections" => connections = n(name)?,
            "--pipeline" => pipeline = n(name)?,
            "--duration" => duration = f(name)?,
            "--warmup" => warmup = f(name)?,
            "--payload-bytes" => payload_bytes = n(name)?,
            "--channel" => channel = v.to_string(),
            "--pid" => pids.push(v.trim().parse().map_err(|_| format!("--pid: cannot use '{v}'"))?),
            "--label" => label = v.to_string(),
            _ => return Err(format!("publish-rate: unknown argument '{arg}'; run with --help")),
        }
    }
    let target = match (http, resp) {
        (Some(u), None) => Target::Http(u),
        (None, Some(a)) => Target::Resp(a),
        (None, None) => return Err("publish-rate: give --http URL or --resp HOST:PORT".into()),
        (Some(_), Some(_)) => return Err("publish-rate: --http and --resp exclude each other".into()),
    };
    if !(1..=1024).contains(&connections) {
        return Err("--connections: must be 1..=1024".into());
    }
    if !(1..=4096).contains(&pipeline) {
        return Err("--pipeline: must be 1..=4096".into());
    }
    if !duration.is_finite() || duration <= 0.0 || duration > 3600.0 {
        return Err("--duration: must be over 0 and at most 3600".into());
    }
    if !warmup.is_finite() || !(0.0..=60.0).contains(&warmup) {
        return Err("--warmup: must be 0..=60".into());
    }
    if !(1..=65_536).contains(&payload_bytes) {
        return Err("--payload-bytes: must be 1..=65536".into());
    }
    if channel.is_empty() || !channel.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b)) {
        return Err("--channel: use 1 or more of A-Z a-z 0-9 _ - . : @".into());
    }
    Ok(Some(Args {
        target,
        connections,
        pipeline,
        duration,
        warmup,
        payload_bytes,
        channel,
        pids,
        json,
        label,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Result<Option<Args>, String> {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_values() {
        let a = p(&["--http", "http://127.0.0.1:8081/pub/{ch}"]).unwrap().unwrap();
        assert_eq!((a.connections, a.pipeline, a.payload_bytes, a.json), (1, 1, 64, false));
        assert_eq!(a.target.describe(&a.channel), "http://127.0.0.1:8081/pub/ch");
        assert_eq!(a.target.protocol(), "http");
        let a = p(&[
            "--resp=localhost:6380",
            "--connections",
            "50",
            "--pipeline=16",
            "--duration",
            "2.5",
            "--payload-bytes",
            "3",
            "--channel",
            "bench",
            "--pid",
            "42",
            "--pid=43",
            "--json",
            "--label",
            "x",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.target.addr(), "127.0.0.1:6380".parse().unwrap());
        assert_eq!((a.connections, a.pipeline, a.duration, a.payload_bytes), (50, 16, 2.5, 3));
        assert_eq!(
            (a.channel.as_str(), a.pids, a.json, a.label.as_str()),
            ("bench", vec![42, 43], true, "x")
        );
        assert!(p(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn rejects() {
        // (arguments, part of the error)
        let cases: &[(&[&str], &str)] = &[
            (&[], "give --http"),
            (&["--http", "http://127.0.0.1/p", "--resp", "127.0.0.1:1"], "exclude"),
            (&["--resp", "10.0.0.1:6379"], "127.0.0.0/8"),
            (&["--resp", "127.0.0.1:1", "--connections", "0"], "--connections"),
            (&["--resp", "127.0.0.1:1", "--pipeline", "5000"], "--pipeline"),
            (&["--resp", "127.0.0.1:1", "--duration", "0"], "--duration"),
            (&["--resp", "127.0.0.1:1", "--duration", "x"], "cannot use"),
            (&["--resp", "127.0.0.1:1", "--payload-bytes", "0"], "--payload-bytes"),
            (&["--resp", "127.0.0.1:1", "--channel", "a b"], "--channel"),
            (&["--resp", "127.0.0.1:1", "--rate", "5"], "unknown argument"),
            (&["--resp"], "missing value"),
        ];
        for (args, want) in cases {
            let e = p(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
