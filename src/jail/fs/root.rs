//! Phases 2 and 3 of the jail's file system (see [`super`]): the thin
//! root labjail builds in its private mount namespace, as a list of steps
//! ([`root_steps`], pure and tested), and the jail's init entering it.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::*;
use crate::jail::init::InitConfig;
use crate::jail::JailError;

/// One step of building the root, as data so it can be listed and tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootStep {
    /// Mount a tmpfs at `dst` with these options.
    Tmpfs {
        dst: PathBuf,
        options: String,
    },
    /// A directory (in a tmpfs we just mounted).
    Dir {
        dst: PathBuf,
        mode: u32,
    },
    /// An empty file as a bind target.
    File {
        dst: PathBuf,
    },
    Symlink {
        target: PathBuf,
        dst: PathBuf,
    },
    /// Bind `src` on `dst`; `ro` remounts it read-only; `dev` keeps device
    /// nodes usable (only for the /dev binds).
    Bind {
        src: PathBuf,
        dst: PathBuf,
        ro: bool,
        dev: bool,
    },
    /// Remount a tmpfs read-only once everything below it exists.
    RemountRo {
        dst: PathBuf,
    },
}

/// What [`build_root`] does, in order. Pure: `host` answers what a host
/// path is (so tests need no real file system).
pub fn root_steps(cfg: &InitConfig, host: &dyn Fn(&Path) -> HostEntry) -> Vec<RootStep> {
    use RootStep::*;
    let r = root_mount_point(&cfg.data_dir);
    let d = |s: &str| cfg.data_dir.join(s);
    let uid = cfg.host_uid;
    let mut v = vec![Tmpfs { dst: r.clone(), options: "mode=0755,size=1m".into() }];
    for name in SYSTEM_DIRS.iter().filter(|n| **n != "etc") {
        let hp = Path::new("/").join(name);
        match host(&hp) {
            HostEntry::Symlink(t) => v.push(Symlink { target: t, dst: r.join(name) }),
            HostEntry::Dir => {
                v.push(Dir { dst: r.join(name), mode: 0o755 });
                v.push(Bind { src: hp, dst: r.join(name), ro: true, dev: false });
            }
            _ => {}
        }
    }
    // The host's /etc, read-only, for the symlinks of the jail's own /etc.
    let host_etc = r.join(HOST_ETC.trim_start_matches('/'));
    v.push(Dir { dst: host_etc.clone(), mode: 0o755 });
    v.push(Bind { src: "/etc".into(), dst: host_etc.clone(), ro: true, dev: false });
    for m in ETC_MASKED {
        if host(&Path::new("/etc").join(m)) == HostEntry::Dir {
            v.push(Bind { src: d(".empty"), dst: host_etc.join(m), ro: true, dev: false });
        }
    }
    v.push(Dir { dst: r.join("etc"), mode: 0o755 });
    v.push(Bind { src: d("etc"), dst: r.join("etc"), ro: false, dev: false });
    for (name, jail_path, _) in DATA_DIRS {
        let rel = jail_path.trim_start_matches('/');
        if !rel.contains('/') {
            v.push(Dir { dst: r.join(rel), mode: 0o755 });
        }
        v.push(Bind { src: d(name), dst: r.join(rel), ro: false, dev: false });
    }
    v.push(Bind { src: cfg.labcli.clone(), dst: r.join("usr/local/bin/labcli"), ro: true, dev: false });
    // The overlays of /usr and /var/lib/dpkg (super::idmap): mount points
    // for the lower views (labjail's parent mounts them once the jail's
    // user namespace exists) and the upper layers from the claim's data.
    let lower = r.join(crate::jail::idmap::LOWER_DIR);
    v.push(Dir { dst: r.join(".boardlab"), mode: 0o755 });
    v.push(Dir { dst: lower.clone(), mode: 0o755 });
    for (name, _, _) in crate::jail::idmap::OVERLAYS {
        v.push(Dir { dst: lower.join(name), mode: 0o755 });
    }
    v.push(Dir { dst: r.join(crate::jail::idmap::UPPER_DIR), mode: 0o755 });
    v.push(Bind { src: d(".overlay"), dst: r.join(crate::jail::idmap::UPPER_DIR), ro: false, dev: false });
    // The claim's /usr/local and labcli once more, for the init to bind
    // over the overlaid /usr (which hides the binds above).
    v.push(Dir { dst: r.join(".boardlab/local"), mode: 0o755 });
    v.push(Bind { src: d("local"), dst: r.join(".boardlab/local"), ro: false, dev: false });
    v.push(File { dst: r.join(".boardlab/labcli") });
    v.push(Bind { src: cfg.labcli.clone(), dst: r.join(".boardlab/labcli"), ro: true, dev: false });
    for dir in ["proc", "sys", "dev", "run"] {
        v.push(Dir { dst: r.join(dir), mode: 0o755 });
    }
    let dev = r.join("dev");
    v.push(Tmpfs { dst: dev.clone(), options: "mode=0755,size=64k".into() });
    for n in DEV_NODES {
        v.push(File { dst: dev.join(n) });
        v.push(Bind { src: Path::new("/dev").join(n), dst: dev.join(n), ro: false, dev: true });
    }
    v.push(Dir { dst: dev.join("pts"), mode: 0o755 });
    v.push(Dir { dst: dev.join("shm"), mode: 0o755 });
    v.push(Symlink { target: "pts/ptmx".into(), dst: dev.join("ptmx") });
    v.push(Symlink { target: "/proc/self/fd".into(), dst: dev.join("fd") });
    for (i, n) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        v.push(Symlink { target: format!("/proc/self/fd/{i}").into(), dst: dev.join(n) });
    }
    if let Some(c) = &cfg.console {
        v.push(File { dst: dev.join(CONSOLE_NAME) });
        v.push(Bind { src: c.clone(), dst: dev.join(CONSOLE_NAME), ro: false, dev: true });
    }
    if let Some(sd) = &cfg.sdcard {
        // The card's node appears and goes in the bound directory while
        // the jail runs; the symlink dangles while the card is elsewhere.
        v.push(Dir { dst: dev.join(SDCARD_DIR), mode: 0o755 });
        v.push(Bind { src: sd.clone(), dst: dev.join(SDCARD_DIR), ro: false, dev: true });
        v.push(Symlink { target: Path::new(SDCARD_DIR).join(crate::storage::node::NODE), dst: dev.join("sdcard") });
    }
    v.push(RemountRo { dst: dev });
    let run = r.join("run");
    v.push(Tmpfs { dst: run.clone(), options: format!("mode=0755,size=16m,uid={uid},gid={uid}") });
    v.push(Dir { dst: run.join("boardlab"), mode: 0o755 });
    if let Some(s) = &cfg.jail_socket {
        // The socket's directory, not the socket: a labd that restarts
        // binds a new socket (a new inode) there, and the jail sees it.
        v.push(Bind { src: s.clone(), dst: run.join("boardlab"), ro: false, dev: false });
    }
    v.push(RemountRo { dst: r });
    v
}

/// What a host path is, for [`root_steps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Missing,
    Dir,
    File,
    Symlink(PathBuf),
}

/// The real answer for [`root_steps`].
pub fn host_entry(p: &Path) -> HostEntry {
    match fs::symlink_metadata(p) {
        Err(_) => HostEntry::Missing,
        Ok(m) if m.file_type().is_symlink() => fs::read_link(p).map(HostEntry::Symlink).unwrap_or(HostEntry::Missing),
        Ok(m) if m.is_dir() => HostEntry::Dir,
        Ok(_) => HostEntry::File,
    }
}

fn mount_err(what: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> JailError {
    let path = path.to_path_buf();
    move |e| JailError::Mount { what, path, source: e.into() }
}

/// Phase 2 (labjail, host root, in its own private mount namespace).
pub fn build_root(cfg: &InitConfig) -> Result<PathBuf, JailError> {
    // Nothing we mount may propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(mount_err("making mounts private", Path::new("/")))?;
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for step in root_steps(cfg, &host_entry) {
        match step {
            RootStep::Tmpfs { dst, options } => {
                mount(Some("tmpfs"), &dst, Some("tmpfs"), MsFlags::MS_NOSUID, Some(options.as_str()))
                    .map_err(mount_err("mounting tmpfs", &dst))?
            }
            RootStep::Dir { dst, mode } => {
                if fs::symlink_metadata(&dst).is_err() {
                    fs::create_dir(&dst).map_err(io("creating directory", &dst))?;
                    fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).map_err(io("setting mode of", &dst))?;
                }
            }
            RootStep::File { dst } => {
                File::create(&dst).map_err(io("creating bind target", &dst))?;
            }
            RootStep::Symlink { target, dst } => {
                std::os::unix::fs::symlink(&target, &dst).map_err(io("creating symlink", &dst))?
            }
            RootStep::Bind { src, dst, ro, dev } => {
                let flags = if dev { MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC } else { common };
                mount(Some(&src), &dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                    .map_err(mount_err("bind-mounting", &dst))?;
                let mut re = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
                if ro {
                    re |= MsFlags::MS_RDONLY;
                }
                mount(None::<&str>, &dst, None::<&str>, re, None::<&str>)
                    .map_err(mount_err(if ro { "remounting read-only" } else { "remounting" }, &dst))?;
            }
            RootStep::RemountRo { dst } => mount(
                None::<&str>,
                &dst,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
                None::<&str>,
            )
            .map_err(mount_err("remounting read-only", &dst))?,
        }
    }
    Ok(root_mount_point(&cfg.data_dir))
}

/// Phase 3 (the jail's init: PID 1 of its PID namespace, root of its user
/// namespace, in its own mount namespace).
pub fn enter_root(root: &Path) -> Result<(), JailError> {
    // The root's mounts came from a more privileged namespace and are
    // locked here, and pivot_root refuses to move a locked mount. A
    // recursive bind of the root onto itself, made here, is ours (the
    // mounts below it stay locked, and so do their read-only flags).
    mount(Some(root), root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(mount_err("binding the new root onto itself", root))?;
    // Writable /usr and /var/lib/dpkg where the lower views were made,
    // mounted as the jail's root (see super::idmap). Paths relative to
    // the root keep host paths out of the option string.
    nix::unistd::chdir(root).map_err(mount_err("changing directory to", root))?;
    for (name, _, inside) in crate::jail::idmap::OVERLAYS {
        let lower = Path::new(".").join(crate::jail::idmap::LOWER_DIR).join(name);
        if !crate::jail::disk::is_mount_point(&lower) {
            eprintln!("labjail: no view of the host's {inside} to lay /{inside} over; it stays read-only");
            continue;
        }
        let target = Path::new(".").join(inside);
        let opts = crate::jail::idmap::overlay_options(name);
        if let Err(e) = mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        ) {
            eprintln!("labjail: /{inside} stays read-only: overlay: {e}");
            continue;
        }
        if *name == "usr" {
            // The claim's own /usr/local and labcli over the host's.
            let bind = |src: &str, dst: &str, flags: MsFlags| {
                mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | flags, None::<&str>)
                    .map_err(mount_err("binding over the overlaid /usr", Path::new(dst)))
            };
            bind("./.boardlab/local", "./usr/local", MsFlags::MS_REC)?;
            bind("./.boardlab/labcli", "./usr/local/bin/labcli", MsFlags::empty())?;
        }
    }
    let nsd = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // /proc of the jail's PID namespace. Mounted before pivot_root: the
    // kernel only allows a new proc (and sysfs) where a fully visible one
    // exists in the mount namespace, i.e. while the old root is attached.
    let p = root.join("proc");
    mount(Some("proc"), &p, Some("proc"), nsd, None::<&str>).map_err(mount_err("mounting proc", &p))?;
    let p = root.join("sys");
    mount(Some("sysfs"), &p, Some("sysfs"), nsd | MsFlags::MS_RDONLY, None::<&str>)
        .map_err(mount_err("mounting sysfs", &p))?;
    let p = root.join("dev/pts");
    mount(
        Some("devpts"),
        &p,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(mount_err("mounting devpts", &p))?;
    let p = root.join("dev/shm");
    mount(Some("shm"), &p, Some("tmpfs"), nsd, Some("mode=1777,size=64m")).map_err(mount_err("mounting tmpfs", &p))?;
    // pivot_root(".", "."), then detach the old root stacked underneath
    // (runc's way: no directory for the old root is needed).
    nix::unistd::chdir(root).map_err(mount_err("changing directory to", root))?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| JailError::PivotRoot { path: root.to_path_buf(), source: e.into() })?;
    umount2(".", MntFlags::MNT_DETACH).map_err(mount_err("detaching the old root", Path::new("/")))?;
    nix::unistd::chdir("/").map_err(mount_err("changing directory to", Path::new("/")))?;
    Ok(())
}

/// Inode of a path, for comparing namespaces.
pub fn inode(p: &Path) -> Option<u64> {
    fs::metadata(p).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn cfg() -> InitConfig {
        InitConfig {
            hostname: "b1".into(),
            host_uid: 400_000,
            data_dir: "/srv/jails/b1".into(),
            console: Some("/dev/pts/9".into()),
            jail_socket: Some("/run/boardlab/jails/b1".into()),
            labcli: "/usr/local/bin/labcli".into(),
            jail_ip: Ipv4Addr::new(10, 240, 0, 6),
            ssh_port: 22,
            services: vec![],
            board_net: "172.30.1.0/24".parse().unwrap(),
            etc_fresh: true,
            ipv6: false,
            sdcard: Some("/srv/jails/.sd/b1".into()),
        }
    }

    #[test]
    fn system_dirs_ro_data_dirs_rw_root_ro_last() {
        let host = |p: &Path| match p.to_str().unwrap() {
            "/bin" => HostEntry::Symlink("usr/bin".into()),
            "/usr" | "/etc" | "/etc/ssh" | "/lib64" => HostEntry::Dir,
            "/etc/resolv.conf" => HostEntry::Symlink("../run/resolv.conf".into()),
            "/etc/passwd" | "/etc/hosts" => HostEntry::File,
            _ => HostEntry::Missing,
        };
        let s = root_steps(&cfg(), &host);
        let r = Path::new("/srv/jails/.mnt/b1");
        assert_eq!(s[0], RootStep::Tmpfs { dst: r.into(), options: "mode=0755,size=1m".into() });
        assert!(s.contains(&RootStep::Symlink { target: "usr/bin".into(), dst: r.join("bin") }));
        assert!(s.contains(&RootStep::Bind { src: "/usr".into(), dst: r.join("usr"), ro: true, dev: false }));
        assert!(s.contains(&RootStep::Bind { src: "/etc".into(), dst: r.join(".host-etc"), ro: true, dev: false }));
        assert!(s.contains(&RootStep::Bind {
            src: "/srv/jails/b1/etc".into(),
            dst: r.join("etc"),
            ro: false,
            dev: false
        }));
        // No bind lands on a single host /etc file.
        assert!(!s.iter().any(
            |x| matches!(x, RootStep::Bind { dst, .. } if dst.starts_with(r.join("etc")) && dst != &r.join("etc"))
        ));
        assert!(s.contains(&RootStep::Bind {
            src: "/srv/jails/b1/root".into(),
            dst: r.join("root"),
            ro: false,
            dev: false
        }));
        assert!(s.contains(&RootStep::Bind {
            src: "/dev/pts/9".into(),
            dst: r.join("dev/console-board"),
            ro: false,
            dev: true
        }));
        assert!(s.contains(&RootStep::Bind {
            src: "/srv/jails/.sd/b1".into(),
            dst: r.join("dev/.sd"),
            ro: false,
            dev: true
        }));
        assert!(s.contains(&RootStep::Symlink { target: ".sd/sdcard".into(), dst: r.join("dev/sdcard") }));
        assert!(s.iter().all(|x| !matches!(x, RootStep::Bind { src, .. } if src == Path::new("/lib"))));
        assert_eq!(s.last(), Some(&RootStep::RemountRo { dst: r.into() }));
    }
}
