//! The parent process: starts the workers (this binary with --worker i/W),
//! publishes, samples /proc, merges what the workers report and prints it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::Config;
use crate::msg::{Cmd, Event, PubMsg, StepOutcome};
use crate::procfs::Sampler;
use crate::progress::Progress;
use crate::publisher;
use crate::report;
use crate::stats::{self, Errors, StepCounts};

struct Run<'a> {
    cfg: &'a Config,
    rx: Receiver<Event>,
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    ready: Vec<Option<Value>>,
    progress: Vec<u64>,
    last_progress_change: Instant,
    snap: Vec<Option<Value>>,
    done: Vec<Option<Value>>,
    pub_msg: Option<PubMsg>,
    server: Sampler,
    loadgen: Sampler,
    deadline: Instant,
    /// What the person watching sees (see `progress.rs`).
    shown: Progress,
}

/// Kills every worker we started (by pid) and exits: the hard deadline.
fn kill_all(pids: &[u32], why: &str) -> ! {
    for &pid in pids {
        // SAFETY: signalling a child process we started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    eprintln!("loadgen: {why}; workers killed");
    std::process::exit(1);
}

impl Run<'_> {
    /// Handles the events of up to `max` time; samples /proc.
    fn pump(&mut self, max: Duration) -> Result<(), String> {
        if Instant::now() >= self.deadline {
            let pids: Vec<u32> = self.children.iter().map(|c| c.id()).collect();
            kill_all(&pids, "hard deadline reached");
        }
        let wait = max.min(Duration::from_millis(100));
        let first = self.rx.recv_timeout(wait);
        let mut next = first.ok();
        while let Some(ev) = next {
            self.handle(ev)?;
            next = self.rx.try_recv().ok();
        }
        self.server.tick(false);
        self.loadgen.tick(false);
        self.shown.tick();
        Ok(())
    }

    fn handle(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Pub(m) => self.pub_msg = Some(m),
            Event::Eof(i) => {
                if self.done[i].is_none() {
                    return Err(format!("worker {i} exited before it finished (see its stderr)"));
                }
            }
            Event::Line(i, line) => {
                let v: Value =
                    serde_json::from_str(&line).map_err(|e| format!("worker {i} said {line:?}: {e}"))?;
                match v["type"].as_str().unwrap_or("") {
                    "ready" => self.ready[i] = Some(v),
                    "progress" => {
                        let u = v["unique"].as_u64().unwrap_or(0);
                        if u != self.progress[i] {
                            self.progress[i] = u;
                            self.last_progress_change = Instant::now();
                        }
                    }
                    "step" => self.snap[i] = Some(v),
                    "done" => self.done[i] = Some(v),
                    "fatal" => return Err(format!("worker {i}: {}", v["error"].as_str().unwrap_or("?"))),
                    other => return Err(format!("worker {i}: unknown report '{other}'")),
                }
            }
        }
        Ok(())
    }

    /// Pumps events until `cond` holds (true) or `until` passes (false).
    fn wait_until(&mut self, until: Instant, cond: impl Fn(&Self) -> bool) -> Result<bool, String> {
        loop {
            if cond(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(false);
            }
            self.pump(until - now)?;
        }
    }

    fn tell_all(&mut self, line: &str) {
        for s in self.stdins.iter_mut().flatten() {
            let _ = s.write_all(line.as_bytes()).and_then(|_| s.write_all(b"\n")).and_then(|_| s.flush());
        }
    }

    fn unique_total(&self) -> u64 {
        self.progress.iter().sum()
    }
}

pub fn run(cfg: &Config, args: &[String]) -> i32 {
    match run_inner(cfg, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            1
        }
    }
}

fn run_inner(cfg: &Config, args: &[String]) -> Result<i32, String> {
    stats::raise_nofile();
    let wall_start = Instant::now();
    let deadline = wall_start + Duration::from_secs_f64(cfg.hard_deadline_secs());
    let mut server = Sampler::new(cfg.pids.clone());
    server.tick(true);
    if server.active() && server.cpu_start.is_none() {
        return Err(format!("cannot read /proc for --pid {:?}", cfg.pids));
    }

    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut children = Vec::new();
    let mut stdins = Vec::new();
    for i in 0..cfg.workers {
        let mut child = Command::new(&exe)
            .args(args)
            .arg("--workers")
            .arg(cfg.workers.to_string())
            .arg("--worker")
            .arg(format!("{i}/{}", cfg.workers))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start worker {i}: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        stdins.push(child.stdin.take());
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(Event::Line(i, line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Eof(i));
        });
        children.push(child);
    }
    let worker_pids: Vec<u32> = children.iter().map(|c| c.id()).collect();

    // The watchdog: whatever the main thread is doing, the run ends by the deadline.
    let finished = Arc::new(AtomicBool::new(false));
    {
        let finished = finished.clone();
        let pids = worker_pids.clone();
        std::thread::spawn(move || {
            while Instant::now() < deadline + Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(100));
                if finished.load(Ordering::SeqCst) {
                    return;
                }
            }
            kill_all(&pids, "hard deadline reached (watchdog)");
        });
    }

    let mut lg_pids = vec![std::process::id()];
    lg_pids.extend(&worker_pids);
    let mut run = Run {
        cfg,
        rx,
        children,
        stdins,
        ready: vec![None; cfg.workers],
        progress: vec![0; cfg.workers],
        last_progress_change: Instant::now(),
        snap: vec![None; cfg.workers],
        done: vec![None; cfg.workers],
        pub_msg: None,
        server,
        loadgen: Sampler::new(lg_pids),
        deadline,
        shown: Progress::new(cfg.progress.as_deref(), cfg.no_progress),
    };
    let result = drive(&mut run, tx, wall_start);
    finished.store(true, Ordering::SeqCst);
    if result.is_err() {
        for c in run.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    run.shown.finish();
    let out = result?;
    if cfg.json {
        println!("{}", serde_json::to_string(&out).expect("json"));
    } else {
        print!("{}", report::text(&out));
    }
    let connected = out["connected"].as_u64().unwrap_or(0);
    Ok(if connected == 0 { 1 } else { 0 })
}

struct StepMerge {
    counts: StepCounts,
    fl: HashMap<(u64, u64), (u64, u64)>,
    errors: Errors,
    disconnected: u64,
}

fn merge_snapshots(snaps: &[Option<Value>]) -> StepMerge {
    let mut m = StepMerge {
        counts: StepCounts::new(),
        fl: HashMap::new(),
        errors: Errors::default(),
        disconnected: 0,
    };
    for v in snaps.iter().flatten() {
        m.counts.add_json(v);
        m.disconnected += v["disconnected"].as_u64().unwrap_or(0);
        m.errors.merge_json(&v["errors"]);
        for entry in v["fl"].as_array().into_iter().flatten() {
            let (ch, base) = (entry[0].as_u64().unwrap_or(0), entry[1].as_u64().unwrap_or(0));
            let mins = entry[2].as_array().cloned().unwrap_or_default();
            let maxs = entry[3].as_array().cloned().unwrap_or_default();
            for (k, (lo, hi)) in mins.iter().zip(maxs.iter()).enumerate() {
                let (lo, hi) = (lo.as_u64().unwrap_or(u64::MAX), hi.as_u64().unwrap_or(0));
                if lo == u64::MAX {
                    continue;
                }
                let e = m.fl.entry((ch, base + k as u64)).or_insert((u64::MAX, 0));
                e.0 = e.0.min(lo);
                e.1 = e.1.max(hi);
            }
        }
    }
    m
}

fn median_ms(mut v: Vec<u64>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_unstable();
    json!(stats::ms(v[v.len() / 2]))
}

fn drive(run: &mut Run, tx: Sender<Event>, wall_start: Instant) -> Result<Value, String> {
    let cfg = run.cfg;
    // 1. Every worker connects its subscribers.
    let step_secs = cfg.duration + cfg.settle;
    let planned = if cfg.no_publish { cfg.duration } else { cfg.warmup + step_secs * cfg.rates.len() as f64 };
    let pace = (cfg.connect_rate > 0.0).then(|| cfg.subscribers as f64 / cfg.connect_rate);
    run.shown.phase(
        format!(
            "connecting {} {} subscribers{} ({} worker(s))",
            cfg.subscribers,
            cfg.transport.name(),
            match &h2_json(cfg)["connections"] {
                Value::Number(c) => format!(" as HTTP/2 streams over {c} connection(s)"),
                _ => String::new(),
            },
            cfg.workers
        ),
        pace,
        planned,
    );
    let deadline = run.deadline;
    run.wait_until(deadline, |r| r.ready.iter().all(Option::is_some))?;
    let mut connect = stats::new_hist();
    let (mut connected, mut failed) = (0u64, 0u64);
    let mut all_connected_ms: f64 = 0.0;
    let mut per_channel = vec![0u64; cfg.channels];
    let mut connect_errors = Errors::default();
    for r in run.ready.iter().flatten() {
        connected += r["connected"].as_u64().unwrap_or(0);
        failed += r["failed"].as_u64().unwrap_or(0);
        all_connected_ms = all_connected_ms.max(r["all_connected_ms"].as_f64().unwrap_or(0.0));
        stats::merge_json(&mut connect, &r["connect_us"]);
        connect_errors.merge_json(&r["errors"]);
        for pair in r["per_channel"].as_array().into_iter().flatten() {
            let (c, n) = (pair[0].as_u64().unwrap_or(0) as usize, pair[1].as_u64().unwrap_or(0));
            if c < per_channel.len() {
                per_channel[c] += n;
            }
        }
    }
    run.shown.done(&format!(
        "{connected} of {} subscribers connected in {:.1} s",
        cfg.subscribers,
        all_connected_ms / 1000.0
    ));
    if !cfg.json {
        eprintln!(
            "loadgen: {connected} of {} subscribers connected in {:.0} ms{}",
            cfg.subscribers,
            all_connected_ms,
            if failed > 0 {
                format!(" ({failed} failed: {:?})", connect_errors.items)
            } else {
                String::new()
            }
        );
    }

    // 2. The publisher connects during the warm-up.
    let mut pub_tx = None;
    let mut pub_thread = None;
    let mut pub_errors = Errors::default();
    if !cfg.no_publish && connected > 0 {
        let (ctx, crx) = mpsc::channel();
        let pcfg = cfg.clone();
        let ptx = tx.clone();
        pub_thread = Some(std::thread::spawn(move || publisher::thread(pcfg, crx, ptx)));
        let _ = ctx.send(Cmd::Connect);
        pub_tx = Some(ctx);
        let warm_end = Instant::now() + Duration::from_secs_f64(cfg.warmup);
        run.wait_until(deadline, |r| r.pub_msg.is_some())?;
        if let Some(PubMsg::Connected(Err(e))) = run.pub_msg.take() {
            pub_errors.add(&e);
            if !cfg.json {
                eprintln!("loadgen: {e}");
            }
        }
        run.wait_until(warm_end, |_| false)?;
    }
    drop(tx);

    // 3. The steps.
    let mut steps = Vec::new();
    if cfg.no_publish && connected > 0 {
        run.shown.phase(format!("holding {connected} connections"), Some(cfg.duration), 0.0);
        let hold_end = Instant::now() + Duration::from_secs_f64(cfg.duration);
        run.wait_until(hold_end, |_| false)?;
        run.shown.done(&format!("held {connected} connections for {} s", cfg.duration));
    } else if connected > 0 {
        let n = cfg.rates.len();
        for (k, &rate) in cfg.rates.iter().enumerate() {
            let after = step_secs * (n - k - 1) as f64;
            run.shown.phase(format!("step {}/{n}: {rate} msg/s", k + 1), Some(step_secs), after);
            let srv0 = run.server.cpu_now();
            let lg0 = run.loadgen.cpu_now();
            let u0 = run.unique_total();
            let step_start = Instant::now();
            pub_tx
                .as_ref()
                .expect("publisher")
                .send(Cmd::Step { rate, duration: cfg.duration, settle: cfg.settle })
                .map_err(|_| "publisher thread ended".to_string())?;
            run.wait_until(deadline, |r| r.pub_msg.is_some())?;
            let outcome: Box<StepOutcome> = match run.pub_msg.take() {
                Some(PubMsg::Step(o)) => o,
                _ => return Err("publisher: unexpected answer".into()),
            };
            let expected: u64 = outcome.accepted.iter().zip(&per_channel).map(|(a, n)| a * n).sum();
            let settle_end = outcome.publish_end + Duration::from_secs_f64(cfg.settle);
            let complete = run.wait_until(settle_end, |r| r.unique_total() - u0 >= expected)?;
            let drained_at = if complete { Instant::now() } else { run.last_progress_change.max(step_start) };
            let srv1 = run.server.cpu_now();
            let lg1 = run.loadgen.cpu_now();
            run.snap.iter_mut().for_each(|s| *s = None);
            let next: Vec<Value> = outcome
                .next_seqs
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(c, n)| json!([c, n]))
                .collect();
            run.tell_all(&format!("snapshot {k} {}", Value::Array(next)));
            run.wait_until(deadline, |r| r.snap.iter().all(Option::is_some))?;
            let m = merge_snapshots(&run.snap);
            let wall = step_start.elapsed().as_secs_f64();
            let deliver_secs = (drained_at - step_start).as_secs_f64().max(cfg.duration);
            let firsts: Vec<u64> = m.fl.values().map(|e| e.0).collect();
            let lasts: Vec<u64> = m.fl.values().map(|e| e.1).collect();
            let published = outcome.scheduled;
            let mut step_errors = outcome.error_samples;
            step_errors.merge_json(&m.errors.to_json());
            let cpu = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => json!(((b - a) * 1000.0).round() / 1000.0),
                _ => Value::Null,
            };
            steps.push(json!({
                "rate": rate,
                "published": published,
                "publish_errors": outcome.errors,
                "expected_deliveries": expected,
                "deliveries": m.counts.deliveries,
                "lost": expected.saturating_sub(m.counts.unique),
                "duplicated": m.counts.dup,
                "out_of_order": m.counts.ooo,
                "deliveries_per_sec": (m.counts.deliveries as f64 / deliver_secs).round(),
                "latency_ms": stats::latency_json(&m.counts.hist),
                "first_subscriber_ms_p50": median_ms(firsts),
                "last_subscriber_ms_p50": median_ms(lasts),
                "stale": m.counts.stale,
                "late_from_earlier_steps": m.counts.late,
                "disconnected_so_far": m.disconnected,
                "publish_lag_ms_max": stats::ms(outcome.max_lag_us),
                "publish_answer_ms": stats::latency_json(&outcome.answer_hist),
                "wall_secs": (wall * 1000.0).round() / 1000.0,
                "server_cpu_secs": cpu(srv0, srv1),
                "loadgen_cpu_secs": cpu(lg0, lg1),
                "errors": step_errors.to_json(),
            }));
            let p99 = m.counts.hist.value_at_quantile(0.99) as f64 / 1000.0;
            run.shown.done(&format!(
                "step {}/{n}: {rate} msg/s: delivered {} of {} expected, lost {}, p99 {p99:.1} ms",
                k + 1,
                m.counts.deliveries,
                expected,
                expected.saturating_sub(m.counts.unique),
            ));
            if !cfg.json {
                eprintln!("{}", report::step_line(k, steps.last().expect("step")));
            }
        }
    }
    if let Some(p) = pub_tx.take() {
        let _ = p.send(Cmd::Exit);
    }
    if let Some(t) = pub_thread.take() {
        let _ = t.join();
    }

    // 4. Workers report and leave.
    run.loadgen.tick(true);
    run.server.tick(true);
    run.tell_all("exit");
    let exit_by = (Instant::now() + Duration::from_secs(15)).min(deadline);
    run.wait_until(exit_by, |r| r.done.iter().all(Option::is_some))?;
    run.stdins.iter_mut().for_each(|s| *s = None);
    let mut worker_cpu = Vec::new();
    let mut rss_peak = stats::own_rss_peak_kib();
    let mut disconnected = 0;
    // The workers' error lists are cumulative (connect failures included).
    let mut errors = Errors::default();
    for (i, d) in run.done.iter().enumerate() {
        let Some(d) = d else { return Err(format!("worker {i} did not report at exit")) };
        worker_cpu.push(d["cpu_secs"].as_f64().unwrap_or(0.0));
        rss_peak += d["rss_kib_peak"].as_u64().unwrap_or(0);
        disconnected += d["disconnected"].as_u64().unwrap_or(0);
        errors.merge_json(&d["errors"]);
    }
    for c in run.children.iter_mut() {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= until => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    let parent_cpu = stats::rusage_cpu(libc::RUSAGE_SELF);
    let children_cpu = stats::rusage_cpu(libc::RUSAGE_CHILDREN);
    for e in &pub_errors.items {
        errors.add_n(&e.0, e.1);
    }
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let server = if run.server.active() {
        json!({
            "pids": cfg.pids,
            "cpu_secs": match (run.server.cpu_start, run.server.cpu_last) {
                (Some(a), Some(b)) => json!(r3(b - a)),
                _ => Value::Null,
            },
            "rss_kib_start": run.server.rss_start,
            "rss_kib_peak": run.server.rss_peak,
            "rss_kib_end": run.server.rss_last,
            "exited": run.server.gone,
        })
    } else {
        Value::Null
    };
    let connect_ms = if connect.is_empty() {
        json!({"p50": null, "p99": null, "max": null, "all_connected_ms": null})
    } else {
        json!({
            "p50": stats::ms(connect.value_at_quantile(0.5)),
            "p99": stats::ms(connect.value_at_quantile(0.99)),
            "max": stats::ms(connect.max()),
            "all_connected_ms": all_connected_ms.round(),
        })
    };
    Ok(json!({
        "label": cfg.label,
        "transport": cfg.transport.name(),
        "http2": h2_json(cfg),
        "subscribers": cfg.subscribers,
        "connected": connected,
        "connect_failed": failed,
        "disconnected": disconnected,
        "workers": cfg.workers,
        "connect_ms": connect_ms,
        "steps": steps,
        "server": server,
        "loadgen": {
            "cpu_secs": r3(parent_cpu + children_cpu),
            "rss_kib_peak": rss_peak,
            "parent_cpu_secs": r3(parent_cpu),
            "worker_cpu_secs": worker_cpu.iter().map(|c| r3(*c)).collect::<Vec<_>>(),
        },
        "wall_secs": r3(wall_start.elapsed().as_secs_f64()),
        "errors": errors.to_json(),
    }))
}

/// `"http2"` of the output: null, or the streams per connection and the
/// connections over all workers (worker w holds ceil((N - w) / W) subscribers).
fn h2_json(cfg: &Config) -> Value {
    let Some(per) = cfg.h2_streams else { return Value::Null };
    let (n, w) = (cfg.subscribers, cfg.workers);
    let connections: usize = (0..w).map(|i| n.saturating_sub(i).div_ceil(w).div_ceil(per)).sum();
    json!({"streams_per_connection": per, "connections": connections})
}
