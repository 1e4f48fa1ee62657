//! Building and removing a whole lab, and the small operations on a running
//! one (`power`, `switch`, `plug`/`unplug`). Each `labsim` subcommand is one
//! function here; the binary only parses arguments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::pass_persist::{self, PortTable};
use super::ports::{PortStore, OFF, ON};
use super::state::{BoardState, LabState, SimCluster};
use super::{net, proc, snmpd, write_atomic, Result, SimError, GROUP};
use boardlab::ids::valid_name;

/// Default board class when `--classes` is not given.
pub const DEFAULT_CLASS: &str = "rockpro64";
/// Largest lab `up` builds: port numbers stay within the MAC and interface
/// name layout (`bl<id>h<port>` is at most 12 bytes).
pub const MAX_BOARDS: u32 = 10_000;

/// What `labsim up` was asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub boards: u32,
    pub classes: Vec<String>,
    /// Create a netns and veth pair per board.
    pub net: bool,
    /// Create a pty per board.
    pub console: bool,
    /// A simulated microSD card and mux per board.
    pub sd: bool,
    /// One host of a lab on etcd: boards named `HOST-CLASS-K`, and
    /// labd's `[cluster]` table.
    pub cluster: Option<SimCluster>,
    /// Writes over SNMPv3 only (see [`snmpd::V3_USER`]).
    pub snmpv3: bool,
}

/// Board names and classes: classes round-robin, counted per class from
/// 1, after `host-` when the lab is one host of several.
pub fn board_names(n: u32, classes: &[String], host: Option<&str>) -> Vec<(String, String)> {
    let first = host.map(|h| format!("{h}-")).unwrap_or_default();
    let mut counts = vec![0u32; classes.len()];
    (0..n)
        .filter_map(|i| {
            let c = usize::try_from(i).ok()? % classes.len().max(1);
            let class = classes.get(c)?;
            counts[c] += 1;
            Some((format!("{first}{class}-{}", counts[c]), class.clone()))
        })
        .collect()
}

/// Paths end up in snmpd.conf (space separated) and TOML; refuse the few
/// characters that would need quoting there rather than quote badly.
fn check_path_text(what: &str, p: &Path) -> Result<()> {
    let s = p.to_str().ok_or_else(|| SimError::Refused(format!("{what} {} is not UTF-8", p.display())))?;
    if s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '#' | '\'')) {
        return Err(SimError::Refused(format!(
            "{what} {s:?} contains whitespace, quotes, '#' or '\\'; choose a plainer path"
        )));
    }
    Ok(())
}

/// A loopback TCP port free at the moment of asking.
fn free_tcp_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(SimError::sys("binding a TCP port on 127.0.0.1"))?;
    Ok(l.local_addr().map_err(SimError::sys("reading a bound TCP port"))?.port())
}

fn random_lab_id() -> Result<String> {
    for _ in 0..64 {
        let mut b = [0u8; 2];
        getrandom::getrandom(&mut b).map_err(|e| SimError::Refused(format!("no randomness: {e}")))?;
        let id = format!("{:02x}{:02x}", b[0], b[1]);
        let (ns, host) = net::names(&id, 1);
        if !net::netns_exists(&ns) && !net::link_exists(&host) {
            return Ok(id);
        }
    }
    Err(SimError::Refused("no free lab id (are 65536 labs running?)".into()))
}

/// `labsim up`: builds the lab and returns once the switch answers and
/// every board is ready. On failure it removes what it made.
pub fn up(opts: &UpOptions) -> Result<LabState> {
    if !proc::is_root() {
        return Err(SimError::Refused(
            "labsim up must run as root (it creates network namespaces and ptys and runs snmpd)".into(),
        ));
    }
    if opts.boards == 0 || opts.boards > MAX_BOARDS {
        return Err(SimError::Refused(format!("--boards {} must be between 1 and {MAX_BOARDS}", opts.boards)));
    }
    if opts.classes.is_empty() {
        return Err(SimError::Refused("--classes needs at least one class".into()));
    }
    for c in &opts.classes {
        if !valid_name(c) || c.len() > 48 {
            return Err(SimError::Refused(format!(
                "class {c:?} may only use letters, digits, '-', '_' and '.' (at most 48)"
            )));
        }
    }
    if let Some(c) = &opts.cluster {
        if !valid_name(&c.host) || c.host.len() > 12 {
            return Err(SimError::Refused(format!(
                "--host {:?} may only use letters, digits, '-', '_' and '.' (at most 12)",
                c.host
            )));
        }
        if c.etcd.is_empty() {
            return Err(SimError::Refused("--host needs --etcd URL[,URL...]".into()));
        }
    }
    let dir = if opts.dir.is_absolute() {
        opts.dir.clone()
    } else {
        std::env::current_dir().map_err(SimError::sys("reading current directory"))?.join(&opts.dir)
    };
    check_path_text("--dir", &dir)?;
    if LabState::path(&dir).exists() || dir.join("lab.toml").exists() {
        return Err(SimError::Refused(format!(
            "{} already holds a lab; run `labsim down --dir {}` first",
            dir.display(),
            dir.display()
        )));
    }
    let exe = std::env::current_exe().map_err(SimError::sys("finding the labsim binary"))?;
    check_path_text("the labsim binary path", &exe)?;
    let created_dir = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(SimError::io("creating", &dir))?;
    let dir = dir.canonicalize().map_err(SimError::io("resolving", &dir))?;
    let lab_id = random_lab_id()?;
    let boards = board_names(opts.boards, &opts.classes, opts.cluster.as_ref().map(|c| c.host.as_str()))
        .into_iter()
        .zip(1u32..)
        .map(|((name, class), port)| {
            let (ns, host) = net::names(&lab_id, port);
            BoardState {
                name,
                class,
                port,
                netns: opts.net.then_some(ns),
                host_if: opts.net.then_some(host),
                mac: opts.net.then(|| net::macs(&lab_id, port).0),
                pid: None,
            }
        })
        .collect();
    let mut state = LabState {
        dir: dir.clone(),
        created_dir,
        lab_id,
        exe,
        snmp_port: snmpd::free_udp_port()?,
        snmpd_pid: None,
        net: opts.net,
        console: opts.console,
        sd: opts.sd,
        boards,
        cluster: match &opts.cluster {
            None => None,
            Some(c) => Some(SimCluster { peer_port: free_tcp_port()?, ..c.clone() }),
        },
        snmpv3: opts.snmpv3,
    };
    // Recorded before anything else is made, so `down` can undo a partial up.
    state.save()?;
    match build(&mut state) {
        Ok(()) => Ok(state),
        Err(e) => {
            let _ = state.save();
            let problems = teardown(&state);
            for p in problems {
                tracing::warn!("cleaning up after failed up: {p}");
            }
            Err(e)
        }
    }
}

/// The steps of `up` after the state is recorded, in order: the switch
/// first (boards read their port files from the start), then links, then
/// board processes (which join the links' namespaces), then labd's config.
fn build(state: &mut LabState) -> Result<()> {
    let dir = state.dir.clone();
    for sub in ["logs", "switch", "tty", "run", "boards.d", "snmp-persist"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(SimError::io("creating", &p))?;
    }
    let store = PortStore::new(&dir);
    for b in &state.boards {
        store.set(GROUP, b.port, OFF)?;
        if state.sd {
            crate::sdcard::create(&dir, &b.name).map_err(SimError::io("creating the card of", &dir.join("sd")))?;
        }
    }
    snmpd::write_conf(state)?;
    snmpd::start(state)?;
    state.save()?;
    snmpd::wait_answering(state, Duration::from_secs(10))?;
    if state.net {
        net::create(state)?;
    }
    if state.net || state.console {
        for i in 0..state.boards.len() {
            let name = state.boards[i].name.clone();
            let mut cmd = Command::new(&state.exe);
            cmd.arg("board").arg("--dir").arg(&dir).arg("--name").arg(&name);
            let pid = proc::spawn_detached(cmd, &dir.join("logs").join(format!("board-{name}.log")))?;
            state.boards[i].pid = Some(pid);
        }
        state.save()?;
        wait_boards_ready(state)?;
    }
    if let Some(c) = &state.cluster {
        let ca_dir = c.ca_dir.clone().unwrap_or_else(|| dir.join("peer-ca"));
        crate::peer_certs::make(&ca_dir, &dir.join("peer"), &c.host)?;
    }
    write_labd_config(state)?;
    boardlab::config::Config::load(&dir)
        .map_err(|e| SimError::Refused(format!("generated labd configuration is invalid: {e}")))?;
    Ok(())
}

fn wait_boards_ready(state: &LabState) -> Result<()> {
    let limit =
        Duration::from_secs(10) + Duration::from_millis(20) * u32::try_from(state.boards.len()).unwrap_or(u32::MAX);
    let start = Instant::now();
    let mut pending: Vec<&BoardState> = state.boards.iter().collect();
    while !pending.is_empty() {
        pending.retain(|b| !state.ready_file(&b.name).exists());
        for b in &pending {
            if b.pid.map(|p| !proc::alive(p)).unwrap_or(true) {
                let log = state.dir.join("logs").join(format!("board-{}.log", b.name));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(SimError::Refused(format!(
                    "board {} exited during start-up: {}",
                    b.name,
                    text.lines().last().unwrap_or("(no log)")
                )));
            }
        }
        if start.elapsed() > limit {
            return Err(SimError::Refused(format!("{} boards not ready after {limit:?}", pending.len())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `DIR/lab.toml` for labd.
pub fn lab_toml(state: &LabState) -> String {
    let d = |p: &str| q(&state.dir.join(p).to_string_lossy());
    let cluster = match &state.cluster {
        None => String::new(),
        Some(c) => {
            let ca_dir = c.ca_dir.clone().unwrap_or_else(|| state.dir.join("peer-ca"));
            let peer = state.dir.join("peer");
            format!(
                "\n[cluster]\nhost = {}\netcd = [{}]\npeer_listen = \"127.0.0.1:{}\"\npeer_ca = {}\npeer_cert = {}\npeer_key = {}\n",
                q(&c.host),
                c.etcd.iter().map(|u| q(u)).collect::<Vec<_>>().join(", "),
                c.peer_port,
                q(&ca_dir.join("ca.pem").to_string_lossy()),
                q(&peer.join(format!("{}.pem", c.host)).to_string_lossy()),
                q(&peer.join(format!("{}.key", c.host)).to_string_lossy()),
            )
        }
    };
    let text = format!(
        "# Written by labsim for a simulated lab; removed by `labsim down`.\n\
         [daemon]\n\
         socket = {sock}\n\
         socket_mode = \"0666\"\n\
         state = {st}\n\
         log_dir = {logs}\n\
         admins = []\n\
         jail = \"none\"\n\
         \n\
         [lease]\n\
         default = \"4h\"\n\
         max = \"1d\"\n\
         \n\
         [power]\n\
         cycle_delay = \"1s\"\n\
         retry_max = \"2s\"\n\
         \n\
         [switches.poe1]\n\
         host = \"127.0.0.1:{port}\"\n\
         {access}\
         timeout = \"500ms\"\n\
         retries = 1\n",
        sock = d("labd.sock"),
        st = d("state.db"),
        logs = d("logs"),
        port = state.snmp_port,
        access = if state.snmpv3 {
            format!(
                "version = 3\nuser = {}\nauth_key = {}\npriv_key = {}\n",
                q(snmpd::V3_USER),
                q(snmpd::V3_AUTH_KEY),
                q(snmpd::V3_PRIV_KEY)
            )
        } else {
            format!("community = {}\nversion = \"2c\"\n", q(snmpd::RW_COMMUNITY))
        },
    );
    text + &cluster
}

/// `DIR/boards.d/<name>.toml` for labd.
pub fn board_toml(state: &LabState, b: &BoardState) -> String {
    let mut s =
        format!("name = {}\nclass = {}\npower = {{ switch = \"poe1\", port = {} }}\n", q(&b.name), q(&b.class), b.port);
    if state.console {
        s.push_str(&format!(
            "console = {{ path = {}, baud = 115200 }}\n",
            q(&state.tty_link(&b.name).to_string_lossy())
        ));
    }
    if let Some(h) = &b.host_if {
        s.push_str(&format!("network = {{ interface = {} }}\n", q(h)));
    }
    if state.sd {
        let (img, mux) = crate::sdcard::paths(&state.dir, &b.name);
        s.push_str(&format!(
            "storage = {{ mux = \"sim\", image = {}, control = {} }}\n",
            q(&img.to_string_lossy()),
            q(&mux.to_string_lossy())
        ));
    }
    s
}

fn write_labd_config(state: &LabState) -> Result<()> {
    write_atomic(&state.dir.join("lab.toml"), lab_toml(state).as_bytes())?;
    for b in &state.boards {
        write_atomic(&state.dir.join("boards.d").join(format!("{}.toml", b.name)), board_toml(state, b).as_bytes())?;
    }
    Ok(())
}

/// The arguments that identify a board process in /proc/PID/cmdline.
fn board_identity(state: &LabState, b: &BoardState) -> Vec<String> {
    vec!["board".into(), state.dir.to_string_lossy().into_owned(), b.name.clone()]
}

/// Removes everything `state` records, best effort; returns the problems.
fn teardown(state: &LabState) -> Vec<String> {
    let mut problems = Vec::new();
    let mut targets: Vec<(i32, Vec<String>)> =
        state.boards.iter().filter_map(|b| b.pid.map(|p| (p, board_identity(state, b)))).collect();
    if let Some(pid) = state.snmpd_pid {
        targets.push((pid, snmpd::identity(&state.dir)));
    }
    proc::stop_all(&targets, Duration::from_secs(2));
    for (pid, _) in &targets {
        if proc::alive(*pid) {
            problems.push(format!("process {pid} is still running"));
        }
    }
    if state.net {
        if let Err(e) = net::destroy(state) {
            problems.push(e.to_string());
        }
    }
    if state.sd {
        // A card left on the host side by a labd that was killed.
        for b in &state.boards {
            let (img, _) = crate::sdcard::paths(&state.dir, &b.name);
            if let Ok(o) = Command::new("losetup").arg("-n").arg("-O").arg("NAME").arg("-j").arg(&img).output() {
                for dev in String::from_utf8_lossy(&o.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if let Err(e) = proc::run("losetup", &["-d", dev]) {
                        problems.push(format!("detaching {dev}: {e}"));
                    }
                }
            }
        }
    }
    let dir = &state.dir;
    let result = if state.created_dir {
        std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
    } else {
        remove_our_files(state)
    };
    if let Err(e) = result {
        problems.push(e);
    }
    problems
}

/// In a directory `up` did not create, removes only labsim's own files.
fn remove_our_files(state: &LabState) -> std::result::Result<(), String> {
    let dir = &state.dir;
    let mut problems = Vec::new();
    let mut rm = |p: PathBuf, tree: bool| {
        let r = if tree { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        if let Err(e) = r {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("removing {}: {e}", p.display()));
            }
        }
    };
    for b in &state.boards {
        rm(dir.join("boards.d").join(format!("{}.toml", b.name)), false);
        rm(dir.join("logs").join(format!("board-{}.log", b.name)), false);
    }
    for f in ["lab.toml", "snmpd.conf", "snmpd.pid", "logs/snmpd.log", "logs/snmpd.stdio.log"] {
        rm(dir.join(f), false);
    }
    for d in ["switch", "tty", "run", "snmp-persist", "sd"] {
        rm(dir.join(d), true);
    }
    // Shared directories go only if nothing else (labd's logs) lives there.
    for d in ["boards.d", "logs"] {
        let _ = std::fs::remove_dir(dir.join(d));
    }
    rm(LabState::path(dir), false);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `labsim down`: removes the lab in `dir`. Idempotent: no lab, no work.
pub fn down(dir: &Path) -> Result<()> {
    let Some(state) = LabState::load(dir)? else {
        tracing::info!("no lab in {}; nothing to remove", dir.display());
        return Ok(());
    };
    let problems = teardown(&state);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SimError::Refused(format!("lab only partly removed: {}", problems.join("; "))))
    }
}

/// `labsim power`: the board's port as the switch reports it over SNMP.
pub fn power(dir: &Path, board: &str) -> Result<bool> {
    let state = LabState::load_existing(dir)?;
    let b = state.board(board)?;
    let mut last = None;
    for _ in 0..2 {
        match snmpd::get_port(state.snmp_port, b.port, Duration::from_millis(700)) {
            Ok(ON) => return Ok(true),
            Ok(OFF) => return Ok(false),
            Ok(v) => return Err(SimError::Refused(format!("switch reports unexpected value {v} for port {}", b.port))),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| SimError::Refused("switch does not answer".into())))
}

/// `labsim switch stop`: a switch outage.
pub fn switch_stop(dir: &Path) -> Result<()> {
    let mut state = LabState::load_existing(dir)?;
    snmpd::stop(&mut state);
    state.save()
}

/// `labsim switch start`: the switch comes back on the same port.
pub fn switch_start(dir: &Path) -> Result<()> {
    let mut state = LabState::load_existing(dir)?;
    if let Some(pid) = state.snmpd_pid {
        let id = snmpd::identity(&state.dir);
        let id: Vec<&str> = id.iter().map(String::as_str).collect();
        if proc::alive(pid) && proc::is_ours(pid, &id) {
            return snmpd::wait_answering(&state, Duration::from_secs(10));
        }
    }
    snmpd::start(&mut state)?;
    state.save()?;
    snmpd::wait_answering(&state, Duration::from_secs(10))
}

/// `labsim plug` / `labsim unplug`: hot-plugs a board's serial adapter by
/// signalling its board process, then waits until the link reflects it.
pub fn plug(dir: &Path, board: &str, plug_in: bool) -> Result<()> {
    let state = LabState::load_existing(dir)?;
    let b = state.board(board)?;
    if !state.console {
        return Err(SimError::Refused("this lab has no serial consoles (--no-console)".into()));
    }
    let pid = b.pid.ok_or_else(|| SimError::Refused(format!("board {board} has no process")))?;
    let id = board_identity(&state, b);
    let id: Vec<&str> = id.iter().map(String::as_str).collect();
    if !proc::is_ours(pid, &id) {
        return Err(SimError::Refused(format!("board {board}'s process ({pid}) is not running")));
    }
    let sig = if plug_in { Signal::SIGUSR2 } else { Signal::SIGUSR1 };
    kill(Pid::from_raw(pid), sig)
        .map_err(|e| SimError::Sys { what: format!("signalling board {board} ({pid})"), source: e.into() })?;
    let link = state.tty_link(board);
    let start = Instant::now();
    while link.symlink_metadata().is_ok() != plug_in {
        if start.elapsed() > Duration::from_secs(3) {
            return Err(SimError::Refused(format!(
                "board {board} did not {} its serial adapter",
                if plug_in { "plug in" } else { "unplug" }
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// `labsim pass-persist`: serves snmpd on stdin/stdout until it closes them.
pub fn pass_persist(dir: &Path) -> Result<()> {
    let state = LabState::load_existing(dir)?;
    let table =
        PortTable { ports: u32::try_from(state.boards.len()).unwrap_or(u32::MAX), store: PortStore::new(&state.dir) };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    pass_persist::serve(&table, stdin.lock(), stdout.lock()).map_err(SimError::sys("pass_persist I/O with snmpd"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_robin_per_class() {
        let classes = vec!["rockpro64".to_string(), "pine64".to_string()];
        let names: Vec<String> = board_names(4, &classes, None).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["rockpro64-1", "pine64-1", "rockpro64-2", "pine64-2"]);
        let one = board_names(2, &[DEFAULT_CLASS.to_string()], None);
        assert_eq!(one[1], ("rockpro64-2".to_string(), "rockpro64".to_string()));
        let hosted = board_names(2, &classes, Some("lab2"));
        assert_eq!(hosted[1], ("lab2-pine64-1".to_string(), "pine64".to_string()));
    }

    fn sample_state(dir: &Path, net: bool) -> LabState {
        LabState {
            dir: dir.to_path_buf(),
            created_dir: false,
            lab_id: "ab12".into(),
            exe: PathBuf::from("/usr/bin/labsim"),
            snmp_port: 16161,
            snmpd_pid: None,
            net,
            console: true,
            sd: false,
            cluster: None,
            snmpv3: false,
            boards: board_names(3, &["rockpro64".into(), "pine64".into()], None)
                .into_iter()
                .zip(1u32..)
                .map(|((name, class), port)| BoardState {
                    name,
                    class,
                    port,
                    netns: net.then(|| net::names("ab12", port).0),
                    host_if: net.then(|| net::names("ab12", port).1),
                    mac: None,
                    pid: None,
                })
                .collect(),
        }
    }

    /// The generated files load with labd's own configuration loader.
    #[test]
    fn generated_config_loads() {
        for net in [true, false] {
            let d = tempfile::tempdir().unwrap();
            let state = sample_state(d.path(), net);
            std::fs::create_dir(d.path().join("boards.d")).unwrap();
            write_labd_config(&state).unwrap();
            let c = boardlab::config::Config::load(d.path()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.boards.len(), 3);
            assert_eq!(c.daemon.socket_mode, 0o666);
            assert!(c.daemon.admins.is_empty());
            assert_eq!(c.switches["poe1"].host, "127.0.0.1:16161");
            assert_eq!(c.switches["poe1"].timeout, Duration::from_millis(500));
            let b = c.boards.iter().find(|b| b.name == "pine64-1").unwrap();
            assert_eq!((b.port, b.group, b.class.as_str()), (2, 1, "pine64"));
            assert_eq!(
                b.console.as_ref().unwrap().source,
                boardlab::config::ConsoleSource::Path(d.path().join("tty/pine64-1"))
            );
            if net {
                assert_eq!(b.network, Some(boardlab::config::Network::Interface("blab12h2".into())));
            } else {
                assert_eq!(b.network, None);
            }
        }
    }

    #[test]
    fn odd_paths_are_refused() {
        assert!(check_path_text("--dir", Path::new("/tmp/a b")).is_err());
        assert!(check_path_text("--dir", Path::new("/tmp/a\"b")).is_err());
        assert!(check_path_text("--dir", Path::new("/tmp/lab-1.x")).is_ok());
    }
}
