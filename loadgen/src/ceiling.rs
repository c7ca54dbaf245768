//! `loadgen loopback-ceiling`: how many separate small deliveries per second
//! this machine's loopback carries at all, with no server in between.
//!
//! A writer thread holds the accepted ends of N loopback TCP connections and
//! writes one small message at a time to a pseudo-random one, at a fixed
//! open-loop rate per step (in 1 ms ticks, as a push server writes a batch);
//! a reader thread holds the other ends in a mio poll and reads each until it
//! would block. Both threads' CPU is read from /proc. What it shows: the CPU
//! one write plus one read of a small message costs here (on loopback the
//! writer's `write` also runs the receiver's TCP input and wakes it), so the
//! most deliveries per second any server plus client could reach on these
//! cores when every delivery is its own write.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "loadgen loopback-ceiling [--connections N] [--payload-bytes B] [--rate-steps LIST] [--duration S] [--json]
  --connections N    loopback TCP connections, both ends in this process (default 5000, at most 9000: fd limit)
  --payload-bytes B  bytes per message (default 100, about one SSE event of halley's)
  --rate-steps LIST  messages per second per step (default 50000,100000,150000,200000,250000)
  --duration S       seconds per step (default 5)
  --json             one JSON object instead of the table
";

#[derive(Debug)]
struct Args {
    connections: usize,
    payload: usize,
    steps: Vec<u64>,
    duration: f64,
    json: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        connections: 5000,
        payload: 100,
        steps: vec![50_000, 100_000, 150_000, 200_000, 250_000],
        duration: 5.0,
        json: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--connections" => a.connections = num(&value(flag)?, flag)?,
            "--payload-bytes" => a.payload = num(&value(flag)?, flag)?,
            "--duration" => a.duration = value(flag)?.parse().map_err(|_| format!("{flag}: not a number"))?,
            "--rate-steps" => {
                a.steps = value(flag)?.split(',').map(|s| num(s, flag)).collect::<Result<_, _>>()?
            }
            "--json" => a.json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !(1..=9000).contains(&a.connections) {
        return Err("--connections must be 1..=9000 (both ends are in this process)".into());
    }
    if a.payload == 0 || a.steps.contains(&0) || a.duration.is_nan() || a.duration <= 0.0 {
        return Err("--payload-bytes, every rate and --duration must be above 0".into());
    }
    Ok(a)
}

fn num<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
    s.trim().parse().map_err(|_| format!("{flag}: {s:?} is not a whole number"))
}

/// One step's outcome.
struct Step {
    rate: u64,
    written: u64,
    /// Writes that found the socket's buffer full (the reader fell behind).
    would_block: u64,
    received: u64,
    reads: u64,
    writer_cpu: f64,
    reader_cpu: f64,
    secs: f64,
}

pub fn main(args: &[String]) -> i32 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("loadgen loopback-ceiling: {e}\n{USAGE}");
            return 2;
        }
    };
    match run(&a) {
        Ok(steps) => {
            report(&a, &steps);
            0
        }
        Err(e) => {
            eprintln!("loadgen loopback-ceiling: {e}");
            1
        }
    }
}

fn run(a: &Args) -> io::Result<Vec<Step>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut readers = Vec::with_capacity(a.connections);
    let mut writers = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        client.set_nonblocking(true)?;
        server.set_nonblocking(true)?;
        server.set_nodelay(true)?;
        readers.push(mio::net::TcpStream::from_std(client));
        writers.push(server);
    }
    let received = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let reader = {
        let (received, reads, stop) = (received.clone(), reads.clone(), stop.clone());
        thread::spawn(move || read_all(readers, &received, &reads, &stop, tid_tx))
    };
    let reader_tid = tid_rx.recv().map_err(|_| io::Error::other("reader thread failed"))?;
    let writer_tid = gettid();
    let message = vec![b'x'; a.payload];
    let mut steps = Vec::new();
    let mut next = 0x9e37_79b9u64;
    for &rate in &a.steps {
        let (cpu_w0, cpu_r0) = (thread_cpu(writer_tid), thread_cpu(reader_tid));
        let (recv0, reads0) = (received.load(Ordering::Relaxed), reads.load(Ordering::Relaxed));
        let start = Instant::now();
        let total = (rate as f64 * a.duration) as u64;
        let (mut written, mut would_block) = (0u64, 0u64);
        while written + would_block < total {
            // Everything due by now, as one burst (a push server's batch).
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while written + would_block < due {
                next = next.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (next >> 33) as usize % writers.len();
                match (&writers[i]).write(&message) {
                    Ok(n) if n == message.len() => written += 1,
                    Ok(_) => return Err(io::Error::other("short write on loopback")),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => would_block += 1,
                    Err(e) => return Err(e),
                }
            }
            thread::sleep(Duration::from_micros(1000));
        }
        // Let the reader drain this step's messages before measuring.
        let deadline = Instant::now() + Duration::from_secs(5);
        let expected = written * a.payload as u64;
        while received.load(Ordering::Relaxed) - recv0 < expected && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        steps.push(Step {
            rate,
            written,
            would_block,
            received: (received.load(Ordering::Relaxed) - recv0) / a.payload as u64,
            reads: reads.load(Ordering::Relaxed) - reads0,
            writer_cpu: thread_cpu(writer_tid) - cpu_w0,
            reader_cpu: thread_cpu(reader_tid) - cpu_r0,
            secs: start.elapsed().as_secs_f64(),
        });
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().map_err(|_| io::Error::other("reader thread panicked"))??;
    Ok(steps)
}

fn read_all(
    mut readers: Vec<mio::net::TcpStream>,
    received: &AtomicU64,
    reads: &AtomicU64,
    stop: &AtomicBool,
    tid: mpsc::Sender<i64>,
) -> io::Result<()> {
    let _ = tid.send(gettid());
    let mut poll = Poll::new()?;
    for (i, r) in readers.iter_mut().enumerate() {
        poll.registry().register(r, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for event in events.iter() {
            let r = &mut readers[event.token().0];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// A thread's utime + stime in seconds.
fn thread_cpu(tid: i64) -> f64 {
    crate::procfs::cpu_secs_of(&format!("/proc/self/task/{tid}/stat")).unwrap_or(0.0)
}

fn report(a: &Args, steps: &[Step]) {
    if a.json {
        let rows: Vec<_> = steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "rate": s.rate, "written": s.written, "would_block": s.would_block,
                    "received": s.received, "reads": s.reads, "secs": s.secs,
                    "writer_cpu_secs": s.writer_cpu, "reader_cpu_secs": s.reader_cpu,
                })
            })
            .collect();
        let out = serde_json::json!({
            "mode": "loopback-ceiling", "connections": a.connections,
            "payload_bytes": a.payload, "duration": a.duration, "steps": rows,
        });
        println!("{out}");
        return;
    }
    println!(
        "loopback-ceiling: {} connections, {}-byte messages, {} s per step",
        a.connections, a.payload, a.duration
    );
    println!("offered/s  written/s  received/s  full  msgs/read  writer cores  reader cores  µs CPU per message (write + read)");
    for s in steps {
        let per = |cpu: f64| if s.written > 0 { cpu * 1e6 / s.written as f64 } else { 0.0 };
        println!(
            "{:>9}  {:>9.0}  {:>10.0}  {:>4}  {:>9.2}  {:>12.2}  {:>12.2}  {:.1} + {:.1}",
            s.rate,
            s.written as f64 / s.secs,
            s.received as f64 / s.secs,
            s.would_block,
            if s.reads > 0 { s.received as f64 / s.reads as f64 } else { 0.0 },
            s.writer_cpu / s.secs,
            s.reader_cpu / s.secs,
            per(s.writer_cpu),
            per(s.reader_cpu),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_and_bounds_its_options() {
        let a = args(&["--connections", "100", "--rate-steps", "10,20", "--duration", "1"]).unwrap();
        assert_eq!((a.connections, a.steps.clone(), a.duration), (100, vec![10, 20], 1.0));
        assert!(args(&["--connections", "9001"]).unwrap_err().contains("9000"));
        assert!(args(&["--rate-steps", "0"]).unwrap_err().contains("above 0"));
        assert!(args(&["--bogus"]).unwrap_err().contains("unknown option"));
    }

    #[test]
    fn carries_every_message_it_writes_over_real_sockets() {
        let a = args(&["--connections", "20", "--rate-steps", "2000", "--duration", "0.5"]).unwrap();
        let steps = run(&a).unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].written + steps[0].would_block, 1000);
        assert_eq!(steps[0].received, steps[0].written);
    }
}
