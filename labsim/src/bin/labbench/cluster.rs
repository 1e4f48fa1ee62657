//! A lab of three hosts on a three-member etcd on loopback: claim +
//! release through etcd (a board of the host asked, and a board of
//! another host, forwarded over the peer channel), claims through three
//! front doors at once, and how long a killed host's boards take to show
//! offline elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{bin, Conn, Daemon, Row, Sim};

/// Three etcd members on free loopback ports, data in a temp dir.
struct Etcd {
    dir: PathBuf,
    members: Vec<Child>,
    urls: String,
}

/// `n` distinct loopback ports, free at the moment of asking: all `n`
/// are held bound until the last is chosen, so none is offered twice.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, String>>()?;
    held.iter().map(|l| Ok(l.local_addr().map_err(|e| e.to_string())?.port())).collect()
}

impl Etcd {
    fn start() -> Result<Etcd, String> {
        let dir = std::env::temp_dir().join(format!("labbench-etcd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let free = free_ports(6)?;
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, p)| format!("m{i}=http://127.0.0.1:{}", p.1)).collect();
        let mut e = Etcd { dir: dir.clone(), members: Vec::new(), urls: String::new() };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.join(format!("m{i}.log"))).map_err(|e| e.to_string())?;
            let c = format!("http://127.0.0.1:{client}");
            let p = format!("http://127.0.0.1:{peer}");
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
                .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
                .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("labbench-{}", std::process::id())])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("starting etcd (make deps installs it): {e}"))?;
            e.members.push(child);
        }
        e.urls = ports.iter().map(|p| format!("http://127.0.0.1:{}", p.0)).collect::<Vec<_>>().join(",");
        let endpoints = ports.iter().map(|p| format!("127.0.0.1:{}", p.0)).collect::<Vec<_>>().join(",");
        let t0 = Instant::now();
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoints}"))
                .args(["put", "/labbench", "up"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return Ok(e);
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err("etcd did not answer within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.members {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pair(c: &mut Conn, class: &str) -> Result<Duration, String> {
    let t0 = Instant::now();
    let r = c.call(json!({"fn": "claim", "class": class}));
    let r2 = c.call(json!({"fn": "release", "handle": r["result"]["handle"]}));
    if r["ok"] != true || r2["ok"] != true {
        return Err(format!("claim/release of {class} failed: {r} {r2}"));
    }
    Ok(t0.elapsed())
}

pub fn cluster_bench(quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let etcd = Etcd::start()?;
    let ca = std::env::temp_dir().join(format!("labbench-ca-{}", std::process::id()));
    // lab1 has class a, lab2 class b, lab3 both.
    let hosts = [("lab1", "a"), ("lab2", "b"), ("lab3", "a,b")];
    let mut sims = Vec::new();
    let mut daemons = Vec::new();
    for (h, classes) in hosts {
        let flags = ["--no-net", "--no-console", "--classes", classes, "--host", h, "--etcd", &etcd.urls];
        let sim = Sim::up_named(h, 2, &[&flags[..], &["--ca", &ca.to_string_lossy()]].concat())?;
        daemons.push(Daemon::start(&sim)?.0);
        sims.push(sim);
    }
    let all_seen = |sim: &Sim| {
        Conn::open(&sim.sock())
            .is_ok_and(|mut c| c.call(json!({"fn": "status"}))["result"].as_array().is_some_and(|a| a.len() == 6))
    };
    let t0 = Instant::now();
    while !sims.iter().all(all_seen) {
        if t0.elapsed() > Duration::from_secs(20) {
            return Err("the hosts did not see each other within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = if quick { 50 } else { 300 };
    let mut c = Conn::open(&sims[0].sock()).map_err(|e| e.to_string())?;
    for _ in 0..10 {
        pair(&mut c, "a")?;
    }
    let local: Vec<Duration> = (0..n).map(|_| pair(&mut c, "a")).collect::<Result<_, _>>()?;
    rows.push(Row::time("etcd lab: claim + release, a board of this host", local, Some(5.0)));
    // Class b only on lab2 and lab3: lab1 forwards (a new TLS connection
    // per request).
    let remote: Vec<Duration> = (0..n).map(|_| pair(&mut c, "b")).collect::<Result<_, _>>()?;
    rows.push(Row::time("etcd lab: claim + release, another host's board", remote, Some(5.0)));

    // 30 clients over the three front doors, for a few seconds.
    let secs = if quick { 3 } else { 8 };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let socks: Vec<PathBuf> = sims.iter().map(|s| s.sock()).collect();
    let threads: Vec<_> = (0..30)
        .map(|i| {
            let (sock, stop, done, samples) = (socks[i % 3].clone(), stop.clone(), done.clone(), samples.clone());
            std::thread::spawn(move || {
                let Ok(mut c) = Conn::open(&sock) else { return };
                let class = if i % 2 == 0 { "a" } else { "b" };
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let r = c.call(json!({"fn": "claim", "class": class}));
                    if r["ok"] == true {
                        let r2 = c.call(json!({"fn": "release", "handle": r["result"]["handle"]}));
                        if r2["ok"] == true {
                            done.fetch_add(1, Ordering::Relaxed);
                            samples.lock().unwrap_or_else(|p| p.into_inner()).push(t0.elapsed());
                        }
                    } else {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let pairs = done.load(Ordering::Relaxed);
    let s = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let mut row = Row::time("etcd lab: claim + release, 30 clients over 3 doors", s, None);
    row.note = format!(
        "{:.0} claim+release pairs/s in all (6 boards, so mostly busy waiting for a free one)",
        pairs as f64 / secs as f64
    );
    rows.push(row);

    // A killed host: how long until another front door shows its boards
    // offline (host_ttl 5 s).
    let mut d3 = daemons.pop().ok_or("no lab3")?;
    let t0 = Instant::now();
    d3.kill();
    let offline = |v: &Value| {
        v["result"].as_array().is_some_and(|a| {
            a.iter().filter(|b| b["host"] == "lab3").all(|b| b["state"] == "offline")
                && a.iter().any(|b| b["host"] == "lab3")
        })
    };
    loop {
        if Conn::open(&sims[0].sock()).is_ok_and(|mut c| offline(&c.call(json!({"fn": "status"})))) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("lab3's boards did not show offline within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rows.push(Row::time("etcd lab: a killed host's boards offline elsewhere", vec![t0.elapsed()], Some(10_000.0)));
    drop(daemons);
    drop(sims);
    let _ = std::fs::remove_dir_all(&ca);
    let _ = bin("labsim");
    Ok(())
}
