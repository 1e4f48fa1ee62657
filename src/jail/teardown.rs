//! Taking a jail down, in an order that never lets a board link back to
//! the host while anything of the jail still runs; and sweeping what a
//! jail left behind when labd lost its state (killed mid-build, say).

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{cgroup, disk, fs, net, nfs, plan, proc_start_time, Jail, JailError, JailSettings, JailSpec, Plan};
use crate::config::Network;
use crate::link::LinkId;

/// Undoes a create that failed half-way (only what it did).
pub(super) struct Undo<'a> {
    pub plan: &'a Plan,
    pub fresh: bool,
    pub init: Option<(i32, u64)>,
    pub cgroup: Option<cgroup::JailCgroup>,
    pub done: net::Done,
    pub armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut errors = Vec::new();
            teardown(self.plan, self.init, self.cgroup.as_ref(), &self.done, self.fresh, &mut errors);
            for e in errors {
                tracing::warn!(board = %self.plan.board, "undoing a failed jail: {e}");
            }
        }
    }
}

/// The teardown order:
/// 1. the init: its PID namespace takes every jail process along, so
///    nothing of the jail runs any more (a process that ignores SIGTERM
///    is killed with the namespace);
/// 2. what is left in the network namespace (the NFS server, a host
///    process);
/// 3. the board link, now that nothing inside can rename, swap or use a
///    link: only the recorded device comes back, parked (see
///    [`net::return_board_link`]); it must still be done while the
///    namespace exists, or a veth would die with it;
/// 4. host links, nft and the netns name;
/// 5. the nfsroot file system (nothing uses it any more), then data.
///
/// If the init would not die, the board link stays where it is: it never
/// comes back to the host while anything of the jail might still run.
pub(super) fn teardown(
    plan: &Plan,
    init: Option<(i32, u64)>,
    cg: Option<&cgroup::JailCgroup>,
    done: &net::Done,
    wipe: bool,
    errors: &mut Vec<String>,
) {
    let mut stopped = true;
    if let Some((pid, start)) = init {
        if let Err(e) = stop_init(pid, start) {
            errors.push(e.to_string());
            stopped = false;
        }
    }
    if let Some(ino) = fs::inode(&Path::new("/run/netns").join(&plan.netns)) {
        let left = nfs::stop(ino);
        if !left.is_empty() {
            errors.push(format!("processes {left:?} in {} do not die", plan.netns));
            stopped = false;
        }
    }
    // Whatever else of the jail's still runs is in its cgroup.
    if let Some(cg) = cg {
        let left = cg.remove();
        if !left.is_empty() {
            errors.extend(left);
            stopped = false;
        }
    }
    if stopped {
        net::return_board_link(plan, done, errors);
    }
    net::teardown(plan, done, errors);
    let before = errors.len();
    nfs::unmount_root(plan, errors);
    fs::unmount_data(plan, errors);
    // Never wipe through a file system that is still mounted. The images
    // hold everything of the claim; the mount point is empty.
    if wipe && errors.len() == before {
        for dir in [&plan.data_dir, &disk::state_dir(&plan.data_dir)] {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(format!("removing {}: {e}", dir.display()));
                }
            }
        }
    }
}

/// SIGTERM to the init (it stops its services), SIGKILL after 5 s.
fn stop_init(pid: i32, start: u64) -> Result<(), JailError> {
    let p = Pid::from_raw(pid);
    let ours = || proc_start_time(pid) == Some(start);
    if !ours() {
        return Ok(());
    }
    let _ = kill(p, Signal::SIGTERM);
    let t = Instant::now();
    while ours() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if ours() {
        let _ = kill(p, Signal::SIGKILL);
        let t = Instant::now();
        while ours() && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if ours() {
        Err(JailError::Init(format!("init {pid} does not die")))
    } else {
        Ok(())
    }
}

/// Removes what a jail of `spec`'s board left behind when its state was
/// lost (see [`sweep_leftovers`]).
pub fn sweep_board(spec: &JailSpec) -> Result<Vec<String>, JailError> {
    Plan::new(spec)?;
    sweep_leftovers(&spec.board, spec.index, &spec.link, &spec.settings, &spec.cgroups, spec.link_id.as_ref())
}

/// Removes what a jail of a board left behind when its state was lost (a
/// labd killed while building or removing it, say): every process in its
/// namespace first, then its board link comes back (the device `link_id`
/// names, parked), then its links, nft table, namespace and the nfsroot
/// mount; the data stays. Returns what was done, empty when there was
/// nothing.
pub fn sweep_leftovers(
    board: &str,
    index: u32,
    link: &Network,
    settings: &JailSettings,
    cgroups: &cgroup::Hierarchy,
    link_id: Option<&LinkId>,
) -> Result<Vec<String>, JailError> {
    let plan = Plan::for_board(board, index, link, settings)?;
    let mut report = Vec::new();
    if let Some(ino) = fs::inode(&Path::new("/run/netns").join(&plan.netns)) {
        for pid in pids_in_netns(ino) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            report.push(format!("killed {pid} in {}", plan.netns));
        }
        let t = Instant::now();
        while !pids_in_netns(ino).is_empty() && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if net::netns_exists(&plan.netns) || net::link_exists(&plan.uplink_host) {
        let mut errors = Vec::new();
        let link = link_id.cloned().map(|id| net::BoardLinkRecord { id, jail_ifindex: None });
        let cg = cgroup::JailCgroup::of(cgroups, board);
        teardown(&plan, None, cg.as_ref(), &net::Done::all(link), false, &mut errors);
        report.push(format!(
            "removed the leftovers of {}: {}",
            plan.netns,
            if errors.is_empty() { "ok".into() } else { errors.join("; ") }
        ));
    } else if fs::inode(&nfs::image(&plan)).is_some() || fs::inode(&fs::data_image(&plan)).is_some() {
        let mut errors = Vec::new();
        nfs::unmount_root(&plan, &mut errors);
        fs::unmount_data(&plan, &mut errors);
        if !errors.is_empty() {
            report.push(format!("nfsroot of {}: {}", plan.board, errors.join("; ")));
        }
    }
    Ok(report)
}

/// Removes leftovers after a crash: every jail in `known` (as
/// [`Jail::destroy`] without wipe), and with `by_prefix` also anything
/// carrying our names (netns `blj*`, links `blju*`/`bljm*`/`bljv*`, nft
/// tables `boardlab_j*`), returning board links named in their alias to
/// the host first. Returns what was removed or failed, for the log.
pub fn sweep(known: &[Jail], by_prefix: bool) -> Vec<String> {
    let mut report = Vec::new();
    for j in known {
        let mut errors = Vec::new();
        let done = net::Done::all(j.link.clone());
        teardown(&j.plan, Some((j.init_pid, j.init_start)), j.cgroup.as_ref(), &done, false, &mut errors);
        report.push(format!(
            "jail {} ({}): {}",
            j.plan.board,
            j.plan.netns,
            if errors.is_empty() { "removed".into() } else { errors.join("; ") }
        ));
    }
    if !by_prefix {
        return report;
    }
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    for ns in netns.iter().filter(|n| is_ours_netns(n)) {
        // Every process in that namespace first (the init's death takes
        // its PID namespace along), so nothing inside can touch a link
        // while it is returned.
        if let Some(ino) = fs::inode(&Path::new("/run/netns").join(ns)) {
            for pid in pids_in_netns(ino) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                report.push(format!("killed {pid} in {ns}"));
            }
            let t = Instant::now();
            while !pids_in_netns(ino).is_empty() && t.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Board links carry their host name in the alias; each is parked
        // on its way back.
        if let Ok(out) = net::run("ip", &["-n", ns, "-o", "link", "show"], None) {
            for line in out.lines() {
                let Some(pos) = line.find(&format!("alias {}", net::ALIAS_PREFIX)) else { continue };
                let host = line[pos + 6 + net::ALIAS_PREFIX.len()..].split_whitespace().next().unwrap_or("");
                let inside = line.split(": ").nth(1).and_then(|n| n.split('@').next()).unwrap_or("");
                if crate::ids::valid_ifname(host) && crate::ids::valid_ifname(inside) {
                    let me = std::process::id().to_string();
                    let r = net::run("ip", &["-n", ns, "link", "set", "dev", inside, "netns", &me, "name", host], None);
                    let parked = r.is_ok() && crate::link::check_and_park(host, None).is_ok();
                    report.push(format!("returned {host} from {ns}: {}", if parked { "parked" } else { "failed" }));
                }
            }
        }
        let r = net::run("ip", &["netns", "delete", ns], None);
        report.push(format!("netns {ns}: {}", if r.is_ok() { "removed" } else { "failed" }));
    }
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        for name in rd.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if [plan::UPLINK_PREFIX, plan::MACVLAN_PREFIX, plan::VLAN_PREFIX]
                .iter()
                .any(|p| name.strip_prefix(p).is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())))
            {
                let r = net::run("ip", &["link", "del", "dev", &name], None);
                report.push(format!("link {name}: {}", if r.is_ok() { "removed" } else { "failed" }));
            }
        }
    }
    if let Ok(t) = net::run("nft", &["list", "tables", "inet"], None) {
        for name in t.lines().filter_map(|l| l.trim().strip_prefix("table inet ")) {
            if name
                .strip_prefix(plan::NFT_PREFIX)
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
            {
                let r = net::run("nft", &["delete", "table", "inet", name], None);
                report.push(format!("nft table {name}: {}", if r.is_ok() { "removed" } else { "failed" }));
            }
        }
    }
    report
}

/// `blj<digits>-...`: a jail's netns (labsim's are `bl<hex>-`, never `blj`).
fn is_ours_netns(n: &str) -> bool {
    n.strip_prefix(plan::NETNS_PREFIX)
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(d, _)| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn pids_in_netns(ino: u64) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.filter_map(|e| e.ok()) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if fs::inode(&e.path().join("ns/net")) == Some(ino) {
                out.push(pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::is_ours_netns;

    #[test]
    fn our_netns_names() {
        assert!(is_ours_netns("blj3-rockpro64-1"));
        assert!(!is_ours_netns("blab12-3"));
        assert!(!is_ours_netns("bljx-3"));
    }
}
