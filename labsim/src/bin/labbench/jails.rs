//! Jails at scale: a morning rush of 16 concurrent jailed claims (with
//! the default build limit and with none, side by side), what an idle
//! jail costs in memory, by process, and 50 jails held at once with labd
//! still answering `status`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{mib, Conn, Daemon, Row, Sim};

/// Turns a labsim lab's config into a jailed one (root's key in keys.d).
pub fn jail_config(sim: &Sim, pool: &str, board_net: &str, uid_base: u32, extra: &str) -> Result<(), String> {
    let d = &sim.dir;
    let toml = d.join("lab.toml");
    let text =
        std::fs::read_to_string(&toml).map_err(|e| e.to_string())?.replace("jail = \"none\"", "jail = \"linux\"");
    let text = format!(
        "{text}\n[jail]\nroot_dir = \"{0}/jails\"\npool = \"{pool}\"\nboard_net = \"{board_net}\"\nuid_base = {uid_base}\nkeys_dir = \"{0}/keys.d\"\n{extra}\n",
        d.display()
    );
    std::fs::write(&toml, text).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(d.join("keys.d")).map_err(|e| e.to_string())?;
    let key = d.join("key");
    if !key.exists() {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("ssh-keygen failed".into());
        }
    }
    std::fs::copy(d.join("key.pub"), d.join("keys.d/root.pub")).map_err(|e| e.to_string())?;
    Ok(())
}

/// `n` clients claim at the same moment; each claim's time, and the time
/// until the last jail was ready. Returns the handles.
fn rush(sock: &Path, n: usize) -> Result<(Vec<Duration>, Duration, Vec<serde_json::Value>), String> {
    let t0 = Instant::now();
    let results: Vec<Result<(Duration, serde_json::Value), String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(move || {
                    let mut c = Conn::open(sock).map_err(|e| e.to_string())?;
                    let t = Instant::now();
                    let r = c.call(json!({"fn": "claim", "class": "rockpro64"}));
                    if r["ok"] != true || !r["result"]["jail"].is_object() {
                        return Err(format!("a jailed claim failed: {r}"));
                    }
                    Ok((t.elapsed(), r["result"]["handle"].clone()))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into()))).collect()
    });
    let all = t0.elapsed();
    let mut times = Vec::new();
    let mut handles = Vec::new();
    for r in results {
        let (t, h) = r?;
        times.push(t);
        handles.push(h);
    }
    Ok((times, all, handles))
}

fn release_all(sock: &Path, handles: &[serde_json::Value]) -> Result<(), String> {
    let mut c = Conn::open(sock).map_err(|e| e.to_string())?;
    for h in handles {
        let r = c.call(json!({"fn": "release", "handle": h}));
        if r["ok"] != true {
            return Err(format!("release failed: {r}"));
        }
    }
    Ok(())
}

/// (Rss, Pss, Private) of a process, in KiB.
fn smaps(pid: u32) -> Option<(u64, u64, u64)> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |k: &str| -> u64 {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Some((field("Rss:"), field("Pss:"), field("Private_Clean:") + field("Private_Dirty:")))
}

/// Every process in the network namespace named `ns`, by command name.
fn jail_processes(ns: &str) -> Vec<(String, u32)> {
    let ino = |p: &str| std::fs::metadata(p).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let Some(want) = ino(&format!("/run/netns/{ns}")) else { return Vec::new() };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if ino(&format!("/proc/{pid}/ns/net")) == Some(want) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
            out.push((comm, pid));
        }
    }
    out
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn scale_bench(quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    // --- 16 concurrent jailed claims, default limit and none. -----------
    let rounds = if quick { 1 } else { 3 };
    for (limit, label) in [(4, "parallel_builds 4 (default)"), (16, "parallel_builds 16")] {
        let sim = Sim::up(16, &["--no-console"])?;
        jail_config(&sim, "10.196.2.0/24", "172.27.32.0/20", 700_000, &format!("parallel_builds = {limit}"))?;
        let (_d, _) = Daemon::start(&sim)?;
        let (mut per, mut all) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (t, a, handles) = rush(&sim.sock(), 16)?;
            per.extend(t);
            all.push(a);
            release_all(&sim.sock(), &handles)?;
        }
        rows.push(Row::time(&format!("jails: 16 concurrent claims, each ({label})"), per, None));
        rows.push(Row::time(&format!("jails: 16 concurrent claims, all ready ({label})"), all, None));
    }

    // --- 50 jails held: memory per idle jail, labd answering. ------------
    let n = 50;
    let sim = Sim::up(n, &["--no-console"])?;
    jail_config(&sim, "10.196.4.0/24", "172.27.64.0/18", 800_000, "")?;
    let (d, _) = Daemon::start(&sim)?;
    let before = mem_available_kib();
    let (_, all, handles) = rush(&sim.sock(), n)?;
    rows.push(Row::time("jails: 50 concurrent claims, all ready", vec![all], None));
    std::thread::sleep(Duration::from_secs(10));
    let after = mem_available_kib();
    // By process kind, over every jail: RSS, PSS and private memory.
    let mut by: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    let mut per_jail_pss = Vec::new();
    let mut per_jail_private = Vec::new();
    let mut per_jail_rss = Vec::new();
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("blj"))
        .collect();
    for ns in &netns {
        let (mut rss, mut pss, mut private) = (0, 0, 0);
        for (comm, pid) in jail_processes(ns) {
            if let Some((r, p, v)) = smaps(pid) {
                let e = by.entry(comm).or_default();
                e.0 += r;
                e.1 += p;
                e.2 += v;
                e.3 += 1;
                rss += r;
                pss += p;
                private += v;
            }
        }
        per_jail_rss.push(rss);
        per_jail_pss.push(pss);
        per_jail_private.push(private);
    }
    if netns.len() != n {
        return Err(format!("{} jail namespaces for {n} claims", netns.len()));
    }
    rows.push(mib("jails: idle jail, PSS (its share of all it maps)", per_jail_pss, Some(20.0)));
    rows.push(mib("jails: idle jail, private memory", per_jail_private, None));
    rows.push(mib("jails: idle jail, RSS (shared pages counted in full)", per_jail_rss, None));
    for (comm, (rss, pss, private, count)) in &by {
        let mut r = mib(&format!("jails: idle {comm}, PSS"), vec![pss / count], None);
        r.note = format!(
            "{count} processes; per process RSS {:.1} MiB, PSS {:.1} MiB, private {:.1} MiB",
            *rss as f64 / *count as f64 / 1024.0,
            *pss as f64 / *count as f64 / 1024.0,
            *private as f64 / *count as f64 / 1024.0
        );
        rows.push(r);
    }
    let mut host = mib("jails: host memory taken by 50 idle jails", vec![before.saturating_sub(after)], None);
    host.note = format!("MemAvailable {} MiB before the claims, {} MiB after", before / 1024, after / 1024);
    rows.push(host);
    let mut c = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
    let mut s = Vec::new();
    for _ in 0..if quick { 100 } else { 500 } {
        let t0 = Instant::now();
        let r = c.call(json!({"fn": "status"}));
        s.push(t0.elapsed());
        if r["ok"] != true {
            return Err(format!("status failed: {r}"));
        }
    }
    rows.push(Row::time("jails: status with 50 jails held", s, Some(5.0)));
    rows.push(mib("jails: labd resident memory with 50 jails", vec![d.rss_kib()], None));
    release_all(&sim.sock(), &handles)?;
    Ok(())
}
