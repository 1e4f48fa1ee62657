//! The lab's PoE switch: a real net-snmp `snmpd` on 127.0.0.1 whose
//! `pethPsePortAdminEnable` column is delegated to `labsim pass-persist`.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use snmp2::{Oid, SyncSession, Value};

use super::state::LabState;
use super::{proc, write_atomic, Result, SimError, ADMIN_ENABLE_OID, GROUP};

/// Community with read access, as on a typical switch.
pub const RO_COMMUNITY: &str = "public";
/// Community with write access; the one labd is configured with (none
/// with `--snmpv3`, where v1/v2c may only read).
pub const RW_COMMUNITY: &str = "private";
/// `--snmpv3`: the one user with write access (authPriv, SHA and AES).
pub const V3_USER: &str = "labsim";
/// Its authentication passphrase (SHA-1).
pub const V3_AUTH_KEY: &str = "labsim-auth-secret";
/// Its privacy passphrase (AES-128).
pub const V3_PRIV_KEY: &str = "labsim-priv-secret";

/// Path of the generated snmpd.conf.
pub fn conf_path(dir: &Path) -> PathBuf {
    dir.join("snmpd.conf")
}

/// Picks a UDP port on 127.0.0.1 that is free right now, by binding port 0
/// and letting go of it. snmpd binds it a moment later; the race is small and
/// `start` reports it clearly if someone else won.
pub fn free_udp_port() -> Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(SimError::sys("binding a UDP port on 127.0.0.1"))?;
    let port = s.local_addr().map_err(SimError::sys("reading bound UDP port"))?.port();
    Ok(port)
}

/// Writes snmpd.conf. `-C` on the command line keeps snmpd from reading any
/// system configuration, so this file is the whole agent.
///
/// With `--snmpv3`, only the SNMPv3 user [`V3_USER`] may write, and only
/// with authentication and privacy (`rwuser ... priv`); v1/v2c may read.
pub fn write_conf(state: &LabState) -> Result<()> {
    let base = super::pass_persist::format_oid(&super::PORT_ENTRY_OID);
    let write = if state.snmpv3 {
        format!(
            "createUser {V3_USER} SHA \"{V3_AUTH_KEY}\" AES \"{V3_PRIV_KEY}\"\n\
             rwuser {V3_USER} priv\n"
        )
    } else {
        format!("rwcommunity {RW_COMMUNITY} 127.0.0.1\n")
    };
    let text = format!(
        "# Written by labsim for the lab in {dir}; removed by `labsim down`.\n\
         rocommunity {RO_COMMUNITY} 127.0.0.1\n\
         {write}\
         pass_persist {base} {exe} pass-persist --dir {dir}\n",
        dir = state.dir.display(),
        exe = state.exe.display(),
    );
    write_atomic(&conf_path(&state.dir), text.as_bytes())
}

/// Starts snmpd for the lab and records its PID (not saved: the caller saves
/// the state). Does not wait; see [`wait_answering`].
pub fn start(state: &mut LabState) -> Result<i32> {
    let dir = &state.dir;
    let persist = dir.join("snmp-persist");
    std::fs::create_dir_all(&persist).map_err(SimError::io("creating", &persist))?;
    let mut cmd = Command::new("snmpd");
    cmd.arg("-f")
        .arg("-Lf")
        .arg(dir.join("logs/snmpd.log"))
        .arg("-C")
        .arg("-c")
        .arg(conf_path(dir))
        .arg("-p")
        .arg(dir.join("snmpd.pid"))
        // Loading the MIB files only slows start-up and fills the log with
        // warnings; the agent needs none of them.
        .args(["-m", ""])
        .arg(format!("udp:127.0.0.1:{}", state.snmp_port))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("MIBS", "")
        .env("SNMP_PERSISTENT_DIR", &persist);
    let pid = proc::spawn_detached(cmd, &dir.join("logs/snmpd.stdio.log"))?;
    state.snmpd_pid = Some(pid);
    Ok(pid)
}

/// The arguments that identify our snmpd in /proc/PID/cmdline.
pub fn identity(dir: &Path) -> Vec<String> {
    vec!["-c".into(), conf_path(dir).to_string_lossy().into_owned()]
}

/// Stops the lab's snmpd, by its recorded PID only.
pub fn stop(state: &mut LabState) {
    if let Some(pid) = state.snmpd_pid.take() {
        proc::stop_all(&[(pid, identity(&state.dir))], Duration::from_secs(2));
    }
}

/// The OID of a port's admin state.
pub fn port_oid(port: u32) -> Result<Oid<'static>> {
    let mut arcs: Vec<u64> = ADMIN_ENABLE_OID.iter().map(|&a| u64::from(a)).collect();
    arcs.push(u64::from(GROUP));
    arcs.push(u64::from(port));
    Oid::from(&arcs).map_err(|e| SimError::Refused(format!("bad OID for port {port}: {e:?}")))
}

/// A real SNMP GET of a port's admin state (`1` on, `2` off) through the
/// lab's snmpd, as labd would do it.
pub fn get_port(snmp_port: u16, port: u32, timeout: Duration) -> Result<i64> {
    let oid = port_oid(port)?;
    let addr = format!("127.0.0.1:{snmp_port}");
    let mut sess = SyncSession::new_v2c(addr.as_str(), RO_COMMUNITY.as_bytes(), Some(timeout), 1)
        .map_err(SimError::sys(format!("opening SNMP session to {addr}")))?;
    let mut pdu =
        sess.get(&oid).map_err(|e| SimError::Refused(format!("the switch at {addr} does not answer: {e:?}")))?;
    if pdu.error_status != 0 {
        return Err(SimError::Refused(format!(
            "the switch at {addr} answered with SNMP error status {}",
            pdu.error_status
        )));
    }
    match pdu.varbinds.next() {
        Some((_, Value::Integer(v))) => Ok(v),
        Some((_, other)) => Err(SimError::Refused(format!("the switch at {addr} has no port {port} ({other:?})"))),
        None => Err(SimError::Refused(format!("the switch at {addr} sent an empty answer"))),
    }
}

/// Waits until snmpd answers a GET of port 1 (which also proves that its
/// pass_persist helper works), or fails with the end of snmpd's log.
pub fn wait_answering(state: &LabState, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        match get_port(state.snmp_port, 1, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) => {
                let dead = state.snmpd_pid.map(|p| !proc::alive(p)).unwrap_or(true);
                if dead || start.elapsed() > limit {
                    let log = std::fs::read_to_string(state.dir.join("logs/snmpd.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
                    return Err(SimError::Refused(format!(
                        "snmpd {} on udp:127.0.0.1:{} ({e}); its log ends: {}",
                        if dead { "exited" } else { "does not answer" },
                        state.snmp_port,
                        tail.join(" | ")
                    )));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
