//! `[daemon]`: the socket, the state, who may do what, the connection
//! limits, and whether claims get jails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) socket: Option<Spanned<String>>,
    pub(super) socket_mode: Option<Spanned<String>>,
    pub(super) socket_group: Option<Spanned<String>>,
    pub(super) state: Option<Spanned<String>>,
    pub(super) log_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) admins: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) trusted_gateways: Vec<Spanned<String>>,
    pub(super) jail: Option<Spanned<String>>,
    pub(super) connections_per_user: Option<Spanned<i64>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
}

/// How a claim's jail is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailMode {
    /// No jail: claims carry `"jail": null`.
    None,
    /// Linux namespaces jail.
    Linux,
}

#[derive(Debug, Clone)]
pub struct Daemon {
    pub socket: PathBuf,
    /// Permission bits of the main socket.
    pub socket_mode: u32,
    /// Group owning the main socket, if any.
    pub socket_group: Option<String>,
    pub state: PathBuf,
    pub log_dir: PathBuf,
    pub admins: HashSet<String>,
    pub trusted_gateways: HashSet<String>,
    pub jail: JailMode,
    /// Connections one user (one uid on the main socket, one jail on its
    /// socket) may hold at once; trusted gateways, which carry many
    /// users, count only towards `max_connections`.
    pub connections_per_user: usize,
    /// Connections labd holds at once, all sockets together.
    pub max_connections: usize,
    /// A connection that sends no request for this long is closed (a
    /// console session or a request being answered is never idle).
    pub idle_timeout: Duration,
}

impl Daemon {
    /// The directory of a board's jail socket (`jail.sock`): next to the
    /// main socket, under `jail-sockets/BOARD`. The jail binds this
    /// directory, so a socket bound anew (labd restarted) appears in it.
    pub fn jail_socket_dir(&self, board: &str) -> PathBuf {
        let base = self.socket.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/run/boardlab"));
        base.join("jail-sockets").join(board)
    }
}

/// Defaults of the connection limits (see [`Daemon`]).
pub const DEFAULT_CONNECTIONS_PER_USER: usize = 64;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Validates `[daemon]`.
pub(super) fn validate(ctx: &mut Ctx<'_>, d: RawDaemon) -> Daemon {
    let path = |v: &Option<Spanned<String>>, def: &str| -> PathBuf {
        v.as_ref().map(|s| PathBuf::from(s.get_ref())).unwrap_or_else(|| PathBuf::from(def))
    };
    let socket = path(&d.socket, "/run/boardlab/labd.sock");
    let state = path(&d.state, "/var/lib/boardlab/state.db");
    let log_dir = path(&d.log_dir, "/var/log/boardlab");
    for (v, key) in [(&d.socket, "socket"), (&d.state, "state"), (&d.log_dir, "log_dir")] {
        if let Some(s) = v {
            if !Path::new(s.get_ref()).is_absolute() {
                ctx.err(&s.span(), format!("daemon.{key} must be an absolute path, not {:?}", s.get_ref()));
            }
        }
    }
    let socket_mode = match &d.socket_mode {
        None => 0o660,
        Some(s) => match u32::from_str_radix(s.get_ref().trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => m,
            _ => {
                ctx.err(
                    &s.span(),
                    format!("daemon.socket_mode {:?} is not an octal mode such as \"0660\"", s.get_ref()),
                );
                0o660
            }
        },
    };
    let jail = match d.jail.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("none", _)) => JailMode::None,
        Some(("linux", _)) => JailMode::Linux,
        Some((other, span)) => {
            ctx.err(&span, format!("daemon.jail {other:?} is not one of \"none\", \"linux\""));
            JailMode::None
        }
    };
    let names = |list: &[Spanned<String>], key: &str, ctx: &mut Ctx<'_>| -> HashSet<String> {
        let mut out = HashSet::new();
        for n in list {
            if !crate::ids::valid_user(n.get_ref()) {
                ctx.err(&n.span(), format!("daemon.{key}: {:?} is not a user name", n.get_ref()));
            } else {
                out.insert(n.get_ref().clone());
            }
        }
        out
    };
    let admins = names(&d.admins, "admins", ctx);
    let trusted_gateways = names(&d.trusted_gateways, "trusted_gateways", ctx);
    let count = |ctx: &mut Ctx<'_>, v: &Option<Spanned<i64>>, key: &str, default: usize, max: usize| match v {
        None => default,
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(x) if (1..=max).contains(&x) => x,
            _ => {
                ctx.err(&n.span(), format!("daemon.{key} ({}) must be between 1 and {max}", n.get_ref()));
                default
            }
        },
    };
    let connections_per_user =
        count(ctx, &d.connections_per_user, "connections_per_user", DEFAULT_CONNECTIONS_PER_USER, 1 << 20);
    let max_connections = count(ctx, &d.max_connections, "max_connections", DEFAULT_MAX_CONNECTIONS, 1 << 20);
    let idle_timeout = ctx.duration(&d.idle_timeout, "daemon.idle_timeout", DEFAULT_IDLE_TIMEOUT);
    Daemon {
        socket,
        socket_mode,
        socket_group: d.socket_group.map(|s| s.into_inner()),
        state,
        log_dir,
        admins,
        trusted_gateways,
        jail,
        connections_per_user,
        max_connections,
        idle_timeout,
    }
}
