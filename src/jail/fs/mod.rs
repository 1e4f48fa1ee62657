//! The jail's file system: per-claim data on the host, the thin root, and
//! the switch into it.
//!
//! Three phases, in three processes:
//!
//! 1. [`prepare_data_dir`] (labd, host root): `root_dir/<board>/` with the
//!    writable directories, owned by the jail's root, and the per-claim
//!    files (passwd, hosts, sshd config, authorized_keys). The jail is not
//!    running, so nothing races these writes; still every path is walked
//!    without following symlinks, because a previous jail's root owned them.
//! 2. [`build_root`] (labjail, host root, in a private mount namespace that
//!    the *host's* user namespace owns): a tmpfs root with the host's system
//!    directories bound read-only and the per-claim directories bound
//!    read-write. The namespace is private, so none of these mounts is ever
//!    visible on the host, and they vanish with the jail.
//! 3. [`enter_root`] (the jail's init, root in its user namespace only):
//!    /proc, /sys, /dev/pts and /dev/shm, then pivot_root. Because the mounts
//!    of phase 2 were made by a more privileged namespace and then copied
//!    into the jail's, the kernel locks them: the jail's root cannot remount
//!    /usr or /etc read-write, nor unmount them to look underneath.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::plan::Plan;
use super::JailError;

mod root;
pub use root::{build_root, enter_root, host_entry, inode, root_steps, HostEntry, RootStep};

/// Host directories bound read-only into the jail (or recreated as the
/// same symlink where the host has merged /usr).
pub const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Per-claim writable directories: (name under data dir, path in jail, mode).
pub const DATA_DIRS: &[(&str, &str, u32)] = &[
    ("root", "/root", 0o700),
    ("home", "/home", 0o755),
    ("var", "/var", 0o755),
    ("tmp", "/tmp", 0o1777),
    ("tftpboot", "/tftpboot", 0o755),
    ("nfsroot", "/nfsroot", 0o755),
    // The host's /usr/local (where labd itself may live) is replaced by
    // the claim's own, where the user may install tools.
    ("local", "/usr/local", 0o755),
];

/// Entries of the jail's /etc that are its own files (everything else in
/// its /etc is a symlink into the read-only host /etc at [`HOST_ETC`]).
///
/// Why not bind single files over a read-only host /etc: a bind sits on the
/// host's *dentry*, and tools that replace /etc/shadow or /etc/passwd by
/// rename (useradd, usermod) leave the bind on the old file, so the jail
/// would suddenly see the host's copy.
pub const ETC_OWN: &[&str] = &[
    "passwd",
    "group",
    "shadow",
    "gshadow",
    "hostname",
    "hosts",
    "resolv.conf",
    "ssh",
    "subuid",
    "subgid",
    // The backups useradd, passwd and friends write next to them, and
    // their lock: the jail's own, never the host's.
    "passwd-",
    "group-",
    "shadow-",
    "gshadow-",
    "subuid-",
    "subgid-",
    ".pwd.lock",
];

/// Host /etc entries not linked into the jail's /etc, and masked by an
/// empty directory under [`HOST_ETC`]: the lab's own configuration (switch
/// communities) is not the user's business.
pub const ETC_MASKED: &[&str] = &["boardlab"];

/// Where the host's /etc is visible, read-only, inside the jail.
pub const HOST_ETC: &str = "/.host-etc";

/// Device nodes bound from the host's /dev (a user namespace cannot mknod).
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The directory of the card's node in the jail's /dev (/dev/sdcard
/// points into it).
pub const SDCARD_DIR: &str = ".sd";
/// The board console's name inside the jail.
pub const CONSOLE_NAME: &str = "console-board";
/// Where the labd jail socket appears inside the jail.
pub const JAIL_SOCKET: &str = "/run/boardlab/jail.sock";

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JailError {
    let path = path.to_path_buf();
    move |source| JailError::Io { what, path, source }
}

/// Creates `dir` (not following symlinks) with `mode`, owned by `uid:uid`;
/// an existing entry must be a real directory. Ownership and mode are reset.
fn ensure_dir(dir: &Path, mode: u32, uid: u32) -> Result<(), JailError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(JailError::Unsafe { path: dir.to_path_buf(), why: "is not a directory (symlink?)" }),
        Err(_) => fs::create_dir(dir).map_err(io("creating directory", dir))?,
    }
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid)).map_err(io("changing owner of", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io("setting mode of", dir))
}

/// Writes `base/rel` afresh without following any symlink below `base`:
/// intermediate directories must be real directories (created if missing,
/// owned by `uid`), an existing final entry is unlinked first, and the new
/// file is opened with O_EXCL|O_NOFOLLOW.
pub fn safe_write(base: &Path, rel: &str, contents: &[u8], mode: u32, uid: u32) -> Result<PathBuf, JailError> {
    let rel = Path::new(rel);
    let mut dir = base.to_path_buf();
    let comps: Vec<Component> = rel.components().collect();
    let Some((last, parents)) = comps.split_last() else {
        return Err(JailError::Unsafe { path: base.join(rel), why: "empty file name" });
    };
    for c in parents {
        let Component::Normal(n) = c else {
            return Err(JailError::Unsafe { path: base.join(rel), why: "path leaves its directory" });
        };
        dir.push(n);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(JailError::Unsafe { path: dir, why: "is not a directory (symlink?)" }),
            Err(_) => ensure_dir(&dir, 0o755, uid)?,
        }
    }
    let Component::Normal(n) = last else {
        return Err(JailError::Unsafe { path: base.join(rel), why: "path leaves its directory" });
    };
    let path = dir.join(n);
    if let Ok(m) = fs::symlink_metadata(&path) {
        if m.is_dir() {
            return Err(JailError::Unsafe { path, why: "is a directory" });
        }
        fs::remove_file(&path).map_err(io("removing", &path))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io("creating", &path))?;
    f.write_all(contents).map_err(io("writing", &path))?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(uid)).map_err(io("changing owner of", &path))?;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io("setting mode of", &path))?;
    Ok(path)
}

/// System accounts (uid < 1000, and nobody) of the host's `passwd` or
/// `group`, for the jail's own copies; root's home is the jail's /root.
pub fn system_accounts(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let Some(id) = f.get(2).and_then(|s| s.parse::<u32>().ok()) else { continue };
        if id < 1000 || id == 65534 {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The jail's shadow: every account without a password ('*': no password
/// login, but not locked, so sshd accepts keys for root).
pub fn shadow_for(passwd: &str) -> String {
    passwd.lines().filter_map(|l| l.split(':').next()).map(|n| format!("{n}:*:19000:0:99999:7:::\n")).collect()
}

/// The host's resolvers usable from the jail (loopback ones are not).
pub fn resolv_for(host: &str) -> String {
    let mut out = String::new();
    for l in host.lines() {
        let mut w = l.split_whitespace();
        match (w.next(), w.next()) {
            (Some("nameserver"), Some(a)) if !a.starts_with("127.") && a != "::1" => {
                out.push_str(&format!("nameserver {a}\n"))
            }
            (Some("search"), _) | (Some("options"), _) => {
                out.push_str(l);
                out.push('\n')
            }
            _ => {}
        }
    }
    out
}

/// The image of the claim's writable directories (see [`super::disk`]).
pub fn data_image(plan: &Plan) -> PathBuf {
    super::disk::state_dir(&plan.data_dir).join("data.img")
}

/// Where labjail mounts the jail's root: `root_dir/.mnt/BOARD`.
pub fn root_mount_point(data_dir: &Path) -> PathBuf {
    let board = data_dir.file_name().unwrap_or_default();
    data_dir.parent().unwrap_or(Path::new("/")).join(".mnt").join(board)
}

/// Unmounts the claim's data file system (after the nfsroot on it).
pub fn unmount_data(plan: &Plan, errors: &mut Vec<String>) {
    super::disk::unmount(&data_image(plan), &plan.data_dir, errors);
}

/// A claim directory of an older labd (plain directories on the host's
/// disk, the nfsroot image in `.nfs`) moves into its images, so nothing a
/// claimant had is lost in an upgrade.
fn migrate_old_layout(plan: &Plan, size: u64) -> Result<(), JailError> {
    let state = super::disk::state_dir(&plan.data_dir);
    let old_img = plan.data_dir.join(".nfs/nfsroot.img");
    if old_img.is_file() && !state.join("nfsroot.img").exists() {
        fs::rename(&old_img, state.join("nfsroot.img")).map_err(io("moving", &old_img))?;
    }
    // The new layout's mount point is empty while nothing is mounted on it
    // (an image made ahead for the next claim is empty too): files there
    // are an older labd's.
    let occupied = fs::read_dir(&plan.data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if !occupied || super::disk::is_mount_point(&plan.data_dir) {
        return Ok(());
    }
    tracing::warn!(board = %plan.board, "moving the claim's data of an older labd into its own file system");
    let old = state.join("old-data");
    let _ = fs::remove_dir_all(&old);
    fs::rename(&plan.data_dir, &old).map_err(io("moving", &plan.data_dir))?;
    fs::create_dir(&plan.data_dir).map_err(io("creating", &plan.data_dir))?;
    super::disk::mount(&data_image(plan), &plan.data_dir, size, 0)?;
    let _ = fs::remove_dir_all(old.join(".nfs"));
    let mut src = old.clone().into_os_string();
    src.push("/.");
    super::disk::run("cp", &["-a".as_ref(), src.as_os_str(), plan.data_dir.as_os_str()])?;
    fs::remove_dir_all(&old).map_err(io("removing", &old))
}

/// Phase 1 (labd, host root): the claim's data file system, mounted on
/// `root_dir/BOARD`, and in it the per-claim directories and files.
/// Returns whether it was created now (so a failed create removes only
/// what it made), and whether its /etc was (so the init mirrors the
/// host's into it without looking first).
pub fn prepare_data_dir(
    plan: &Plan,
    data_size: u64,
    authorized_keys: &str,
    sshd_config: &str,
) -> Result<(bool, bool), JailError> {
    let uid = plan.host_uid;
    let root_dir = plan.data_dir.parent().unwrap_or(Path::new("/"));
    // root_dir may only be walked through (the jail's init walks it to
    // its root's mount point); the claim's directory and the images'
    // are host root's alone.
    super::disk::ensure_private_dir(root_dir, 0o711)?;
    let state = super::disk::state_dir(&plan.data_dir);
    if let Some(top) = state.parent() {
        super::disk::ensure_private_dir(top, 0o700)?;
    }
    super::disk::ensure_private_dir(&state, 0o700)?;
    if plan.data_dir.exists() {
        migrate_old_layout(plan, data_size)?;
    }
    let t0 = std::time::Instant::now();
    let fresh = super::disk::mount(&data_image(plan), &plan.data_dir, data_size, 0)?;
    let t_mount = t0.elapsed();
    // The file system's root belongs to host root, and nobody else may
    // enter it: the jail only ever sees its subdirectories (bound by host
    // root), and no host user reaches a jail's /tmp or /home through it.
    ensure_dir(&plan.data_dir, 0o700, 0)?;
    for (name, _, mode) in DATA_DIRS {
        ensure_dir(&plan.data_dir.join(name), *mode, uid)?;
    }
    for (sub, mode) in [
        ("var/log", 0o755),
        ("var/lib", 0o755),
        ("var/lib/misc", 0o755),
        ("var/lib/dpkg", 0o755),
        ("var/cache", 0o755),
        ("var/mail", 0o2775),
        ("var/tmp", 0o1777),
        ("local/bin", 0o755),
    ] {
        ensure_dir(&plan.data_dir.join(sub), mode, uid)?;
    }
    // The upper layers of /usr and /var/lib/dpkg (see super::idmap).
    ensure_dir(&plan.data_dir.join(".overlay"), 0o755, uid)?;
    for (name, _, _) in super::idmap::OVERLAYS {
        let d = plan.data_dir.join(".overlay").join(name);
        ensure_dir(&d, 0o755, uid)?;
        ensure_dir(&d.join("upper"), 0o755, uid)?;
        ensure_dir(&d.join("work"), 0o755, uid)?;
    }
    let etc_fresh = fs::symlink_metadata(plan.data_dir.join("etc")).is_err();
    ensure_dir(&plan.data_dir.join("etc"), 0o755, uid)?;
    ensure_dir(&plan.data_dir.join("etc/ssh"), 0o755, uid)?;
    // The mount point of the jail's root: empty on the host (the root is
    // only ever mounted in labjail's private namespace), and outside the
    // claim's own directory, which the jail's root may not walk through.
    let mnt = root_mount_point(&plan.data_dir);
    if let Some(top) = mnt.parent() {
        super::disk::ensure_private_dir(top, 0o711)?;
    }
    ensure_dir(&mnt, 0o755, 0)?;
    // An empty directory for masks.
    ensure_dir(&plan.data_dir.join(".empty"), 0o555, 0)?;

    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let passwd = system_accounts(&read("/etc/passwd"))
        .lines()
        .map(|l| if l.starts_with("root:") { "root:x:0:0:root:/root:/bin/bash".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let etc = plan.data_dir.join("etc");
    safe_write(&etc, "passwd", passwd.as_bytes(), 0o644, uid)?;
    safe_write(&etc, "group", system_accounts(&read("/etc/group")).as_bytes(), 0o644, uid)?;
    safe_write(&etc, "shadow", shadow_for(&passwd).as_bytes(), 0o600, uid)?;
    safe_write(&etc, "hostname", format!("{}\n", plan.board).as_bytes(), 0o644, uid)?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n{}\t{}-board-gw\n",
        plan.jail_ip, plan.board, plan.board_addr, plan.board
    );
    safe_write(&etc, "hosts", hosts.as_bytes(), 0o644, uid)?;
    safe_write(&etc, "resolv.conf", resolv_for(&read("/etc/resolv.conf")).as_bytes(), 0o644, uid)?;
    safe_write(&etc, "ssh/sshd_config", sshd_config.as_bytes(), 0o644, uid)?;
    // The lock file of passwd, shadow and group (useradd, passwd).
    safe_write(&etc, ".pwd.lock", b"", 0o600, uid)?;
    // Everything else of /etc is mirrored by the jail's init (see
    // [`etc_tree`]), as the jail's root, while labd sets up the network.
    tracing::debug!(board = %plan.board, fresh, mount_ms = t_mount.as_millis() as u64, "data file system ready");
    let root = plan.data_dir.join("root");
    safe_write(&root, ".ssh/authorized_keys", authorized_keys.as_bytes(), 0o600, uid)?;
    let ssh_dir = root.join(".ssh");
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).map_err(io("setting mode of", &ssh_dir))?;
    // Mount point for labcli (a bind needs an existing file).
    safe_write(&plan.data_dir.join("local"), "bin/labcli", b"", 0o755, uid)?;
    Ok((fresh, etc_fresh))
}

/// The jail's /etc beyond its own files: the host's, read-only, through
/// symlinks into /.host-etc, in directories of the claim's own (so that
/// installing a package can add or replace a file in /etc/default, say).
/// Run by the jail's init, as the jail's root, inside the jail.
pub fn mirror_host_etc(fresh: bool) -> Result<(), JailError> {
    etc_tree(Path::new(HOST_ETC), Path::new("/etc"), Path::new(""), 0, fresh)
}

/// Mirrors the host directory `host/rel` into `jail/rel`: world-readable
/// directories become directories of their own (same mode), every other
/// entry a symlink to its host copy under [`HOST_ETC`] (read-only there,
/// and unreadable where the host file is not world-readable). What exists
/// already (the user's own, or ours from before) is kept.
fn etc_tree(host: &Path, jail: &Path, rel: &Path, depth: u32, fresh: bool) -> Result<(), JailError> {
    let Ok(rd) = fs::read_dir(host.join(rel)) else { return Ok(()) };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name();
        if depth == 0 {
            let n = name.to_string_lossy();
            if ETC_OWN.contains(&n.as_ref()) || ETC_MASKED.contains(&n.as_ref()) {
                continue;
            }
        }
        let r = rel.join(&name);
        let dst = jail.join(&r);
        // The entry's type comes with the directory listing: only
        // directories need a stat (for their mode).
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let mode = if is_dir { fs::symlink_metadata(host.join(&r)).map(|m| m.permissions().mode()).ok() } else { None };
        let open_dir = mode.is_some_and(|m| m & 0o005 == 0o005) && depth < 8;
        // On a fresh file system nothing exists yet; otherwise what is
        // there (the user's own, or ours from before) stays.
        if !fresh {
            match fs::symlink_metadata(&dst) {
                Ok(d) if d.is_dir() && open_dir => {
                    etc_tree(host, jail, &r, depth + 1, fresh)?;
                    continue;
                }
                Ok(_) => continue,
                Err(_) => {}
            }
        }
        if open_dir {
            fs::create_dir(&dst).map_err(io("creating directory", &dst))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode.unwrap_or(0o755) & 0o7777))
                .map_err(io("setting mode of", &dst))?;
            etc_tree(host, jail, &r, depth + 1, fresh)?;
        } else {
            std::os::unix::fs::symlink(Path::new(HOST_ETC).join(&r), &dst).map_err(io("creating symlink", &dst))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_shadow_resolv() {
        let pw = "root:x:0:0:root:/root:/bin/bash\nsshd:x:102:65534::/run/sshd:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        let s = system_accounts(pw);
        assert!(s.contains("sshd:") && s.contains("nobody:") && !s.contains("alice"));
        assert!(shadow_for(&s).starts_with("root:*:"));
        assert_eq!(
            resolv_for("nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lab\n"),
            "nameserver 10.0.0.1\nsearch lab\n"
        );
    }

    #[test]
    fn safe_write_refuses_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        std::os::unix::fs::symlink("/etc", d.path().join(".ssh")).unwrap();
        assert!(matches!(
            safe_write(d.path(), ".ssh/authorized_keys", b"x", 0o600, uid),
            Err(JailError::Unsafe { .. })
        ));
        std::fs::remove_file(d.path().join(".ssh")).unwrap();
        std::fs::create_dir(d.path().join(".ssh")).unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join(".ssh/authorized_keys")).unwrap();
        safe_write(d.path(), ".ssh/authorized_keys", b"new", 0o600, uid).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(d.path().join(".ssh/authorized_keys")).unwrap(), "new");
        assert!(safe_write(d.path(), "../x", b"", 0o600, uid).is_err());
    }
}
