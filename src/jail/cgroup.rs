//! A cgroup per jail, capping its processes, memory and CPU share, so one
//! jail cannot take the host's (or the other jails') PIDs, memory or CPU.
//!
//! Two hierarchies exist in the field and both are real:
//!
//! * **v2 (unified)**, where the host delegates the `pids`, `memory` and
//!   `cpu` controllers to labd (systemd `Delegate=yes`, as current
//!   distributions run services). A v2 cgroup with children may hold no
//!   process ("no internal processes"), so labd first moves itself into a
//!   leaf `labd` beside the jails, then enables the controllers for its
//!   subtree: `<own>/labd` (labd) and `<own>/jails/jail-<board>`.
//! * **v1**, one hierarchy per controller (this test machine): the jail's
//!   cgroup is `<own cgroup in that hierarchy>/boardlab/jail-<board>` in
//!   each of `pids`, `memory` and `cpu`.
//!
//! Which one applies is found at start ([`detect`]); the limit files each
//! writes are pure data ([`limit_writes`]) so both are unit-tested, and
//! the one present here is tested for real. A process joins by writing
//! `0` ("myself") to `cgroup.procs` between fork and exec, so everything
//! it starts is inside before it runs a single instruction of its own.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::JailError;

pub use crate::config::jail::Limits;

/// Where jail cgroups are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// `parent` holds one cgroup per jail, with the controllers enabled.
    V2 { parent: PathBuf },
    /// One parent per controller: (controller, parent).
    V1 { parents: Vec<(Controller, PathBuf)> },
    /// No usable controllers: jails run unlimited (said loudly at start).
    None { why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Controller {
    Pids,
    Memory,
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Pids, Controller::Memory, Controller::Cpu];

    fn name(self) -> &'static str {
        match self {
            Controller::Pids => "pids",
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
        }
    }
}

/// The files a jail's cgroup gets, with their values, in order. `v1`
/// selects the hierarchy; `ctl` the v1 controller (ignored for v2);
/// `memsw` whether the v1 memory controller accounts swap.
pub fn limit_writes(v1: Option<(Controller, bool)>, l: &Limits) -> Vec<(&'static str, String)> {
    match v1 {
        None => vec![
            ("pids.max", l.pids_max.to_string()),
            ("memory.max", l.memory_max.to_string()),
            ("memory.swap.max", "0".into()),
            ("cpu.weight", l.cpu_weight.clamp(1, 10000).to_string()),
        ],
        Some((Controller::Pids, _)) => vec![("pids.max", l.pids_max.to_string())],
        Some((Controller::Memory, memsw)) => {
            let mut v = vec![("memory.limit_in_bytes", l.memory_max.to_string())];
            if memsw {
                // Memory and swap together, no more than memory alone.
                v.push(("memory.memsw.limit_in_bytes", l.memory_max.to_string()));
            }
            v
        }
        // cpu.weight 100 is cpu.shares 1024 (both a normal process's).
        Some((Controller::Cpu, _)) => {
            vec![("cpu.shares", (u64::from(l.cpu_weight.clamp(1, 10000)) * 1024 / 100).max(2).to_string())]
        }
    }
}

/// One line of /proc/self/mountinfo: (mount point, fs type, super options).
fn mounts(text: &str) -> Vec<(PathBuf, String, String)> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?;
            let _source = r.next()?;
            let opts = r.next().unwrap_or("");
            Some((PathBuf::from(point.replace("\\040", " ")), fstype.to_string(), opts.to_string()))
        })
        .collect()
}

/// Our own cgroup path in each hierarchy of /proc/self/cgroup: v2 under
/// the key "", v1 under each controller name.
fn own_paths(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            let ctls = f.next()?;
            let path = f.next()?;
            Some((ctls.to_string(), path.to_string()))
        })
        .collect()
}

/// The plan for a host, from its mountinfo and our /proc/self/cgroup, and
/// what the cgroup2 mount's controllers are (pure, for tests).
pub fn plan(mountinfo: &str, self_cgroup: &str, v2_available: &dyn Fn(&Path) -> Vec<String>) -> Hierarchy {
    let ms = mounts(mountinfo);
    let own = own_paths(self_cgroup);
    // v2 first, where it holds all three controllers for us.
    if let Some((mnt, _, _)) = ms.iter().find(|(_, t, _)| t == "cgroup2") {
        if let Some((_, path)) = own.iter().find(|(c, _)| c.is_empty()) {
            let base = mnt.join(path.trim_start_matches('/'));
            let have = v2_available(&base);
            if Controller::ALL.iter().all(|c| have.iter().any(|h| h == c.name())) {
                return Hierarchy::V2 { parent: base.join("jails") };
            }
        }
    }
    let mut parents = Vec::new();
    for c in Controller::ALL {
        let mnt = ms.iter().find(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == c.name()));
        let path = own.iter().find(|(cs, _)| cs.split(',').any(|x| x == c.name()));
        match (mnt, path) {
            (Some((m, _, _)), Some((_, p))) => parents.push((c, m.join(p.trim_start_matches('/')).join("boardlab"))),
            _ => {
                return Hierarchy::None {
                    why: format!(
                        "neither a cgroup v2 hierarchy delegating pids, memory and cpu to labd nor a v1 {} hierarchy",
                        c.name()
                    ),
                }
            }
        }
    }
    Hierarchy::V1 { parents }
}

/// The controllers a v2 cgroup may give its children.
fn v2_controllers(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Finds the hierarchy on this host and prepares labd's part of it (v2:
/// labd moves into its own leaf and enables the controllers for its
/// subtree). Called once at start, as host root.
pub fn detect() -> Hierarchy {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let h = plan(&mountinfo, &own, &v2_controllers);
    match &h {
        Hierarchy::V2 { parent } => match prepare_v2(parent) {
            Ok(()) => h,
            Err(why) => Hierarchy::None { why },
        },
        Hierarchy::V1 { parents } => {
            for (_, p) in parents {
                if let Err(e) = fs::create_dir_all(p) {
                    return Hierarchy::None { why: format!("creating {}: {e}", p.display()) };
                }
            }
            h
        }
        Hierarchy::None { .. } => h,
    }
}

/// v2: `own/labd` (where labd goes), `own/jails` (the jails' parent),
/// controllers enabled in `own` and `own/jails`.
fn prepare_v2(jails: &Path) -> Result<(), String> {
    let own = jails.parent().ok_or("no parent")?;
    let me = own.join("labd");
    let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()));
    let write = |p: PathBuf, v: &str| fs::write(&p, v).map_err(|e| format!("writing {v:?} to {}: {e}", p.display()));
    mk(&me)?;
    mk(jails)?;
    // Every process of ours moves to the leaf (labd alone, normally).
    if let Ok(procs) = fs::read_to_string(own.join("cgroup.procs")) {
        for pid in procs.split_whitespace() {
            let _ = fs::write(me.join("cgroup.procs"), pid);
        }
    }
    write(own.join("cgroup.subtree_control"), "+pids +memory +cpu")?;
    write(jails.join("cgroup.subtree_control"), "+pids +memory +cpu")
}

/// A jail's cgroup: one directory (v2) or one per controller (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailCgroup {
    pub dirs: Vec<PathBuf>,
}

impl JailCgroup {
    /// The cgroup of `board`'s jail in `h` (none without controllers).
    pub fn of(h: &Hierarchy, board: &str) -> Option<JailCgroup> {
        let name = format!("jail-{board}");
        match h {
            Hierarchy::V2 { parent } => Some(JailCgroup { dirs: vec![parent.join(name)] }),
            Hierarchy::V1 { parents } => {
                Some(JailCgroup { dirs: parents.iter().map(|(_, p)| p.join(&name)).collect() })
            }
            Hierarchy::None { .. } => None,
        }
    }

    /// Makes the cgroup (afresh: leftovers are emptied and removed first)
    /// and writes its limits.
    pub fn create(h: &Hierarchy, board: &str, l: &Limits) -> Result<Option<JailCgroup>, JailError> {
        let Some(cg) = JailCgroup::of(h, board) else { return Ok(None) };
        cg.remove();
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| JailError::Io { what, path, source }
        };
        match h {
            Hierarchy::V2 { .. } => {
                let d = &cg.dirs[0];
                fs::create_dir(d).map_err(io("creating cgroup", d))?;
                for (f, v) in limit_writes(None, l) {
                    let p = d.join(f);
                    // memory.swap.max is absent where swap accounting is off.
                    if f == "memory.swap.max" && !p.exists() {
                        continue;
                    }
                    fs::write(&p, v).map_err(io("writing limit", &p))?;
                }
            }
            Hierarchy::V1 { parents } => {
                for ((c, _), d) in parents.iter().zip(&cg.dirs) {
                    fs::create_dir(d).map_err(io("creating cgroup", d))?;
                    let memsw = d.join("memory.memsw.limit_in_bytes").exists();
                    for (f, v) in limit_writes(Some((*c, memsw)), l) {
                        let p = d.join(f);
                        fs::write(&p, v).map_err(io("writing limit", &p))?;
                    }
                }
            }
            Hierarchy::None { .. } => {}
        }
        Ok(Some(cg))
    }

    /// `cgroup.procs` of every directory, opened for writing: a child
    /// writes `0` to each between fork and exec to join ([`join_self`]).
    pub fn open_procs(&self) -> Result<Vec<OwnedFd>, JailError> {
        self.dirs
            .iter()
            .map(|d| {
                let p = d.join("cgroup.procs");
                fs::OpenOptions::new().write(true).open(&p).map(OwnedFd::from).map_err(|source| JailError::Io {
                    what: "opening",
                    path: p,
                    source,
                })
            })
            .collect()
    }

    /// Every process in the cgroup (any directory).
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| t.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Kills every process in the cgroup and removes its directories.
    /// Returns what is left (processes that would not die, directories
    /// that would not go).
    pub fn remove(&self) -> Vec<String> {
        let t = Instant::now();
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            if t.elapsed() > Duration::from_secs(3) {
                return vec![format!("processes {pids:?} in the jail's cgroup do not die")];
            }
            if let Some(d) = self.dirs.first().filter(|d| d.join("cgroup.kill").exists()) {
                let _ = fs::write(d.join("cgroup.kill"), "1");
            }
            for p in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut left = Vec::new();
        for d in &self.dirs {
            if d.exists() {
                // A cgroup goes once its last process is reaped: retry a moment.
                let t = Instant::now();
                while let Err(e) = fs::remove_dir(d) {
                    if t.elapsed() > Duration::from_secs(2) {
                        left.push(format!("removing {}: {e}", d.display()));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        left
    }
}

/// Between fork and exec: moves the calling process into every cgroup
/// whose `cgroup.procs` is open in `fds`. Only a write(2) per fd, so it is
/// async-signal-safe.
pub fn join_self(fds: &[i32]) -> std::io::Result<()> {
    for &fd in fds {
        // SAFETY: `fd` is an open descriptor owned by the parent for the
        // duration of the spawn; writing two bytes from a static buffer.
        let n = unsafe { libc::write(fd, b"0\n".as_ptr().cast(), 2) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The raw fds of `fds`, for [`join_self`] in a `pre_exec` closure.
pub fn raw(fds: &[OwnedFd]) -> Vec<i32> {
    fds.iter().map(|f| f.as_raw_fd()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_INFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V1_SELF: &str = "8:pids:/
4:memory:/system.slice/labd.service
1:cpu,cpuacct:/
0::/system.slice/labd.service
";
    const V2_INFO: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const V2_SELF: &str = "0::/system.slice/labd.service\n";

    #[test]
    fn a_hybrid_host_without_v2_controllers_uses_v1() {
        let h = plan(V1_INFO, V1_SELF, &|_| vec![]);
        assert_eq!(
            h,
            Hierarchy::V1 {
                parents: vec![
                    (Controller::Pids, "/sys/fs/cgroup/pids/boardlab".into()),
                    (Controller::Memory, "/sys/fs/cgroup/memory/system.slice/labd.service/boardlab".into()),
                    (Controller::Cpu, "/sys/fs/cgroup/cpu,cpuacct/boardlab".into()),
                ]
            }
        );
        let cg = JailCgroup::of(&h, "rp64-1").unwrap();
        assert_eq!(cg.dirs[1], Path::new("/sys/fs/cgroup/memory/system.slice/labd.service/boardlab/jail-rp64-1"));
    }

    #[test]
    fn a_delegated_v2_host_uses_v2_under_labds_own_cgroup() {
        let avail = |p: &Path| {
            assert_eq!(p, Path::new("/sys/fs/cgroup/system.slice/labd.service"));
            vec!["cpuset".into(), "cpu".into(), "io".into(), "memory".into(), "pids".into()]
        };
        let h = plan(V2_INFO, V2_SELF, &avail);
        assert_eq!(h, Hierarchy::V2 { parent: "/sys/fs/cgroup/system.slice/labd.service/jails".into() });
        // Not delegated (no memory controller for us): no limits, and why.
        let h = plan(V2_INFO, V2_SELF, &|_| vec!["pids".into()]);
        assert!(matches!(h, Hierarchy::None { why } if why.contains("v1 pids")));
    }

    #[test]
    fn limit_files_of_both_hierarchies() {
        let l = Limits { pids_max: 512, memory_max: 256 << 20, cpu_weight: 50, connections_max: 4096 };
        assert_eq!(
            limit_writes(None, &l),
            vec![
                ("pids.max", "512".to_string()),
                ("memory.max", (256u64 << 20).to_string()),
                ("memory.swap.max", "0".to_string()),
                ("cpu.weight", "50".to_string()),
            ]
        );
        assert_eq!(limit_writes(Some((Controller::Pids, false)), &l), vec![("pids.max", "512".to_string())]);
        assert_eq!(
            limit_writes(Some((Controller::Memory, true)), &l),
            vec![
                ("memory.limit_in_bytes", (256u64 << 20).to_string()),
                ("memory.memsw.limit_in_bytes", (256u64 << 20).to_string()),
            ]
        );
        assert_eq!(limit_writes(Some((Controller::Cpu, false)), &l), vec![("cpu.shares", "512".to_string())]);
        let tiny = Limits { cpu_weight: 0, ..l };
        assert_eq!(limit_writes(Some((Controller::Cpu, false)), &tiny), vec![("cpu.shares", "10".to_string())]);
    }
}
