//! The JSON-lines socket front end.
//!
//! One task per connection reads request lines (at most 64 KiB each),
//! establishes who is asking from the kernel (SO_PEERCRED), and passes each
//! request to the registry, answering in order. A bad line gets an error
//! reply and the connection stays open; only an over-long line closes it,
//! since the rest of that line cannot be trusted to be a request boundary.
//! A `console` request turns the connection into a raw byte stream (see
//! [`console::session`]).

mod console;
pub mod jail_sockets;
mod lab_wait;
pub mod peer;
mod routing;

use routing::{routed, with_other_hosts};

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use actix::Addr;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::actors::registry::{Exec, Registry, Snapshot};
use crate::actors::Identity;
use crate::cluster::view::LabView;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::{self, ApiError, Call, Code, KnownHostsView, MAX_LINE};

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another labd is already listening on {0}")]
    InUse(PathBuf),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("socket group {0:?} does not exist")]
    NoGroup(String),
}

/// Binds the main socket with the configured mode and group. A stale socket
/// file from a killed labd is replaced; a live one is an error.
pub fn bind(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, BindError> {
    let io_err = |what, source| BindError::Io { what, path: path.to_path_buf(), source };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|e| io_err("removing the stale socket", e))?;
    }
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|e| io_err("creating the socket directory for", e))?;
            // Users must reach the socket (labd runs with umask 077); the
            // socket's own mode and group say who may use it.
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_err("setting the mode of the socket directory for", e))?;
        }
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| io_err("binding", e))?;
    std_listener.set_nonblocking(true).map_err(|e| io_err("configuring", e))?;
    if let Some(g) = group {
        let gid = nix::unistd::Group::from_name(g).ok().flatten().ok_or_else(|| BindError::NoGroup(g.to_string()))?.gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| io_err("setting the group of", e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("setting the mode of", e))?;
    UnixListener::from_std(std_listener).map_err(|e| io_err("registering", e))
}

/// What every connection handler shares.
pub struct Front {
    pub registry: Addr<Registry>,
    pub cfg: Arc<Config>,
    /// The lab as the registry last published it: `status` and `classes`
    /// are answered from it without asking the registry.
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The other hosts' boards, in a lab of several hosts.
    lab: Option<watch::Receiver<Arc<LabView>>>,
    /// The channel to and from the other hosts.
    peers: Option<peer::Peers>,
    /// uid → user name; NSS lookups can be slow, users rarely change.
    names: RefCell<HashMap<u32, String>>,
    /// Open connections, so that no one peer can take every descriptor
    /// labd has (all connection tasks run on one thread: a RefCell).
    conns: RefCell<Conns>,
    /// Requests counted for `/metrics`.
    metrics: Arc<Metrics>,
}

/// Who a connection counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ConnKey {
    Uid(u32),
    Jail(String),
    /// A user a trusted gateway speaks for (`as`): ssh users, one
    /// connection a session.
    Through(String),
}

#[derive(Default)]
struct Conns {
    total: usize,
    by_key: HashMap<ConnKey, usize>,
}

/// A connection's place in the counts, given back when it closes.
struct ConnSlot {
    front: Rc<Front>,
    key: Option<ConnKey>,
    /// Counted in `max_connections` too (a connection's own slot; not the
    /// slot its gateway's user takes on it).
    total: bool,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self.front.conns.borrow_mut();
        if self.total {
            c.total = c.total.saturating_sub(1);
        }
        if let Some(k) = &self.key {
            if let Some(n) = c.by_key.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    c.by_key.remove(k);
                }
            }
        }
    }
}

impl Front {
    pub fn new(
        registry: Addr<Registry>,
        cfg: Arc<Config>,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        lab: Option<watch::Receiver<Arc<LabView>>>,
        peers: Option<peer::Peers>,
        metrics: Arc<Metrics>,
    ) -> Rc<Self> {
        Rc::new(Front {
            registry,
            cfg,
            snapshots,
            lab,
            peers,
            names: RefCell::new(HashMap::new()),
            conns: RefCell::default(),
            metrics,
        })
    }

    /// Counts one answer to a request for `/metrics`: `line` is the reply
    /// written (`ok_head` how a success to this request begins).
    fn count(&self, function: &'static str, ok_head: &str, line: &str) {
        self.metrics.requests.count(function, protocol::reply_outcome(ok_head, line));
    }

    /// Takes a connection's place, or says why there is none: labd's own
    /// limit, or the peer's (`key`: None for root and trusted gateways,
    /// which count only towards the total; a gateway's users take places
    /// of their own, [`Front::admit_through`]).
    fn admit(self: &Rc<Self>, key: Option<ConnKey>) -> Result<ConnSlot, ApiError> {
        let d = &self.cfg.daemon;
        let mut c = self.conns.borrow_mut();
        if c.total >= d.max_connections {
            return Err(ApiError::new(
                Code::Busy,
                format!("labd holds {} connections, its limit (daemon.max_connections); try again shortly", c.total),
            ));
        }
        if let Some(k) = &key {
            Self::take_place(&mut c, k, d.connections_per_user)?;
        }
        c.total += 1;
        Ok(ConnSlot { front: self.clone(), key, total: true })
    }

    /// A gateway's connection speaks for `user` (`as`): it takes one of
    /// that user's places too, so that one ssh user's many sessions
    /// cannot take every connection labd has.
    fn admit_through(self: &Rc<Self>, user: &str) -> Result<ConnSlot, ApiError> {
        let key = ConnKey::Through(user.to_string());
        Self::take_place(&mut self.conns.borrow_mut(), &key, self.cfg.daemon.connections_per_user)?;
        Ok(ConnSlot { front: self.clone(), key: Some(key), total: false })
    }

    /// One of `key`'s `limit` places, or why there is none.
    fn take_place(c: &mut Conns, key: &ConnKey, limit: usize) -> Result<(), ApiError> {
        let n = c.by_key.get(key).copied().unwrap_or(0);
        if n >= limit {
            let (who, via) = match key {
                ConnKey::Uid(_) => ("you hold".to_string(), ""),
                ConnKey::Jail(_) => ("this jail holds".to_string(), ""),
                ConnKey::Through(u) => (format!("{u} holds"), " through the gateway"),
            };
            return Err(ApiError::new(
                Code::Busy,
                format!(
                    "{who} {n} connections to labd{via}, the limit (daemon.connections_per_user); close some and try again"
                ),
            ));
        }
        *c.by_key.entry(key.clone()).or_default() += 1;
        Ok(())
    }

    fn user_name(&self, uid: u32) -> String {
        if let Some(n) = self.names.borrow().get(&uid) {
            return n.clone();
        }
        let name = match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => u.name,
            // A uid with no account still gets a stable, unforgeable name
            // that can never match a configured admin.
            _ => format!("#{uid}"),
        };
        self.names.borrow_mut().insert(uid, name.clone());
        name
    }

    /// The identity a request acts as.
    fn identity(&self, uid: u32, peer: &str, on_behalf_of: Option<String>) -> Result<Identity, ApiError> {
        let user = match on_behalf_of {
            Some(name) if self.cfg.daemon.trusted_gateways.contains(peer) => {
                if !crate::ids::valid_user(&name) {
                    return Err(ApiError::new(Code::BadRequest, "`as` is not a valid user name"));
                }
                name
            }
            // Only trusted gateways may speak for others; from anyone else
            // the field is ignored, as the contract says.
            _ => peer.to_string(),
        };
        let admin = user == "root" || self.cfg.daemon.admins.contains(&user);
        Ok(Identity { user, uid, admin, jail_handle: None })
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(listener: UnixListener, front: Rc<Front>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let f = front.clone();
                    tokio::task::spawn_local(async move {
                        if let Err(e) = connection(stream, f, Peer::Host).await {
                            debug!("connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

/// Binds a jail's socket at `path` (its directory is root's alone; the
/// file itself is bind-mounted into the jail, whose root must be able to
/// connect) and serves it until the returned handle is aborted.
pub fn serve_jail(
    front: Rc<Front>,
    path: &Path,
    user: String,
    handle: String,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let io_err = |what, source| BindError::Io { what, path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        crate::jail::socket_dir(dir).map_err(|e| io_err("preparing the jail socket directory for", e))?;
    }
    let _ = std::fs::remove_file(path);
    let std_listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| io_err("binding", e))?;
    std_listener.set_nonblocking(true).map_err(|e| io_err("configuring", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| io_err("setting the mode of", e))?;
    let listener = UnixListener::from_std(std_listener).map_err(|e| io_err("registering", e))?;
    let kind = Peer::Jail { user, handle };
    Ok(tokio::task::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let (f, k) = (front.clone(), kind.clone());
                    tokio::task::spawn_local(async move {
                        if let Err(e) = connection(stream, f, k).await {
                            debug!("jail connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    warn!("jail socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }))
}

enum Line {
    Complete,
    TooLong,
    Eof,
}

/// Reads up to and excluding the next newline into `buf`, refusing lines
/// longer than `max` without buffering more than `max` bytes.
async fn read_line_limited<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() { Line::Eof } else { Line::Complete });
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            if buf.len() + i > max {
                return Ok(Line::TooLong);
            }
            buf.extend_from_slice(&avail[..i]);
            r.consume(i + 1);
            return Ok(Line::Complete);
        }
        let n = avail.len();
        if buf.len() + n > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(avail);
        r.consume(n);
    }
}

/// Who a connection speaks for.
#[derive(Clone)]
enum Peer {
    /// The main socket: the peer's own uid, mapped to a user name.
    Host,
    /// A jail's socket: whoever connects is the board's claimant, acting
    /// on the board's own claim only.
    Jail { user: String, handle: String },
    /// Another host of the lab (TLS, its certificate checked): acts as
    /// the user it names, and is never forwarded further.
    Remote,
}

async fn connection(stream: UnixStream, front: Rc<Front>, kind: Peer) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let uid = cred.uid();
    let peer = match &kind {
        Peer::Host => front.user_name(uid),
        Peer::Jail { user, .. } => user.clone(),
        Peer::Remote => String::new(),
    };
    let key = match &kind {
        Peer::Host if uid == 0 || front.cfg.daemon.trusted_gateways.contains(&peer) => None,
        Peer::Host => Some(ConnKey::Uid(uid)),
        Peer::Jail { handle, .. } => Some(ConnKey::Jail(handle.clone())),
        Peer::Remote => None,
    };
    let (r, w) = stream.into_split();
    // A client that does not read what it asked for (its socket's buffer
    // full) is closed after idle_timeout, like one that asks nothing: it
    // would hold its connection, and its place in the caps, for good.
    let mut w = tokio_io_timeout::TimeoutWriter::new(w);
    w.set_timeout(Some(front.cfg.daemon.idle_timeout));
    serve_lines(BufReader::with_capacity(16 * 1024, r), Box::pin(w), front, kind, uid, peer, key).await
}

/// The requests of one connection, a line each, until it closes or idles
/// out (or becomes a console session).
async fn serve_lines<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut reader: BufReader<R>,
    mut w: W,
    front: Rc<Front>,
    kind: Peer,
    uid: u32,
    peer: String,
    key: Option<ConnKey>,
) -> io::Result<()> {
    let _slot = match front.admit(key) {
        Ok(s) => s,
        Err(e) => {
            let mut out = protocol::err_reply(&Value::Null, &e);
            out.push('\n');
            let _ = w.write_all(out.as_bytes()).await;
            let _ = w.flush().await;
            return Ok(());
        }
    };
    let idle = front.cfg.daemon.idle_timeout;
    let gateway = matches!(kind, Peer::Host) && front.cfg.daemon.trusted_gateways.contains(&peer);
    // The users a gateway's connection spoke for, each holding a place.
    let mut through: Vec<(String, ConnSlot)> = Vec::new();
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        let line = match tokio::time::timeout(idle, read_line_limited(&mut reader, &mut buf, MAX_LINE)).await {
            Ok(l) => l?,
            Err(_) => {
                let e = ApiError::new(
                    Code::Timeout,
                    format!("no request for {} (daemon.idle_timeout); closing", crate::util::format_duration(idle)),
                );
                let mut out = protocol::err_reply(&Value::Null, &e);
                out.push('\n');
                let _ = w.write_all(out.as_bytes()).await;
                let _ = w.flush().await;
                return Ok(());
            }
        };
        match line {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                let e = ApiError::new(Code::BadRequest, format!("request line longer than {MAX_LINE} bytes; closing"));
                let mut out = protocol::err_reply(&Value::Null, &e);
                out.push('\n');
                w.write_all(out.as_bytes()).await?;
                let _ = w.flush().await;
                return Ok(());
            }
            Line::Complete => {}
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let parsed = match std::str::from_utf8(&buf) {
            Err(_) => Err((Value::Null, ApiError::new(Code::BadRequest, "request is not UTF-8"))),
            Ok(line) => protocol::parse_request(line).and_then(|req| {
                let id = req.id.clone();
                match &kind {
                    Peer::Host => front.identity(uid, &peer, req.on_behalf_of.clone()),
                    Peer::Remote => peer::identity(&front, req.on_behalf_of.clone()),
                    // `as` means nothing inside a jail, and a jail is never
                    // an operator, whoever its claimant is.
                    Peer::Jail { user, handle } => {
                        Ok(Identity { user: user.clone(), uid, admin: false, jail_handle: Some(handle.clone()) })
                    }
                }
                .map(|who| (req, who))
                .map_err(|e| (id, e))
            }),
        };
        // What `/metrics` counts this request as, and how its success
        // reply begins.
        let (function, ok_head) = match &parsed {
            Ok((req, _)) => (req.call.name(), protocol::ok_reply_head(&req.id)),
            Err((id, _)) => ("invalid", protocol::ok_reply_head(id)),
        };
        if let Ok((req, who)) = &parsed {
            if gateway && req.on_behalf_of.is_some() && !through.iter().any(|(u, _)| *u == who.user) {
                match front.admit_through(&who.user) {
                    Ok(slot) => through.push((who.user.clone(), slot)),
                    Err(e) => {
                        let mut out = protocol::err_reply(&req.id, &e);
                        front.count(function, &ok_head, &out);
                        out.push('\n');
                        let _ = w.write_all(out.as_bytes()).await;
                        let _ = w.flush().await;
                        return Ok(());
                    }
                }
            }
        }
        let mut out = match parsed {
            Err((id, e)) => protocol::err_reply(&id, &e),
            Ok((req, who)) => match req.call {
                Call::Console { handle, read_only } => {
                    let remote = match (&kind, handle.as_deref()) {
                        (Peer::Host, Some(h)) => peer::remote_handle(&front, h).await,
                        _ => None,
                    };
                    if let Some(target) = remote {
                        let mut out = match target {
                            Err(e) => protocol::err_reply(&req.id, &e),
                            Ok(peer::Remote { host, addr, .. }) => {
                                let raw = serde_json::from_slice::<Value>(&buf).unwrap_or(Value::Null);
                                match peer::console(&front, &host, &addr, &raw, &who.user, &mut reader, &mut w).await? {
                                    None => {
                                        front.count(function, &ok_head, &ok_head);
                                        return Ok(());
                                    }
                                    Some(refused) => refused,
                                }
                            }
                        };
                        front.count(function, &ok_head, &out);
                        out.push('\n');
                        w.write_all(out.as_bytes()).await?;
                        w.flush().await?;
                        continue;
                    }
                    match console::open(&front.registry, who, handle, read_only).await {
                        Ok(grant) => {
                            front.count(function, &ok_head, &ok_head);
                            return console::session(grant, req.id, reader, w, &front.registry).await;
                        }
                        Err(e) => protocol::err_reply(&req.id, &e),
                    }
                }
                Call::Status { mine } => {
                    // The big answer is written from the snapshot's own
                    // text: no copy of it per request.
                    let snap = front.snapshots.borrow().clone();
                    let head = protocol::ok_reply_head(&req.id);
                    w.write_all(head.as_bytes()).await?;
                    // A claimant's own handles, in `status --mine` on the
                    // main socket only: never to a jail, never in anyone
                    // else's status.
                    let handles = mine && matches!(kind, Peer::Host);
                    let local = if mine { snap.of_user(&who.user, handles).into() } else { snap.all() };
                    match front.lab.as_ref().map(|l| l.borrow().clone()) {
                        None => w.write_all(local.as_bytes()).await?,
                        Some(lab) => {
                            let mine = mine.then_some(who.user.as_str());
                            w.write_all(with_other_hosts(&local, &lab, mine, handles).as_bytes()).await?
                        }
                    }
                    w.write_all(b"}\n").await?;
                    w.flush().await?;
                    front.count(function, &ok_head, &ok_head);
                    continue;
                }
                Call::Classes { available } => {
                    let classes = match front.lab.as_ref().map(|l| l.borrow().clone()) {
                        None => front.snapshots.borrow().classes(available),
                        Some(lab) => lab.add_classes(front.snapshots.borrow().classes(false), available),
                    };
                    protocol::ok_reply(&req.id, &classes)
                }
                Call::KnownHosts => match &front.cfg.jail.host_ca {
                    Some(ca) => protocol::ok_reply(&req.id, &KnownHostsView { known_hosts: ca.known_hosts_line() }),
                    None => protocol::err_reply(&req.id, &no_host_ca()),
                },
                call if matches!(kind, Peer::Host) && front.lab.is_some() => {
                    let raw = serde_json::from_slice::<Value>(&buf).unwrap_or(Value::Null);
                    routed(&front, who, req.id, call, raw).await
                }
                call => answer(&front, who, req.id, call).await,
            },
        };
        front.count(function, &ok_head, &out);
        out.push('\n');
        w.write_all(out.as_bytes()).await?;
        // A no-op on a Unix socket; a TLS stream sends its record now.
        w.flush().await?;
    }
}

/// `known_hosts` in a lab without `[jail] host_ca`.
fn no_host_ca() -> ApiError {
    ApiError::new(
        Code::BadRequest,
        "this lab has no SSH host CA ([jail] host_ca): trust each jail by the `host_key` line of its claim reply",
    )
}

async fn answer(front: &Front, who: Identity, id: Value, call: Call) -> String {
    let res = match front.registry.send(Exec { who, call }).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::new(Code::Internal, format!("registry unavailable: {e}"))),
    };
    match res {
        Ok(v) => protocol::ok_reply(&id, &v),
        Err(e) => protocol::err_reply(&id, &e),
    }
}

/// Logs where the socket is, once bound.
pub fn announce(path: &Path) {
    info!(socket = %path.display(), "listening");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn line_limit() {
        let data = b"abc\nxyz".to_vec();
        let mut r = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).await.unwrap(), Line::Complete));
        assert_eq!(buf, b"abc");
        buf.clear();
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).await.unwrap(), Line::Complete));
        assert_eq!(buf, b"xyz");
        buf.clear();
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).await.unwrap(), Line::Eof));
        let long = [b'a'; 100];
        let mut r = BufReader::with_capacity(8, &long[..]);
        let mut buf = Vec::new();
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).await.unwrap(), Line::TooLong));
        assert!(buf.len() <= 10);
    }
}
