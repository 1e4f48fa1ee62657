//! Namespaces and the user mapping.
//!
//! As in youki, the order lives in one table and the user namespace comes
//! first: every later namespace is then *owned* by the jail's user namespace,
//! so the jail's root has capabilities over its own mount, network, UTS and
//! IPC namespaces and none over the host's. The kernel calls sit behind the
//! small [`Kernel`] trait so unit tests can check the flags without root.

use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::plan::IDS_PER_JAIL;
use super::JailError;

/// The namespaces a jail gets, in the order they are created. The user
/// namespace is unshared alone (its id maps must be written by the host
/// before anything else happens); the rest are unshared together after the
/// process became root inside it. The PID namespace applies to the next
/// child, which becomes the jail's init (PID 1).
pub const ORDER: &[(CloneFlags, &str)] = &[
    (CloneFlags::CLONE_NEWUSER, "user"),
    (CloneFlags::CLONE_NEWNS, "mount"),
    (CloneFlags::CLONE_NEWNET, "net"),
    (CloneFlags::CLONE_NEWUTS, "uts"),
    (CloneFlags::CLONE_NEWIPC, "ipc"),
    (CloneFlags::CLONE_NEWPID, "pid"),
    // labjail joined the jail's cgroup before it started: the jail sees
    // that cgroup as its root and nothing of the host's tree.
    (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
];

/// The kernel calls namespace setup makes.
pub trait Kernel {
    fn unshare(&mut self, flags: CloneFlags) -> nix::Result<()>;
}

/// The real kernel.
pub struct RealKernel;

impl Kernel for RealKernel {
    fn unshare(&mut self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }
}

/// Step 1: the user namespace alone.
pub fn unshare_user(k: &mut impl Kernel) -> Result<(), JailError> {
    k.unshare(ORDER[0].0).map_err(|e| JailError::Unshare { namespaces: "user".into(), source: e.into() })
}

/// Step 2 (after the id maps are written and the process is root inside):
/// every other namespace in [`ORDER`], in one call.
pub fn unshare_rest(k: &mut impl Kernel) -> Result<(), JailError> {
    let mut flags = CloneFlags::empty();
    let mut names = Vec::new();
    for (f, n) in &ORDER[1..] {
        flags |= *f;
        names.push(*n);
    }
    k.unshare(flags).map_err(|e| JailError::Unshare { namespaces: names.join("+"), source: e.into() })
}

/// The single line written to both uid_map and gid_map: jail ids
/// 0..65535 are host ids `host_base..host_base+65535`. Host root (0) is
/// not mapped, so nothing in the jail can act as the host's root.
pub fn id_map_line(host_base: u32) -> String {
    format!("0 {host_base} {IDS_PER_JAIL}\n")
}

/// Writes the id maps of `pid`'s user namespace (the caller is host root,
/// in the parent user namespace, so a 65536-id range is allowed).
/// `setgroups` stays "allow": the jail's sshd must call setgroups(2).
pub fn write_id_maps(pid: Pid, host_base: u32) -> Result<(), JailError> {
    let line = id_map_line(host_base);
    for file in ["uid_map", "gid_map"] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, &line).map_err(|source| JailError::Io { what: "writing id map", path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recording(Vec<CloneFlags>);
    impl Kernel for Recording {
        fn unshare(&mut self, flags: CloneFlags) -> nix::Result<()> {
            self.0.push(flags);
            Ok(())
        }
    }

    #[test]
    fn user_namespace_first_then_the_rest_together() {
        let mut k = Recording::default();
        unshare_user(&mut k).unwrap();
        unshare_rest(&mut k).unwrap();
        assert_eq!(k.0[0], CloneFlags::CLONE_NEWUSER);
        assert_eq!(
            k.0[1],
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWCGROUP
        );
        assert!(!k.0[1].contains(CloneFlags::CLONE_NEWUSER));
    }

    #[test]
    fn map_line() {
        assert_eq!(id_map_line(300_000 + 65536), "0 365536 65536\n");
    }
}
