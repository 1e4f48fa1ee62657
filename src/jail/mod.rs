//! The per-claim Linux jail: an isolated environment on the board's own
//! network where the claimant is root, with sshd, NAT to the outside, DHCP
//! and TFTP for the board.
//!
//! One module per isolation mechanism, as in firecracker's jailer:
//!
//! * [`plan`]: identifier validation, names, addresses and ids (pure);
//! * [`ns`]: the namespace order (user first) and the id maps;
//! * [`fs`]: per-claim data, the thin read-only root, pivot_root;
//! * [`net`]: board link, uplink, addresses, nftables on both sides;
//! * [`services`]: sshd and dnsmasq command lines and configuration;
//! * [`nfs`]: nfs-ganesha exporting /nfsroot to the board (host root, in
//!   the jail's network namespace only);
//! * [`init`]: `labjail start`, which makes the namespaces and becomes the
//!   jail's PID 1, and labd's side of talking to it.
//! * `teardown`: the order a jail comes down in, and the sweep of what a
//!   lost one left behind.
//!
//! [`Jail::create`] runs the steps in order; [`Jail::destroy`] undoes them,
//! and so does a failed create. [`Jail`] is serde-serialisable so labd can
//! keep it in its state database and adopt running jails after a restart
//! ([`Jail::alive`]); [`sweep`] removes leftovers after a crash.
//!
//! Privileges: the jail's root is host uid `uid_base + index*65536`, with
//! 65536 ids mapped; host root is not mapped, so it owns nothing of the host.

pub mod cgroup;
pub mod console;
pub mod disk;
pub mod fs;
pub mod hostcert;
pub mod idmap;
pub mod init;
mod mount_api;
pub mod net;
pub mod nfs;
pub mod ns;
pub mod plan;
pub mod services;
mod teardown;
pub mod v6pool;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::addr::Ipv4Net;
use crate::config::Network;
use crate::link::LinkId;
pub use plan::Plan;
pub(crate) use teardown::pids_in_netns;
pub use teardown::{sweep, sweep_board, sweep_leftovers};
use teardown::{teardown, Undo};

/// Everything that can go wrong making or removing a jail. Variants name the
/// operation and carry the path, interface or command, so the message says
/// what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// An identifier in the spec is not acceptable (it would become a path,
    /// an interface name or nft text).
    #[error("invalid {what}: {value:?}")]
    Invalid { what: &'static str, value: String },
    /// The pools or uid range have no room for this index.
    #[error("address or id allocation: {0}")]
    Allocation(String),
    /// Something of this jail already exists.
    #[error("{0} already exists (a jail for this board is running, or leftovers need a sweep)")]
    Exists(String),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// A path that must be a plain file or directory is not (a symlink
    /// planted by a previous jail's root, say).
    #[error("refusing {}: {why}", path.display())]
    Unsafe { path: PathBuf, why: &'static str },
    #[error("unshare({namespaces}): {source}")]
    Unshare { namespaces: String, source: std::io::Error },
    #[error("{what} {}: {source}", path.display())]
    Mount { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("pivot_root into {}: {source}", path.display())]
    PivotRoot { path: PathBuf, source: std::io::Error },
    #[error("{what}: {source}")]
    Sys { what: &'static str, source: std::io::Error },
    /// An external tool (ip, nft, ssh-keygen) failed.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// The jail's init reported a failure (or stopped talking).
    #[error("jail init: {0}")]
    Init(String),
    /// The board's link is missing, or is not the device recorded for
    /// the board: the board cannot have a jail until an operator looks.
    #[error("{0}")]
    Link(String),
    /// Teardown left these pieces behind.
    #[error("teardown incomplete: {}", .0.join("; "))]
    Teardown(Vec<String>),
}

pub use crate::config::jail::{JailSettings, Uplink, DEFAULT_DATA_SIZE, DEFAULT_NFSROOT_SIZE};

/// What labd asks for when a board is claimed.
#[derive(Debug, Clone)]
pub struct JailSpec {
    pub board: String,
    /// The claim handle (`bl-<32 hex>`).
    pub handle: String,
    /// The claimant.
    pub user: String,
    /// Stable small number per board: addresses and uids derive from it.
    pub index: u32,
    /// The board link.
    pub link: Network,
    pub settings: JailSettings,
    /// Becomes root's authorized_keys in the jail.
    pub authorized_keys: String,
    /// Reuse this host key (keep_host_key), else a fresh one per claim.
    pub host_key: Option<PathBuf>,
    /// With the lab's host CA: the host key's certificate is made with it.
    pub host_cert: Option<hostcert::CertSpec>,
    /// Host directory holding labd's socket for this jail (`jail.sock`),
    /// bound at /run/boardlab in the jail (so /run/boardlab/jail.sock).
    pub jail_socket: Option<PathBuf>,
    /// Host pty slave bound at /dev/console-board in the jail.
    pub console: Option<PathBuf>,
    /// The board's card directory (made here if missing), bound at
    /// /dev/.sd in the jail: a board with a microSD card.
    pub sdcard: Option<PathBuf>,
    /// labcli, bound at /usr/local/bin/labcli in the jail.
    pub labcli: PathBuf,
    /// The board link's identity as recorded on the host (see
    /// [`crate::link`]); the link moved into the jail must be that device.
    pub link_id: Option<LinkId>,
    /// Where jail cgroups go on this host (found by labd at start).
    pub cgroups: cgroup::Hierarchy,
    /// The claim's /64 (drawn from `[jail] ipv6_pool`), if the lab has
    /// IPv6.
    pub ipv6_prefix: Option<ipnet::Ipv6Net>,
}

pub use crate::protocol::JailInfo;

/// Makes the directory of a jail's socket, which the jail binds at
/// /run/boardlab: DIR/jail-sockets (0700: no host user gets in) / BOARD
/// (0711: the jail's root may reach the socket in it, which is 0666).
pub fn socket_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    if let Some(top) = dir.parent() {
        std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A running jail: enough to find, check and remove every piece of it,
/// also from another labd process (serde, kept in the state database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jail {
    pub handle: String,
    pub user: String,
    pub plan: Plan,
    /// Host PID of the jail's init, and its start time (clock ticks since
    /// boot, /proc/PID/stat field 22) so a reused PID is never mistaken for it.
    pub init_pid: i32,
    pub init_start: u64,
    pub info: JailInfo,
    /// The board link while the jail holds it (absent in jails recorded
    /// by an older labd).
    #[serde(default)]
    pub link: Option<net::BoardLinkRecord>,
    /// The jail's cgroup, when the host has controllers.
    #[serde(default)]
    pub cgroup: Option<cgroup::JailCgroup>,
}

/// Start time of a process, if it exists and is not a zombie.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") || f.first() == Some(&"X") {
        return None;
    }
    f.get(19)?.parse().ok()
}

impl Jail {
    /// Creates and starts a jail. Blocking (labd runs it in
    /// spawn_blocking). On failure everything done so far is undone.
    ///
    /// The order matters:
    /// 1. validate and plan first, so no bad identifier touches the system;
    /// 2. refuse if the netns or links are taken (another jail owns them);
    /// 3. per-claim data and host key, host-side, while no jail process
    ///    can race the writes; the nfsroot's own file system mounted on
    ///    the host, so the init's copy of the mounts (and its bind of
    ///    /nfsroot) has it;
    /// 4. the init: user namespace first, then the rest (see [`ns`]), and
    ///    the root (see [`fs`]); it then waits;
    /// 5. the network, from the host into the now-existing netns: the board
    ///    link must be inside and addressed before dnsmasq binds to it, the
    ///    uplink before sshd listens on its address;
    /// 6. services last; the jail is ready when sshd accepts connections;
    /// 7. the NFS export (host root, joins the jail's netns; see [`nfs`]),
    ///    ready when it listens on the board address.
    pub fn create(spec: &JailSpec) -> Result<(Jail, JailInfo), JailError> {
        let t0 = Instant::now();
        // 1.
        let plan = Plan::new(spec)?;
        // 2.
        if net::netns_exists(&plan.netns) {
            return Err(JailError::Exists(format!("network namespace {}", plan.netns)));
        }
        if net::link_exists(&plan.uplink_host) {
            return Err(JailError::Exists(format!("interface {}", plan.uplink_host)));
        }
        if let Some(c) = &spec.console {
            if !c.is_absolute() {
                return Err(JailError::Invalid { what: "console path", value: c.display().to_string() });
            }
        }
        // 3.
        let mut sshd_config = services::sshd_config(
            plan.jail_ip,
            plan.board_prefix.as_ref().map(v6pool::jail_address),
            spec.settings.ssh_port,
        );
        if spec.host_cert.is_some() {
            sshd_config.push_str(&hostcert::sshd_config_line());
        }
        let (fresh, etc_fresh) =
            fs::prepare_data_dir(&plan, spec.settings.data_size, &spec.authorized_keys, &sshd_config)?;
        let mut undo = Undo { plan: &plan, fresh, init: None, cgroup: None, done: net::Done::default(), armed: true };
        let host_pub = services::install_host_key(&plan, spec.host_key.as_deref())?;
        if let Some(c) = &spec.host_cert {
            hostcert::install(&plan, &spec.handle, &host_pub, c)?;
        }
        nfs::mount_root(&plan, spec.settings.nfsroot_size)?;
        // The cgroup before the first jail process: labjail joins it
        // between fork and exec, and so does everything it starts.
        let cg = cgroup::JailCgroup::create(&spec.cgroups, &plan.board, &spec.settings.limits)?;
        undo.cgroup = cg.clone();
        let cg_fds = match &cg {
            Some(c) => c.open_procs()?,
            None => Vec::new(),
        };
        if let Some(sd) = &spec.sdcard {
            crate::storage::node::ensure_dir(sd).map_err(|source| JailError::Io {
                what: "making the card's directory",
                path: sd.clone(),
                source,
            })?;
        }
        if let Some(c) = &spec.console {
            std::os::unix::fs::chown(c, Some(plan.host_uid), Some(plan.host_uid)).map_err(|source| JailError::Io {
                what: "handing the console to the jail",
                path: c.clone(),
                source,
            })?;
        }
        // 4.
        let cfg = init::InitConfig {
            hostname: plan.board.clone(),
            host_uid: plan.host_uid,
            data_dir: plan.data_dir.clone(),
            console: spec.console.clone(),
            sdcard: spec.sdcard.clone(),
            jail_socket: spec.jail_socket.clone(),
            labcli: spec.labcli.clone(),
            jail_ip: plan.jail_ip,
            ssh_port: spec.settings.ssh_port,
            services: services::services(&plan, spec.settings.ssh_port),
            board_net: plan.board_net,
            etc_fresh,
            ipv6: plan.board_prefix.is_some(),
        };
        let t_data = t0.elapsed();
        let (starter, pid, start) =
            init::Starter::spawn(&spec.settings.init_exe, &cfg, &plan.data_dir.join("init.log"), &cg_fds)?;
        let t_init = t0.elapsed();
        undo.init = Some((pid, start));
        // 5.
        if let Err(e) = net::setup(&plan, &spec.settings, pid, spec.link_id.as_ref(), &mut undo.done) {
            starter.abort();
            return Err(e);
        }
        // 6. ganesha (host side, in the jail's network namespace) starts
        // while the init brings up sshd and dnsmasq: both waits overlap.
        let t_net = t0.elapsed();
        let nfs = match nfs::spawn(&plan, &cg_fds) {
            Ok(n) => n,
            Err(e) => {
                starter.abort();
                return Err(e);
            }
        };
        starter.go()?;
        let t_services = t0.elapsed();
        nfs.ready(&plan)?;
        undo.armed = false;
        let ca = spec.host_cert.as_ref().map(|c| &c.ca);
        let info = hostcert::info(&plan, spec.settings.ssh_port, &spec.handle, &host_pub, ca);
        let ms = |d: Duration| d.as_millis() as u64;
        tracing::info!(
            board = %plan.board,
            ip = %plan.jail_ip,
            pid,
            elapsed_ms = ms(t0.elapsed()),
            data_ms = ms(t_data),
            init_ms = ms(t_init),
            net_ms = ms(t_net),
            services_ms = ms(t_services),
            "jail ready"
        );
        let jail = Jail {
            handle: spec.handle.clone(),
            user: spec.user.clone(),
            plan: plan.clone(),
            init_pid: pid,
            init_start: start,
            info: info.clone(),
            link: undo.done.link.clone(),
            cgroup: cg,
        };
        Ok((jail, info))
    }

    /// Whether the jail's init still runs and its network namespace is
    /// still the one named for it (for adoption after a labd restart).
    pub fn alive(&self) -> bool {
        if proc_start_time(self.init_pid) != Some(self.init_start) {
            return false;
        }
        let named = fs::inode(&Path::new("/run/netns").join(&self.plan.netns));
        let actual = fs::inode(Path::new(&format!("/proc/{}/ns/net", self.init_pid)));
        named.is_some() && named == actual
    }

    /// Adopts a jail from its stored state if it is still alive.
    pub fn adopt(state: Jail) -> Option<Jail> {
        state.alive().then_some(state)
    }

    /// Stops the jail and removes its namespaces, links, nft table and
    /// processes. `wipe` also deletes the per-claim data (release);
    /// without it the data directory stays for the next create.
    pub fn destroy(self, wipe: bool) -> Result<(), JailError> {
        let mut errors = Vec::new();
        let done = net::Done::all(self.link.clone());
        let cg = self.cgroup.as_ref();
        teardown(&self.plan, Some((self.init_pid, self.init_start)), cg, &done, wipe, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(JailError::Teardown(errors))
        }
    }
}

/// Makes the empty file systems a board's next claim will get (data and
/// nfsroot images), unless they exist, so that building its jail does not
/// wait for mkfs. Blocking; run while no jail of the board exists.
pub fn prepare_images(board: &str, index: u32, link: &Network, settings: &JailSettings) -> Result<(), JailError> {
    let plan = Plan::for_board(board, index, link, settings)?;
    let state = disk::state_dir(&plan.data_dir);
    if let Some(root) = state.parent().and_then(Path::parent) {
        disk::ensure_private_dir(root, 0o711)?;
    }
    if let Some(top) = state.parent() {
        disk::ensure_private_dir(top, 0o700)?;
    }
    disk::ensure_private_dir(&state, 0o700)?;
    disk::prepare(&fs::data_image(&plan), settings.data_size, 0)?;
    disk::prepare(&nfs::image(&plan), settings.nfsroot_size, plan.host_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self() {
        assert!(proc_start_time(i32::try_from(std::process::id()).unwrap()).is_some());
        assert!(proc_start_time(i32::MAX).is_none());
    }
}
