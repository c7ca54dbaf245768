//! Running programs (redis-cli, python3, halley itself) and joining threads,
//! each with a deadline.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use super::DEADLINE;

/// Fails with what to install when `program` is missing (never skips).
pub fn require_tool(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{program}` is required and was not found on PATH: install Debian's {package} \
         (`apt-get install -y {package}`); tests/run installs it when missing"
    );
}

/// Waits for `child` to finish and collects its output; kills it and fails
/// if it has not finished within the deadline.
pub fn wait_output(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(output) => output.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
    }
}

/// Runs `cmd` with `input` on its stdin and returns its output; kills it and
/// fails if it has not finished within the deadline.
pub fn run(cmd: &mut Command, input: Vec<u8>) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    // Dropping stdin at the end of the write closes it: the program sees EOF.
    let writer = thread::spawn(move || stdin.write_all(&input));
    let output = wait_output(child, &what);
    if let Ok(Err(e)) = writer.join() {
        panic!("writing stdin of {what}: {e}; stderr {}", String::from_utf8_lossy(&output.stderr));
    }
    output
}

pub fn show(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Joins a thread, re-raising its failure as `{what} failed: …`.
pub fn join<T>(handle: JoinHandle<T>, what: &str) -> T {
    handle.join().unwrap_or_else(|e| {
        let why = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{what} failed: {why}")
    })
}
