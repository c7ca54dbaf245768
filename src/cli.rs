//! Command-line parsing.
//!
//! Besides `--config`, `--print-config`, `--help` and `--version`, every
//! `Config` key is a flag, spelt with '-' for '_' (`--max-head-bytes 4096`
//! or `--max-head-bytes=4096`). Flags are not listed by hand anywhere: they
//! come from the keys of `Config`, so a new setting is a new flag for free.
//!
//! Precedence, lowest first: defaults, the `--config` file, the `HALLEY_LOG`
//! environment variable (log level only), flags. It does not depend on the
//! order of the arguments.

use crate::config::{check_log_level, Config};
use std::path::Path;

/// What the program should do, as decided by its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Serve with this validated configuration.
    Run(Config),
    /// Print [`help_text`] and exit successfully.
    Help,
    /// Print the version and exit successfully.
    Version,
    /// Print this validated configuration as TOML and exit successfully.
    PrintConfig(Config),
}

/// The environment variable that sets `log_level`.
pub const LOG_ENV: &str = "HALLEY_LOG";

/// One recognised command-line argument (with its value, if it takes one).
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Help,
    Version,
    PrintConfig,
    ConfigFile(String),
    /// A setting flag: `flag` as typed (for messages), `key` in the config.
    Set {
        flag: String,
        key: String,
        value: String,
    },
}

/// Parses the arguments (excluding argv[0]), reading `HALLEY_LOG` from the
/// process environment. See [`parse_args_with_env`].
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    parse_args_with_env(args, std::env::var(LOG_ENV).ok())
}

/// Parses the arguments (excluding argv[0]) with `env_log` standing in for
/// the `HALLEY_LOG` variable, so tests need not touch the real environment.
///
/// `--help` and `--version` win over everything else (and skip loading the
/// file), so they work even next to a broken setting. Otherwise the result
/// is validated: a `Run` or `PrintConfig` always carries a usable config.
pub fn parse_args_with_env(args: &[String], env_log: Option<String>) -> Result<Command, String> {
    let parsed = split_args(args)?;
    if parsed.contains(&Arg::Help) {
        return Ok(Command::Help);
    }
    if parsed.contains(&Arg::Version) {
        return Ok(Command::Version);
    }
    let config = build_config(&parsed, env_log)?;
    if parsed.contains(&Arg::PrintConfig) {
        Ok(Command::PrintConfig(config))
    } else {
        Ok(Command::Run(config))
    }
}

/// Applies the sources in precedence order and validates the result.
fn build_config(parsed: &[Arg], env_log: Option<String>) -> Result<Config, String> {
    let mut config = match config_file(parsed)? {
        Some(path) => Config::load(Path::new(path))?,
        None => Config::default(),
    };
    // An empty variable is treated as unset, as is usual for such variables
    // (`HALLEY_LOG= halley` should not fail). A flag overrides it entirely,
    // so a bad value is only reported when it would actually be used.
    let log_flag_given = parsed.iter().any(|a| matches!(a, Arg::Set { key, .. } if key == "log_level"));
    if let Some(level) = env_log.filter(|l| !l.trim().is_empty() && !log_flag_given) {
        check_log_level(LOG_ENV, &level)?;
        config.set_labeled("log_level", &level, LOG_ENV)?;
    }
    for arg in parsed {
        if let Arg::Set { flag, key, value } = arg {
            config.set_labeled(key, value, flag)?;
        }
    }
    config.validate().map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(config)
}

/// The `--config` path, if given. Giving it twice is an error rather than
/// "last wins" because layering two files is not supported and silently
/// ignoring one would surprise.
fn config_file(parsed: &[Arg]) -> Result<Option<&str>, String> {
    let mut paths = parsed.iter().filter_map(|a| match a {
        Arg::ConfigFile(path) => Some(path.as_str()),
        _ => None,
    });
    let first = paths.next();
    if paths.next().is_some() {
        return Err("--config given more than once".to_string());
    }
    Ok(first)
}

/// Splits the raw arguments into recognised [`Arg`]s, pairing each flag
/// with its value. Values are not interpreted here, only attached.
fn split_args(args: &[String]) -> Result<Vec<Arg>, String> {
    let keys = Config::keys();
    let mut parsed = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let parsed_arg = match arg.as_str() {
            "-h" => Arg::Help,
            "-V" => Arg::Version,
            _ => split_long(arg, &keys, &mut rest)?,
        };
        parsed.push(parsed_arg);
    }
    Ok(parsed)
}

/// Interprets one `--name[=value]` argument, taking its value from `rest`
/// when it was not given inline.
fn split_long<'a>(
    arg: &str,
    keys: &[String],
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<Arg, String> {
    let Some(body) = arg.strip_prefix("--").filter(|b| !b.is_empty()) else {
        return Err(format!("unexpected argument '{arg}'; settings are given as --name VALUE (see --help)"));
    };
    let (name, inline) = match body.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (body, None),
    };
    let flag = format!("--{name}");
    let switch = match name {
        "help" => Some(Arg::Help),
        "version" => Some(Arg::Version),
        "print-config" => Some(Arg::PrintConfig),
        _ => None,
    };
    if let Some(switch) = switch {
        return match inline {
            Some(_) => Err(format!("{flag} takes no value")),
            None => Ok(switch),
        };
    }
    let key = flag_key(name, keys).ok_or_else(|| unknown_flag_message(name, keys))?;
    let value = match inline {
        Some(value) => value,
        None => next_value(&flag, rest)?,
    };
    Ok(match key {
        None => Arg::ConfigFile(value),
        Some(key) => Arg::Set { flag, key, value },
    })
}

/// Maps a flag name to what it sets: `Some(None)` for `--config`,
/// `Some(Some(key))` for a setting, `None` if it is not a flag. Only the
/// '-' spelling is a flag, so each setting has exactly one.
fn flag_key(name: &str, keys: &[String]) -> Option<Option<String>> {
    if name == "config" {
        return Some(None);
    }
    if name.contains('_') {
        return None;
    }
    let key = name.replace('-', "_");
    keys.contains(&key).then_some(Some(key))
}

/// Takes the separate value of `flag`. An argument that itself looks like a
/// long flag is not taken, because forgetting a value is far more likely
/// than a value starting with "--" (which can still be given with '=').
fn next_value<'a>(flag: &str, rest: &mut impl Iterator<Item = &'a String>) -> Result<String, String> {
    match rest.next() {
        Some(value) if !value.starts_with("--") => Ok(value.clone()),
        _ => Err(format!("{flag}: missing value (use {flag} VALUE or {flag}=VALUE)")),
    }
}

/// The error for an unrecognised flag, with a spelling hint when the user
/// wrote the TOML key form (underscores) of a real flag.
fn unknown_flag_message(name: &str, keys: &[String]) -> String {
    let dashed = name.replace('_', "-");
    let hint = if dashed != name && keys.contains(&name.to_string()) {
        format!(" (did you mean --{dashed}?)")
    } else {
        String::new()
    };
    format!("unknown flag '--{name}'{hint}; run with --help to see the flags")
}

/// The `--help` text. Setting flags and their defaults are generated from
/// `Config::default().to_toml()`, so the text cannot drift from the code.
pub fn help_text() -> String {
    let mut rows = vec![
        ("--config FILE".to_string(), "read settings from a TOML file".to_string()),
        ("--print-config".to_string(), "print the effective configuration as TOML and exit".to_string()),
        ("-h, --help".to_string(), "print this help and exit".to_string()),
        ("-V, --version".to_string(), "print the version and exit".to_string()),
    ];
    let fixed = rows.len();
    rows.extend(setting_rows());
    let width = rows.iter().map(|(left, _)| left.len()).max().unwrap_or(0);
    let line = |(left, right): &(String, String)| format!("  {left:<width$}  {right}\n");

    let mut text =
        String::from("usage: halley [--config FILE] [--print-config] [--<setting> VALUE]...\n\nOptions:\n");
    rows[..fixed].iter().for_each(|row| text.push_str(&line(row)));
    text.push_str("\nSettings:\n");
    rows[fixed..].iter().for_each(|row| text.push_str(&line(row)));
    text.push_str(&format!(
        "\nEvery setting flag is also a key in the TOML file given to --config, \
         with '_' for '-'\n(e.g. --max-head-bytes 4096 is max_head_bytes = 4096). \
         A value may follow the flag\nor be attached with '='.\n\
         The {LOG_ENV} environment variable sets log_level.\n\
         Precedence: defaults < config file < {LOG_ENV} < flags.\n"
    ));
    text
}

/// One (flag with placeholder, default) row per setting, in the order the
/// settings appear in the TOML rendering (declaration order).
fn setting_rows() -> Vec<(String, String)> {
    let text = Config::default().to_toml();
    let table: toml::Table = text.parse().unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(key, _)| table.get_key_value(key.trim()))
        .map(|(key, value)| {
            let flag = format!("--{} {}", key.replace('_', "-"), placeholder(value));
            (flag, format!("{} (default: {value})", Config::describe(key)))
        })
        .collect()
}

/// The value placeholder shown in help for a setting of this type.
fn placeholder(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::Integer(_) => "N",
        toml::Value::Float(_) => "X",
        toml::Value::Boolean(_) => "true|false",
        _ => "TEXT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Turns string literals into the owned argument vector `parse_args` takes.
    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Parses with no HALLEY_LOG and expects a `Run`.
    fn run(list: &[&str]) -> Config {
        match parse_args_with_env(&args(list), None) {
            Ok(Command::Run(config)) => config,
            other => panic!("{list:?} gave {other:?}"),
        }
    }

    /// A temporary config file removed when dropped, named uniquely per
    /// process and per call so parallel tests do not collide.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str) -> TempFile {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("halley-cli-test-{}-{n}.toml", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).expect("write temp config");
            TempFile(path)
        }

        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn no_arguments_runs_with_defaults() {
        assert_eq!(run(&[]), Config::default());
    }

    #[test]
    fn both_value_forms_set_settings() {
        // (arguments, key, expected value as rendered in TOML)
        let cases: [(&[&str], &str, &str); 6] = [
            (&["--max-head-bytes", "4096"], "max_head_bytes", "4096"),
            (&["--max-head-bytes=4096"], "max_head_bytes", "4096"),
            (&["--listen", "127.0.0.1:0"], "listen", "\"127.0.0.1:0\""),
            (&["--listen=127.0.0.1:0"], "listen", "\"127.0.0.1:0\""),
            (&["--log-level=debug"], "log_level", "\"debug\""),
            (&["--threads", "2", "--threads", "3"], "threads", "3"),
        ];
        for (list, key, expected) in cases {
            let config = run(list);
            let table: toml::Table = config.to_toml().parse().unwrap();
            assert_eq!(table[key].to_string(), expected, "{list:?}");
        }
    }

    #[test]
    fn help_and_version() {
        let cases: [(&[&str], Command); 6] = [
            (&["--help"], Command::Help),
            (&["-h"], Command::Help),
            (&["--version"], Command::Version),
            (&["-V"], Command::Version),
            // Help wins even next to settings that would not validate.
            (&["--threads", "9999", "--help"], Command::Help),
            (&["--help", "--version"], Command::Help),
        ];
        for (list, expected) in cases {
            assert_eq!(parse_args_with_env(&args(list), None), Ok(expected), "{list:?}");
        }
    }

    #[test]
    fn print_config_carries_the_merged_config() {
        let got = parse_args_with_env(&args(&["--print-config", "--threads", "2"]), None);
        let expected = Config { threads: 2, ..Config::default() };
        assert_eq!(got, Ok(Command::PrintConfig(expected)));
    }

    #[test]
    fn bad_arguments_are_rejected_with_clear_messages() {
        let file = TempFile::new("bogus = 1\n");
        let bad_file = ["--config", &file.path()];
        // (arguments, text the error must contain)
        let cases: [(&[&str], &str); 15] = [
            (&["--bogus", "1"], "unknown flag '--bogus'; run with --help"),
            (&["--max_head_bytes", "1"], "did you mean --max-head-bytes?"),
            (&["listen"], "unexpected argument 'listen'"),
            (&["-x"], "unexpected argument '-x'"),
            (&["--"], "unexpected argument '--'"),
            (&["--threads"], "--threads: missing value"),
            (&["--threads", "--listen", "127.0.0.1:1"], "--threads: missing value"),
            (&["--config"], "--config: missing value"),
            (&["--help=yes"], "--help takes no value"),
            (&["--threads", "x"], "--threads: expected a whole number, got 'x'"),
            (&["--threads=-2"], "--threads: cannot use '-2'"),
            (&["--threads", "300"], "invalid configuration: threads must be at most 256"),
            (&["--config", "a.toml", "--config=b.toml"], "--config given more than once"),
            (&["--config", "/nonexistent/halley.toml"], "/nonexistent/halley.toml"),
            (&bad_file, "unknown setting 'bogus'"),
        ];
        for (list, expected) in cases {
            let err = parse_args_with_env(&args(list), None).expect_err(&format!("{list:?}"));
            assert!(err.contains(expected), "{list:?}: {err:?} lacks {expected:?}");
        }
    }

    /// (arguments, HALLEY_LOG, expected threads, backlog, log_level)
    type PrecedenceCase<'a> = (Vec<&'a str>, Option<&'a str>, usize, u32, &'a str);

    #[test]
    fn precedence_is_default_file_env_flag_regardless_of_order() {
        let file =
            TempFile::new("threads = 4\nbacklog = 10\nlog_level = \"warn\"\nlisten = \"127.0.0.1:1\"\n");
        let path = file.path();
        let cases: [PrecedenceCase; 7] = [
            (vec![], None, 0, 4096, "info"),
            (vec!["--config", &path], None, 4, 10, "warn"),
            (vec!["--config", &path], Some("debug"), 4, 10, "debug"),
            (vec!["--config", &path], Some(""), 4, 10, "warn"),
            (vec!["--threads", "2", "--config", &path], Some("debug"), 2, 10, "debug"),
            (vec!["--log-level", "error", "--config", &path], Some("debug"), 4, 10, "error"),
            // A flag overriding HALLEY_LOG makes its bad value harmless.
            (vec!["--log-level=trace"], Some("nonsense"), 0, 4096, "trace"),
        ];
        for (list, env, threads, backlog, level) in cases {
            let got = parse_args_with_env(&args(&list), env.map(str::to_string));
            let Ok(Command::Run(config)) = got else {
                panic!("{list:?} {env:?} gave {got:?}");
            };
            let summary = (config.threads, config.backlog, config.log_level.as_str());
            assert_eq!(summary, (threads, backlog, level), "{list:?} env={env:?}");
            if list.contains(&"--config") {
                assert_eq!(config.listen, "127.0.0.1:1", "file keys not overridden stay");
            }
        }
    }

    #[test]
    fn bad_env_log_level_is_named() {
        let err = parse_args_with_env(&[], Some("loud".to_string())).unwrap_err();
        assert!(err.contains("HALLEY_LOG must be one of"), "{err}");
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = help_text();
        for key in Config::keys() {
            let flag = format!("--{} ", key.replace('_', "-"));
            assert!(help.contains(&flag), "help lacks {flag}");
        }
        for needle in [
            "usage: halley",
            "--config FILE",
            "--print-config",
            "-h, --help",
            "-V, --version",
            "HALLEY_LOG",
            "key in the TOML file",
            "--max-head-bytes N",
            "default: 8192",
            "default: \"127.0.0.1:8080\"",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }

    #[test]
    fn every_flag_in_help_is_accepted() {
        let help = help_text();
        let settings = help.split("Settings:").nth(1).unwrap_or_default();
        for line in settings.lines().filter(|l| l.trim_start().starts_with("--")) {
            let mut words = line.split_whitespace();
            let flag = words.next().unwrap_or_default();
            let default = line.split("default: ").nth(1).unwrap_or_default();
            let value = default.strip_suffix(')').unwrap_or(default).trim_matches('"');
            let arg = format!("{flag}={value}");
            assert_eq!(
                parse_args_with_env(std::slice::from_ref(&arg), None),
                Ok(Command::Run(Config::default())),
                "{arg}"
            );
        }
    }
}
