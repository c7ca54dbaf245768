//! loadgen: the load generator of halley (and of the peers it is compared
//! with). One run connects subscribers in worker processes, publishes at a
//! fixed open-loop rate, measures every delivery and prints a summary;
//! `loadgen publish-rate` measures the closed-loop publish rate alone;
//! `loadgen loopback-ceiling` what the machine's loopback carries with no
//! server at all.
//! The command line is described in CONTRACT.md.

mod ceiling;
mod cli;
mod decode;
mod h2;
mod msg;
mod parent;
mod parse;
mod procfs;
mod progress;
mod publisher;
mod rate;
mod report;
mod sock;
mod stats;
mod worker;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("publish-rate") {
        std::process::exit(rate::main(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("loopback-ceiling") {
        std::process::exit(ceiling::main(&args[1..]));
    }
    let cfg = match cli::parse(&args) {
        Ok(cli::Parsed::Run(cfg)) => cfg,
        Ok(cli::Parsed::Help) => {
            print!("{}", cli::USAGE);
            return;
        }
        Ok(cli::Parsed::Version) => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let code = match cfg.worker {
        Some((i, w)) => worker::run(&cfg, i, w),
        None => parent::run(&cfg, &args),
    };
    std::process::exit(code);
}
