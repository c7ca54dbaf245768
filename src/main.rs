//! The `halley` binary: parse the command line, start the gateway, stop it
//! cleanly on SIGTERM or SIGINT.

use std::process::ExitCode;

use halley::cli::{self, Command};
use halley::config::Config;
use halley::log;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse_args(&args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", cli::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("halley {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::PrintConfig(config)) => {
            print!("{}", config.to_toml());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("halley: {message}");
            return ExitCode::from(2);
        }
    };
    run(config)
}

/// SIGHUP: new TLS handshakes get the certificate and key now in the files;
/// open connections keep theirs. A bad file keeps the old pair.
fn reload(tls: Option<&halley::tls::Tls>) {
    match tls.map(|t| t.reload()) {
        None => log::info(format_args!("SIGHUP: no TLS configured, nothing to reload")),
        Some(Ok(())) => log::info(format_args!("SIGHUP: TLS certificate and key reloaded")),
        Some(Err(e)) => {
            log::error(format_args!("SIGHUP: TLS reload failed, keeping the old certificate: {e}"))
        }
    }
}

fn run(config: Config) -> ExitCode {
    if let Some(level) = log::Level::parse(&config.log_level) {
        log::set_level(level);
    }
    // Unusable certificate files are a configuration error, like a bad flag.
    if let Err(message) = halley::server::load_tls(&config) {
        eprintln!("halley: {message}");
        return ExitCode::from(2);
    }
    // Signals are caught before anything starts, so an early SIGTERM is not lost.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            log::error(format_args!("cannot install signal handlers: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let running = match halley::server::start(&config) {
        Ok(r) => r,
        Err(message) => {
            log::error(format_args!("{message}"));
            return ExitCode::FAILURE;
        }
    };
    log::info(format_args!(
        "listening public={} ingest={} resp={} threads={} limits: {}",
        running.public_addr,
        running.ingest_addr,
        running.resp_addr,
        running.threads,
        limits_summary(&config),
    ));
    let stopper = running.stopper();
    let tls = running.tls.clone();
    std::thread::spawn(move || {
        let mut first = true;
        for signal in signals.forever() {
            if signal == signal_hook::consts::SIGHUP {
                reload(tls.as_deref());
            } else if first {
                log::info(format_args!("signal {signal}: shutting down"));
                stopper.shutdown();
                first = false;
            } else {
                log::warn(format_args!("second signal {signal}: exiting now"));
                std::process::exit(1);
            }
        }
    });
    running.wait();
    log::info(format_args!("stopped"));
    ExitCode::SUCCESS
}

/// Every limit on one line, `name=value`, for the startup log.
fn limits_summary(config: &Config) -> String {
    let skip = ["listen", "ingest", "resp", "threads", "log_level"];
    config
        .to_toml()
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .filter(|(key, _)| !skip.contains(key))
        .map(|(key, value)| format!("{key}={}", value.trim_matches('"')))
        .collect::<Vec<_>>()
        .join(" ")
}
