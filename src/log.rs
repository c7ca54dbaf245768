//! Leveled logging to stderr, one line per record. Deliberately tiny: the
//! gateway logs startup, shutdown and rare errors; per-connection trouble is
//! debug level, so a flood of bad clients cannot flood the log at `info`.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn parse(name: &str) -> Option<Level> {
        Some(match name {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

pub fn log(level: Level, args: Arguments<'_>) {
    if enabled(level) {
        let secs = crate::clock::unix_ms() as f64 / 1000.0;
        let _ = writeln!(std::io::stderr().lock(), "{secs:.3} {} halley: {args}", level.label());
    }
}

pub fn error(args: Arguments<'_>) {
    log(Level::Error, args)
}
pub fn warn(args: Arguments<'_>) {
    log(Level::Warn, args)
}
pub fn info(args: Arguments<'_>) {
    log(Level::Info, args)
}
pub fn debug(args: Arguments<'_>) {
    log(Level::Debug, args)
}
