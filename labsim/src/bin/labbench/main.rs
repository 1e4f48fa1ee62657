//! labbench: boardlab's benchmark suite (`make bench`).
//!
//! Runs real components only: labsim's snmpd as the switch, labd from the
//! same build directory, labcli processes, the socket. Every figure is
//! measured here, in this run, over repeated samples, and printed with its
//! median and p99 next to the target it is held to. Needs root (labsim).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod cluster;
mod jails;
mod sd;

fn exe_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_else(|| PathBuf::from("."))
}

fn bin(name: &str) -> PathBuf {
    exe_dir().join(name)
}

struct Sim {
    dir: PathBuf,
}

impl Sim {
    fn up(n: usize, flags: &[&str]) -> Result<Sim, String> {
        Sim::up_named(&n.to_string(), n, flags)
    }

    /// A lab whose directory is told apart by `tag`.
    fn up_named(tag: &str, n: usize, flags: &[&str]) -> Result<Sim, String> {
        let dir = std::env::temp_dir().join(format!("labbench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(bin("labsim"))
            .args(["up", "--dir"])
            .arg(&dir)
            .args(["--boards", &n.to_string()])
            .args(flags)
            .output()
            .map_err(|e| format!("running labsim: {e}"))?;
        if !out.status.success() {
            return Err(format!("labsim up: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(Sim { dir })
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("labd.sock")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Command::new(bin("labsim")).args(["down", "--dir"]).arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts labd and returns it with the time until it answered `status`.
    fn start(sim: &Sim) -> Result<(Daemon, Duration), String> {
        let _ = std::fs::remove_file(sim.dir.join("state.db"));
        let log = std::fs::File::create(sim.dir.join("labd.log")).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let child = Command::new(bin("labd"))
            .arg("--config")
            .arg(&sim.dir)
            .env("LABD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting labd: {e}"))?;
        let mut d = Daemon { child };
        loop {
            if let Ok(mut c) = Conn::open(&sim.sock()) {
                if c.call(json!({"fn": "status"}))["ok"] == true {
                    return Ok((d, t0.elapsed()));
                }
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err("labd did not answer within 30 s".into());
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!("labd exited: {st}"));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn rss_kib(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// SIGKILL.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory, in KiB (0 if it is gone).
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
    line: String,
}

impl Conn {
    fn open(p: &Path) -> std::io::Result<Conn> {
        let w = UnixStream::connect(p)?;
        w.set_read_timeout(Some(Duration::from_secs(30)))?;
        let r = BufReader::new(w.try_clone()?);
        Ok(Conn { w, r, line: String::new() })
    }

    /// Sends a raw request line and reads the reply line into `self.line`.
    fn call_raw(&mut self, line: &str) -> std::io::Result<&str> {
        self.w.write_all(line.as_bytes())?;
        self.line.clear();
        match self.r.read_line(&mut self.line)? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(&self.line),
        }
    }

    fn call(&mut self, v: Value) -> Value {
        let mut s = v.to_string();
        s.push('\n');
        if self.w.write_all(s.as_bytes()).is_err() {
            return Value::Null;
        }
        self.line.clear();
        match self.r.read_line(&mut self.line) {
            Ok(n) if n > 0 => serde_json::from_str(&self.line).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// A measured figure: samples, and the target it is held to.
struct Row {
    name: String,
    samples: Vec<Duration>,
    unit: Unit,
    target: Option<f64>,
    note: String,
}

#[derive(Clone, Copy)]
enum Unit {
    Ms,
    MiB,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

impl Row {
    fn time(name: &str, samples: Vec<Duration>, target_ms: Option<f64>) -> Row {
        Row { name: name.into(), samples, unit: Unit::Ms, target: target_ms, note: String::new() }
    }

    fn values(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        if let Unit::MiB = self.unit {
            // Stored as "milliseconds" = KiB / 1000 trick avoided: see mib().
            v = self.samples.iter().map(|d| d.as_nanos() as f64 / 1024.0).collect();
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v
    }
}

/// Memory figures ride in the same table: KiB stored as nanoseconds.
fn mib(name: &str, kib: Vec<u64>, target_mib: Option<f64>) -> Row {
    Row {
        name: name.into(),
        samples: kib.into_iter().map(Duration::from_nanos).collect(),
        unit: Unit::MiB,
        target: target_mib,
        note: String::new(),
    }
}

fn print_table(rows: &[Row]) {
    println!("{:<52} {:>5} {:>10} {:>10} {:>10} {:>7}", "measure", "n", "median", "p99", "target", "");
    println!("{}", "-".repeat(100));
    for r in rows {
        let v = r.values();
        let unit = match r.unit {
            Unit::Ms => "ms",
            Unit::MiB => "MiB",
        };
        let (med, p99) = (pct(&v, 0.5), pct(&v, 0.99));
        let fmt = |x: f64| if x < 1.0 { format!("{x:.3} {unit}") } else { format!("{x:.1} {unit}") };
        let (target, verdict) = match r.target {
            // Times are held to their median; memory to its worst sample.
            Some(t) => {
                let judged = match r.unit {
                    Unit::Ms => med,
                    Unit::MiB => v.iter().copied().fold(0.0, f64::max),
                };
                (format!("< {}", fmt(t)), if judged < t { "ok" } else { "MISSED" })
            }
            None => ("-".to_string(), ""),
        };
        println!("{:<52} {:>5} {:>10} {:>10} {:>10} {:>7}", r.name, v.len(), fmt(med), fmt(p99), target, verdict);
        if !r.note.is_empty() {
            println!("    {}", r.note);
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1048576.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem}, Linux {}, load {}",
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn labcli(sock: &Path, args: &[&str]) -> (Duration, std::process::Output) {
    let t0 = Instant::now();
    let out = Command::new(bin("labcli"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .env_remove("SSH_ORIGINAL_COMMAND")
        .stdin(Stdio::null())
        .output()
        .expect("labcli");
    (t0.elapsed(), out)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 200 } else { 2000 };
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("labbench: needs root (labsim builds namespaces and runs snmpd)");
        std::process::exit(2);
    }
    println!("boardlab benchmarks — release build, {n} samples per socket figure");
    println!("machine: {}", machine());
    println!();
    let mut rows = Vec::new();
    // `--load`, `--console`, `--jail`, `--socket`, `--cluster`, `--sd`: only that section.
    let only = |flag: &str| std::env::args().any(|a| a == flag);
    let result = if only("--load") {
        load_bench(quick, &mut rows)
    } else if only("--console") {
        console_bench(quick, &mut rows)
    } else if only("--jail") {
        jail_bench(quick, &mut rows)
    } else if only("--socket") {
        socket_bench(n, &mut rows)
    } else if only("--cluster") {
        cluster::cluster_bench(quick, &mut rows)
    } else if only("--sd") {
        sd::sd_bench(quick, &mut rows)
    } else {
        run(n, quick, &mut rows)
    };
    if let Err(e) = result {
        print_table(&rows);
        eprintln!("labbench: {e}");
        std::process::exit(1);
    }
    print_table(&rows);
}

fn run(n: usize, quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    console_bench(quick, rows)?;
    socket_bench(n, rows)?;
    cluster::cluster_bench(quick, rows)?;
    sd::sd_bench(quick, rows)?;
    rest(n, quick, rows)
}

/// A lab of 10 boards over the socket: status, claim + release.
fn socket_bench(n: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let sim = Sim::up(10, &["--no-net", "--no-console"])?;
    let (_d, _) = Daemon::start(&sim)?;
    let mut c = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
    for _ in 0..200 {
        c.call(json!({"fn": "status"}));
    }
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "status"}));
        s.push(t0.elapsed());
        if r["ok"] != true {
            return Err(format!("status failed: {r}"));
        }
    }
    rows.push(Row::time("socket round trip: status (10 boards)", s, Some(0.2)));

    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "claim", "class": "rockpro64"}));
        let h = r["result"]["handle"].clone();
        let r2 = c.call(json!({"fn": "release", "handle": h}));
        s.push(t0.elapsed());
        if r["ok"] != true || r2["ok"] != true {
            return Err(format!("claim/release failed: {r} {r2}"));
        }
    }
    rows.push(Row::time("socket round trip: claim + release (jail none)", s, Some(0.2)));
    Ok(())
}

/// A lab of 10 boards: labcli processes, SNMP through labd, a panicked
/// board actor, start-up and memory by lab size.
fn rest(n: usize, quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let sim = Sim::up(10, &["--no-net", "--no-console"])?;
    let (_d, _) = Daemon::start(&sim)?;
    let mut c = Conn::open(&sim.sock()).map_err(|e| format!("connecting: {e}"))?;
    let procs = if quick { 30 } else { 200 };
    let mut s = Vec::new();
    for _ in 0..procs {
        let (t, out) = labcli(&sim.sock(), &["status"]);
        if !out.status.success() {
            return Err("labcli status failed".into());
        }
        s.push(t);
    }
    rows.push(Row::time("labcli process: status", s, Some(5.0)));
    let mut s = Vec::new();
    for _ in 0..procs {
        let (t1, out) = labcli(&sim.sock(), &["--json", "claim", "rockpro64"]);
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("labcli claim: {e}"))?;
        let h = v["handle"].as_str().unwrap_or_default().to_string();
        let (t2, out) = labcli(&sim.sock(), &["release", &h]);
        if !out.status.success() {
            return Err("labcli release failed".into());
        }
        s.push(t1 + t2);
    }
    rows.push(Row::time("labcli processes: claim + release", s, Some(10.0)));

    // SNMP set-and-verify through labd, against labsim's snmpd.
    let r = c.call(json!({"fn": "claim", "class": "rockpro64"}));
    let h = r["result"]["handle"].clone();
    let mut s = Vec::new();
    for i in 0..(if quick { 50 } else { 300 }) {
        let f = if i % 2 == 0 { "power_on" } else { "power_off" };
        let t0 = Instant::now();
        let r = c.call(json!({"fn": f, "handle": h}));
        s.push(t0.elapsed());
        if r["ok"] != true {
            return Err(format!("{f} failed: {r}"));
        }
    }
    rows.push(Row::time("power on/off: SNMP set + read-back via labd", s, None));

    // A panicking board actor: time until the board answers again with its
    // port state re-read from the switch.
    let board = r["result"]["board"].as_str().unwrap_or_default().to_string();
    let mut s = Vec::new();
    let mut supported = true;
    for _ in 0..(if quick { 10 } else { 50 }) {
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "debug_panic", "board": board}));
        if r["ok"] != true {
            supported = false;
            break;
        }
        let mut probe = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
        loop {
            let r = probe.call(json!({"fn": "power_off", "handle": h}));
            if r["ok"] == true {
                break;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                return Err(format!("board did not come back: {r}"));
            }
        }
        s.push(t0.elapsed());
    }
    if supported {
        rows.push(Row::time("panicked board actor: answering again (incl. SNMP)", s, Some(50.0)));
    } else {
        let mut row = Row::time("panicked board actor: answering again", vec![], Some(50.0));
        row.note = "not measured: this labd was built without --features fault-injection".into();
        rows.push(row);
    }
    drop(c);
    drop(_d);
    drop(sim);

    jail_bench(quick, rows)?;
    load_bench(quick, rows)?;

    // --- Start-up and memory at 10, 100 and 1,000 boards. ----------------
    for boards in [10usize, 100, 1000] {
        let sim = Sim::up(boards, &["--no-net", "--no-console"])?;
        let mut times = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..(if quick { 3 } else { 7 }) {
            let (d, t) = Daemon::start(&sim)?;
            times.push(t);
            rss.push(d.rss_kib());
            if boards == 1000 && rss.len() == 1 {
                let mut c = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
                let mut s = Vec::new();
                for _ in 0..(n / 4).max(50) {
                    let t0 = Instant::now();
                    let r = c.call(json!({"fn": "status"}));
                    s.push(t0.elapsed());
                    if r["result"].as_array().map(|a| a.len()) != Some(1000) {
                        return Err("status of 1000 boards incomplete".into());
                    }
                }
                rows.push(Row::time("socket round trip: status of 1,000 boards", s, None));
                rss.push(d.rss_kib());
            }
        }
        let target_t = if boards == 1000 { Some(1000.0) } else { None };
        let target_m = if boards == 1000 { Some(64.0) } else { None };
        rows.push(Row::time(&format!("labd start-up to first answer: {boards} boards"), times, target_t));
        rows.push(mib(&format!("labd resident memory: {boards} boards"), rss, target_m));
    }
    Ok(())
}

/// Reads from a console session until `done(all)` or the deadline.
fn read_until(c: &mut Conn, limit: Duration, mut done: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    use std::io::Read;
    let t0 = Instant::now();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let _ = c.w.set_read_timeout(Some(Duration::from_millis(100)));
    while !done(&all) && t0.elapsed() < limit {
        match c.r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    all
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The console flood's line speed: 10 MB/s, about 66 times the fastest
/// console in the lab (RockPro64 at 1.5 Mbaud). A flood faster than its
/// sessions can read is not a console: labd keeps reading the board and
/// tells a lagging session what it dropped, by design.
const FLOOD_RATE: u64 = 10_000_000;

/// Console: a board floods its serial line while 16 sessions watch; every
/// session must receive every byte, in order. Then the echo round trip of
/// single keystrokes, beside the same round trip on a bare pty pair.
fn console_bench(quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    use labsim::board::{flood_byte, FLOOD_BEGIN, FLOOD_END};
    let sim = Sim::up(1, &["--no-net"])?;
    let (_d, _) = Daemon::start(&sim)?;
    let mut c = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
    let r = c.call(json!({"fn": "claim", "class": "rockpro64", "power": true}));
    let h = r["result"]["handle"].clone();
    if r["ok"] != true {
        return Err(format!("claim: {r}"));
    }
    let mut writer = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
    let r = writer.call(json!({"fn": "console", "handle": h}));
    if r["result"]["writer"] != true {
        return Err(format!("console: {r}"));
    }
    // The boot prompt.
    read_until(&mut writer, Duration::from_secs(10), |g| find(g, b"=> ").is_some());
    let sessions = 16;
    let size: u64 = if quick { 16 << 20 } else { 64 << 20 };
    let mut readers = Vec::new();
    for _ in 0..sessions {
        let mut r = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
        let reply = r.call(json!({"fn": "console", "handle": h, "read_only": true}));
        if reply["ok"] != true {
            return Err(format!("console: {reply}"));
        }
        readers.push(r);
    }
    let threads: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || -> (u64, u64, Duration) {
                use std::io::Read;
                let _ = r.w.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = vec![0u8; 256 * 1024];
                let mut pending: Vec<u8> = Vec::new();
                // Wait for the begin marker.
                let start;
                loop {
                    match r.r.read(&mut buf) {
                        Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                        _ => return (0, size, Duration::ZERO),
                    }
                    if let Some(p) = find(&pending, FLOOD_BEGIN) {
                        start = Instant::now();
                        pending.drain(..p + FLOOD_BEGIN.len());
                        break;
                    }
                }
                let (mut got, mut bad) = (0u64, 0u64);
                let check = |data: &[u8], got: &mut u64, bad: &mut u64| {
                    for &b in data {
                        if *got < size && b != flood_byte(*got) {
                            *bad += 1;
                        }
                        *got += 1;
                    }
                };
                let take = |pending: &mut Vec<u8>, got: &mut u64, bad: &mut u64| {
                    let want = usize::try_from(size - (*got).min(size)).unwrap_or(usize::MAX);
                    let n = pending.len().min(want);
                    let chunk: Vec<u8> = pending.drain(..n).collect();
                    check(&chunk, got, bad);
                };
                take(&mut pending, &mut got, &mut bad);
                while got < size {
                    match r.r.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            pending.extend_from_slice(&buf[..n]);
                            take(&mut pending, &mut got, &mut bad);
                        }
                        _ => break,
                    }
                }
                let took = start.elapsed();
                // The end marker must follow directly.
                while pending.len() < FLOOD_END.len() {
                    match r.r.read(&mut buf) {
                        Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                if !pending.starts_with(FLOOD_END) {
                    bad += 1;
                }
                (got.min(size), bad + (size - got.min(size)), took)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    writer.w.write_all(format!("flood {size} {FLOOD_RATE}\r").as_bytes()).map_err(|e| e.to_string())?;
    let mut lost = 0u64;
    let mut per = Vec::new();
    for t in threads {
        let (got, bad, took) = t.join().map_err(|_| "reader thread panicked".to_string())?;
        lost += bad;
        per.push((got, took));
    }
    let wall = t0.elapsed();
    let total: u64 = per.iter().map(|(g, _)| g).sum();
    let mut row = Row::time(
        &format!("console: {} MiB at 10 MB/s -> {sessions} sessions", size >> 20),
        per.iter().map(|(_, t)| *t).collect(),
        None,
    );
    row.note = format!(
        "{:.1} MB/s per session, {:.1} MB/s delivered in all, {lost} bytes lost or wrong",
        size as f64 / 1e6 / per.iter().map(|(_, t)| t.as_secs_f64()).fold(0.0, f64::max).max(1e-9),
        total as f64 / 1e6 / wall.as_secs_f64().max(1e-9),
    );
    rows.push(row);
    if lost > 0 {
        return Err(format!("console flood lost {lost} bytes"));
    }
    // Let the writer's own copy of the flood drain.
    read_until(&mut writer, Duration::from_secs(30), |g| find(g, FLOOD_END).is_some() && g.ends_with(b"=> "));

    // Keystroke echo through labd (client -> labd -> pty -> board -> pty ->
    // labd -> client) ...
    let n = if quick { 200 } else { 1000 };
    let mut s = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        writer.w.write_all(b"x").map_err(|e| e.to_string())?;
        let got = read_until(&mut writer, Duration::from_secs(5), |g| !g.is_empty());
        s.push(t0.elapsed());
        if got.is_empty() {
            return Err("no echo".into());
        }
    }
    rows.push(Row::time("console: keystroke echo through labd", s, None));
    // ... and on a bare pty pair with an echoing thread (the floor).
    rows.push(Row::time("console: keystroke echo on a bare pty (baseline)", pty_echo(n)?, None));
    Ok(())
}

fn pty_echo(n: usize) -> Result<Vec<Duration>, String> {
    use std::io::{Read, Write};
    let pty = nix::pty::openpty(None, None).map_err(|e| e.to_string())?;
    let mut t = nix::sys::termios::tcgetattr(&pty.slave).map_err(|e| e.to_string())?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).map_err(|e| e.to_string())?;
    let mut master = std::fs::File::from(pty.master);
    let mut slave = std::fs::File::from(pty.slave);
    let mut m2 = master.try_clone().map_err(|e| e.to_string())?;
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        for _ in 0..n {
            if m2.read_exact(&mut b).is_err() || m2.write_all(&b).is_err() {
                return;
            }
        }
    });
    let mut s = Vec::with_capacity(n);
    let mut b = [0u8; 1];
    for _ in 0..n {
        let t0 = Instant::now();
        slave.write_all(b"x").map_err(|e| e.to_string())?;
        slave.read_exact(&mut b).map_err(|e| e.to_string())?;
        s.push(t0.elapsed());
    }
    let _ = echo.join();
    drop(master.flush());
    Ok(s)
}

/// Jails: claim to a jail whose sshd answers, reinit, and release, on a
/// labsim board link (`jail = "linux"`).
fn jail_bench(quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let sim = Sim::up(1, &["--no-console"])?;
    jails::jail_config(&sim, "10.196.0.0/24", "172.27.0.0/20", 600_000, "")?;
    let (_d, _) = Daemon::start(&sim)?;
    let mut c = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
    let n = if quick { 5 } else { 15 };
    let (mut claim, mut reinit, mut release) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "claim", "class": "rockpro64"}));
        claim.push(t0.elapsed());
        if r["ok"] != true || !r["result"]["jail"].is_object() {
            return Err(format!("claim with a jail failed: {r}"));
        }
        let h = r["result"]["handle"].clone();
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "reinit", "handle": h}));
        reinit.push(t0.elapsed());
        if r["ok"] != true {
            return Err(format!("reinit failed: {r}"));
        }
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "release", "handle": h}));
        release.push(t0.elapsed());
        if r["ok"] != true {
            return Err(format!("release failed: {r}"));
        }
        // A board is not claimed again within a millisecond of its release:
        // it prepares the next claim's file systems in the meantime.
        std::thread::sleep(Duration::from_millis(300));
    }
    rows.push(Row::time("jail: claim to jail ready (sshd answering)", claim, Some(150.0)));
    rows.push(Row::time("jail: reinit (tear down, build clean)", reinit, None));
    rows.push(Row::time("jail: release (tear down, wipe)", release, None));
    drop(_d);
    drop(sim);
    jails::scale_bench(quick, rows)
}

/// What one load client saw: latencies and error codes.
#[derive(Default)]
struct LoadTally {
    status: Vec<Duration>,
    claim_release: Vec<Duration>,
    errors: std::collections::BTreeMap<String, u64>,
}

/// One load client: `status` until `switch`, then claim + release until
/// `end`; every reply must be a well-formed answer to its request.
fn load_client(
    sock: &Path,
    class: &str,
    expect_boards: usize,
    switch: Instant,
    end: Instant,
) -> Result<LoadTally, String> {
    let mut c = Conn::open(sock).map_err(|e| format!("connecting: {e}"))?;
    let mut t = LoadTally::default();
    let note = |t: &mut LoadTally, r: &Value| -> Result<bool, String> {
        match (&r["ok"], r["error"]["code"].as_str()) {
            (Value::Bool(true), _) => Ok(true),
            (Value::Bool(false), Some(code)) => {
                *t.errors.entry(code.to_string()).or_default() += 1;
                Ok(false)
            }
            _ => Err(format!("malformed reply: {r}")),
        }
    };
    // `status` of 1,000 boards is 200 KB: checked by its frame (the
    // request's own id, ok, a complete array) and the number of boards in
    // it, and one reply in 50 parsed whole, so that the client is not
    // what the figure measures.
    let mut n = 0u64;
    while Instant::now() < switch {
        n += 1;
        let t0 = Instant::now();
        let line = c.call_raw(&format!("{{\"id\":{n},\"fn\":\"status\"}}\n")).map_err(|e| format!("status: {e}"))?;
        t.status.push(t0.elapsed());
        let head = format!("{{\"id\":{n},\"ok\":true,\"result\":[");
        let boards = line.matches("{\"board\":").count();
        if !line.starts_with(&head) || !line.ends_with("]}\n") || boards != expect_boards {
            return Err(format!("malformed status reply ({boards} boards): {}", &line[..line.len().min(200)]));
        }
        if n.is_multiple_of(50) {
            let v: Value = serde_json::from_str(line).map_err(|e| format!("status reply is not JSON: {e}"))?;
            let arr = v["result"].as_array().map(Vec::len);
            if arr != Some(expect_boards) {
                return Err(format!("status reply has {arr:?} boards"));
            }
        }
    }
    while Instant::now() < end {
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "claim", "class": class}));
        if note(&mut t, &r)? {
            let r2 = c.call(json!({"fn": "release", "handle": r["result"]["handle"]}));
            note(&mut t, &r2)?;
        }
        t.claim_release.push(t0.elapsed());
    }
    Ok(t)
}

/// Many clients at once against a large lab: throughput, latency spread
/// and labd's memory. Measured, not held to a target.
fn load_bench(quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let (clients, boards) = (200usize, 1000usize);
    let phase = Duration::from_secs(if quick { 3 } else { 10 });
    let sim = Sim::up(boards, &["--no-net", "--no-console", "--classes", "rockpro64,pine64"])?;
    let (d, _) = Daemon::start(&sim)?;
    let before = d.rss_kib();
    let sock = sim.sock();
    let mut all = LoadTally::default();
    // Two rounds: memory that keeps growing in the second is a leak, not
    // the allocator keeping what the first needed.
    let mut after = Vec::new();
    // The peak while clients hammer it, sampled every 20 ms.
    let pid = d.child.id();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = rss_of(pid).max(peak);
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    for _round in 0..2 {
        let start = Instant::now() + Duration::from_millis(500);
        let (switch, end) = (start + phase, start + phase * 2);
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                let sock = sock.clone();
                let class = if i % 2 == 0 { "rockpro64" } else { "pine64" };
                std::thread::spawn(move || {
                    std::thread::sleep(start.saturating_duration_since(Instant::now()));
                    load_client(&sock, class, boards, switch, end)
                })
            })
            .collect();
        for t in threads {
            let r = t.join().map_err(|_| "a load client panicked".to_string())??;
            all.status.extend(r.status);
            all.claim_release.extend(r.claim_release);
            for (k, v) in r.errors {
                *all.errors.entry(k).or_default() += v;
            }
        }
        after.push(d.rss_kib());
    }
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| "the memory sampler panicked".to_string())?;
    let spread = |s: &[Duration], secs: f64| {
        let mut v: Vec<f64> = s.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        format!(
            "{:.0} per second; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            v.len() as f64 / secs,
            pct(&v, 0.5),
            pct(&v, 0.9),
            pct(&v, 0.99)
        )
    };
    let secs = phase.as_secs_f64() * 2.0;
    let name = format!("load: {clients} clients, 1,000 boards");
    let mut row = Row::time(&format!("{name}: status"), all.status.clone(), None);
    row.note = spread(&all.status, secs);
    rows.push(row);
    let mut row = Row::time(&format!("{name}: claim+release"), all.claim_release.clone(), None);
    row.note = format!("{}; errors {:?}", spread(&all.claim_release, secs), all.errors);
    rows.push(row);
    let mut row = mib(&format!("{name}: labd resident memory"), vec![before, peak, after[0], after[1]], Some(64.0));
    row.note = format!(
        "before {:.1} MiB, peak during the load {:.1} MiB, after one round {:.1} MiB, after two {:.1} MiB",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        after[0] as f64 / 1024.0,
        after[1] as f64 / 1024.0
    );
    rows.push(row);
    Ok(())
}
