//! `sd flash` against `dd`: a 256 MiB image with a bmap (half of it
//! mapped, as an image with a file system is) flashed from a claim's jail
//! to its board's card (labsim's: a loop device over an image file), and
//! the same image written to the same card with `dd` from the jail.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Conn, Daemon, Row, Sim};

const IMAGE_MIB: u64 = 256;

fn ssh(sim: &Sim, jail: &Value, cmd: &str) -> Result<String, String> {
    let ip = jail["ip"].as_str().ok_or("no jail ip")?;
    let o = Command::new("ssh")
        .args(["-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR", "-i"])
        .arg(sim.dir.join("key"))
        .arg(format!("root@{ip}"))
        .arg(cmd)
        .output()
        .map_err(|e| format!("ssh: {e}"))?;
    if !o.status.success() {
        return Err(format!("{cmd:?} in the jail: {}", String::from_utf8_lossy(&o.stderr)));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn sd(c: &mut Conn, handle: &Value, action: &str, path: Option<&str>) -> Result<Value, String> {
    let mut req = json!({"fn": "sd", "handle": handle, "action": action});
    if let Some(p) = path {
        req["path"] = json!(p);
    }
    let r = c.call(req);
    if r["ok"] != true {
        return Err(format!("sd {action}: {r}"));
    }
    Ok(r["result"].clone())
}

pub fn sd_bench(quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let sim = Sim::up_named("sd", 1, &["--no-console", "--sd"])?;
    super::jails::jail_config(&sim, "10.192.14.0/24", "172.23.16.0/20", 10_400_000, "")?;
    let (_d, _) = Daemon::start(&sim)?;
    let mut c = Conn::open(&sim.sock()).map_err(|e| e.to_string())?;
    let r = c.call(json!({"fn": "claim", "class": "rockpro64"}));
    if r["ok"] != true {
        return Err(format!("claim: {r}"));
    }
    let (handle, jail) = (r["result"]["handle"].clone(), r["result"]["jail"].clone());
    // 128 MiB of data in 1 MiB pieces, every other MiB, and its bmap.
    ssh(
        &sim,
        &jail,
        &format!(
            "set -e; cd /root; truncate -s {IMAGE_MIB}M img; \
             head -c {half}M /dev/urandom > data; \
             for i in $(seq 0 $(({half} - 1))); do dd if=data of=img bs=1M skip=$i seek=$((i * 2)) count=1 conv=notrunc status=none; done; \
             rm data; bmaptool -q create -o img.bmap img",
            half = IMAGE_MIB / 2
        ),
    )?;
    let n = if quick { 1 } else { 3 };
    let (mut flash, mut dd) = (Vec::new(), Vec::new());
    let (mut flash_mbs, mut dd_mbs, mut written, mut inner) = (Vec::new(), Vec::new(), 0, Vec::new());
    for _ in 0..n {
        let t0 = Instant::now();
        let v = sd(&mut c, &handle, "flash", Some("/root/img"))?;
        flash.push(t0.elapsed());
        written = v["flashed"]["written"].as_u64().unwrap_or(0);
        inner.push(v["flashed"]["seconds"].as_f64().unwrap_or(0.0));
        flash_mbs.push((IMAGE_MIB << 20) as f64 / t0.elapsed().as_secs_f64() / 1e6);
        sd(&mut c, &handle, "host", None)?;
        let out = ssh(&sim, &jail, "dd if=/root/img of=/dev/sdcard bs=4M conv=fsync 2>&1")?;
        // dd's own figure: "N bytes (...) copied, S s, R MB/s".
        let secs: f64 = out
            .split(", ")
            .find(|p| p.ends_with(" s"))
            .and_then(|p| p.trim_end_matches(" s").trim().parse().ok())
            .ok_or_else(|| format!("dd said {out:?}"))?;
        dd.push(Duration::from_secs_f64(secs));
        dd_mbs.push((IMAGE_MIB << 20) as f64 / secs / 1e6);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    };
    let mut row = Row::time(&format!("sd flash: {IMAGE_MIB} MiB image with bmap, request to reply"), flash, None);
    row.note = format!(
        "{:.0} MB/s of image ({} MiB mapped, written and read back; of which writing and verifying {:.0} ms, \
         the rest opening the image in the jail and switching the mux twice); the card is a loop device over a file",
        med(&mut flash_mbs),
        written >> 20,
        med(&mut inner) * 1000.0
    );
    rows.push(row);
    let mut row = Row::time(&format!("dd of the same {IMAGE_MIB} MiB image (bs=4M, conv=fsync)"), dd, None);
    row.note = format!("{:.0} MB/s (every block written, nothing verified)", med(&mut dd_mbs));
    rows.push(row);
    let r = c.call(json!({"fn": "release", "handle": handle}));
    if r["ok"] != true {
        return Err(format!("release: {r}"));
    }
    Ok(())
}
