//! The labd-to-labd channel, both ends. Every labd is a front door for the
//! whole lab: a request about another host's board (a claim of a class
//! only another host has free, a handle of a claim on another host) is
//! forwarded to that host over TLS with certificates on both sides, in
//! the user's name (`as`), and its answer (or console session) comes back
//! as it is. A forwarded request is always answered by the host it
//! reaches: it is never forwarded again.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use super::{read_line_limited, serve_lines, Front, Line, Peer};
use crate::actors::Identity;
use crate::cluster::view::Lookup;
use crate::protocol::{self, ApiError, Call, Code, MAX_LINE};

/// How long a peer may take to connect and shake hands.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// This labd's side of the channel: what it accepts and how it calls.
pub struct Peers {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
    /// Claims by handle, straight from etcd.
    pub lookup: Option<Lookup>,
    /// The lab's queues of waiting claims.
    pub queue: Option<crate::cluster::queue::Queue>,
    /// This host's name in the lab.
    pub me: String,
}

impl Peers {
    pub fn new(server: Arc<rustls::ServerConfig>, client: Arc<rustls::ClientConfig>, me: &str) -> Peers {
        Peers {
            acceptor: TlsAcceptor::from(server),
            connector: TlsConnector::from(client),
            lookup: None,
            queue: None,
            me: me.into(),
        }
    }
}

/// Takes other hosts' requests until `shutdown` turns true.
pub async fn serve(listener: TcpListener, front: Rc<Front>, mut shutdown: watch::Receiver<bool>) {
    let Some(peers) = front.peers.as_ref() else { return };
    let acceptor = peers.acceptor.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let (f, acceptor) = (front.clone(), acceptor.clone());
                    tokio::task::spawn_local(async move {
                        let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                            Ok(Ok(t)) => t,
                            Ok(Err(e)) => {
                                warn!(peer = %addr, "refused a peer: {e}");
                                return;
                            }
                            Err(_) => {
                                warn!(peer = %addr, "refused a peer: no TLS handshake within {HANDSHAKE:?}");
                                return;
                            }
                        };
                        let (r, w) = tokio::io::split(tls);
                        let reader = BufReader::with_capacity(16 * 1024, r);
                        if let Err(e) = serve_lines(reader, w, f, Peer::Remote, u32::MAX, addr.to_string(), None).await {
                            debug!(peer = %addr, "peer connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    warn!("peer accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

/// The identity of a forwarded request: the user the calling host names.
pub fn identity(front: &Front, on_behalf_of: Option<String>) -> Result<Identity, ApiError> {
    let Some(user) = on_behalf_of.filter(|u| crate::ids::valid_user(u)) else {
        return Err(ApiError::new(Code::BadRequest, "a request from another host must name its user (`as`)"));
    };
    let admin = user == "root" || front.cfg.daemon.admins.contains(&user);
    Ok(Identity { user, uid: u32::MAX, admin, jail_handle: None })
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Opens the channel to `host` at `addr` and sends `req` in `user`'s name.
async fn open(front: &Front, host: &str, addr: &str, req: &Value, user: &str) -> Result<Tls, ApiError> {
    let unreachable =
        |e: String| ApiError::new(Code::Unavailable, format!("host {host} cannot be reached at {addr}: {e}"));
    let Some(peers) = front.peers.as_ref() else {
        return Err(ApiError::new(Code::Internal, "this labd has no peer channel"));
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| unreachable(e.to_string()))?;
    let connect = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        peers.connector.connect(name, tcp).await
    };
    let mut tls = match tokio::time::timeout(HANDSHAKE, connect).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no answer within {HANDSHAKE:?}"))),
    };
    let mut req = req.clone();
    if let Some(m) = req.as_object_mut() {
        m.insert("as".into(), Value::String(user.to_string()));
    }
    let mut line = req.to_string();
    line.push('\n');
    tls.write_all(line.as_bytes()).await.map_err(|e| unreachable(e.to_string()))?;
    tls.flush().await.map_err(|e| unreachable(e.to_string()))?;
    Ok(tls)
}

/// One reply line from `r`.
async fn reply_line<R: AsyncBufRead + Unpin>(r: &mut R, host: &str) -> Result<String, ApiError> {
    let lost = |why: String| ApiError::new(Code::Unavailable, format!("host {host} did not answer: {why}"));
    let mut buf = Vec::new();
    match read_line_limited(r, &mut buf, MAX_LINE).await {
        Ok(Line::Complete) => String::from_utf8(buf).map_err(|_| lost("not UTF-8".into())),
        Ok(Line::Eof) => Err(lost("the connection closed".into())),
        Ok(Line::TooLong) => Err(lost("the reply is too long".into())),
        Err(e) => Err(lost(e.to_string())),
    }
}

/// A forwarded request without an answer: `sent` when `host` had it
/// whole and may have acted on it before its answer was lost.
pub struct Lost {
    pub error: ApiError,
    pub sent: bool,
}

/// `req` answered by `host`: its reply line, as it is.
pub async fn call(front: &Front, host: &str, addr: &str, req: &Value, user: &str) -> Result<String, ApiError> {
    call_or_lost(front, host, addr, req, user).await.map_err(|l| l.error)
}

/// `req` answered by `host`, or how it was lost: before `host` had it
/// (nothing done) or after (it may have been).
pub async fn call_or_lost(front: &Front, host: &str, addr: &str, req: &Value, user: &str) -> Result<String, Lost> {
    let tls = open(front, host, addr, req, user).await.map_err(|error| Lost { error, sent: false })?;
    let mut r = BufReader::new(tls);
    reply_line(&mut r, host).await.map_err(|error| Lost { error, sent: true })
}

/// A console on `host`: its reply, then the bytes both ways until either
/// side closes.
pub async fn console<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    front: &Front,
    host: &str,
    addr: &str,
    req: &Value,
    user: &str,
    reader: &mut BufReader<R>,
    w: &mut W,
) -> io::Result<Option<String>> {
    let tls = match open(front, host, addr, req, user).await {
        Ok(t) => t,
        Err(e) => return Ok(Some(protocol::err_reply(&req["id"], &e))),
    };
    let mut remote = BufReader::new(tls);
    let first = match reply_line(&mut remote, host).await {
        Ok(l) => l,
        Err(e) => return Ok(Some(protocol::err_reply(&req["id"], &e))),
    };
    let granted = serde_json::from_str::<Value>(&first).is_ok_and(|v| v["ok"] == true);
    if !granted {
        return Ok(Some(first));
    }
    w.write_all(first.as_bytes()).await?;
    w.write_all(b"\n").await?;
    w.flush().await?;
    // What the host sent after its reply, and what the user typed after
    // the request, go on first.
    let early_down = remote.buffer().to_vec();
    w.write_all(&early_down).await?;
    let early_up = reader.buffer().to_vec();
    let (mut rr, mut rw) = tokio::io::split(remote.into_inner());
    rw.write_all(&early_up).await?;
    {
        use tokio::io::AsyncBufReadExt;
        let n = reader.buffer().len();
        reader.consume(n);
    }
    let mut up = [0u8; 4096];
    let mut down = [0u8; 4096];
    loop {
        tokio::select! {
            n = reader.read(&mut up) => {
                let n = n?;
                if n == 0 {
                    return Ok(None);
                }
                rw.write_all(&up[..n]).await?;
                rw.flush().await?;
            }
            n = rr.read(&mut down) => {
                let n = n?;
                if n == 0 {
                    return Ok(None);
                }
                w.write_all(&down[..n]).await?;
                w.flush().await?;
            }
        }
    }
}

/// Where a handle's claim lives, when it is another host's: `Err` when
/// that host is not in the lab now, or etcd cannot say. A handle neither
/// this host nor the view knows is looked up in etcd (the view may lag a
/// claim made a moment ago through another host).
pub async fn remote_handle(front: &Front, handle: &str) -> Option<Result<Remote, ApiError>> {
    let lab = front.lab.as_ref()?.borrow().clone();
    if front.snapshots.borrow().rows().iter().any(|r| r.handle.as_deref() == Some(handle)) {
        return None;
    }
    let (board, host) = match lab.handles.get(handle) {
        Some(found) => found.clone(),
        None => {
            let peers = front.peers.as_ref()?;
            let lookup = peers.lookup.as_ref().filter(|_| crate::ids::valid_handle(handle))?;
            match lookup.find(handle).await {
                Ok(Some((board, host))) if host != peers.me => (board, host),
                Ok(_) => return None,
                Err(e) => {
                    return Some(Err(ApiError::new(
                        Code::Unavailable,
                        format!("the lab's shared state cannot be reached to find this claim: {e}"),
                    )))
                }
            }
        }
    };
    Some(match lab.peers.get(&host) {
        Some(addr) => Ok(Remote { addr: addr.clone(), host, board }),
        None => Err(ApiError::new(
            Code::Unavailable,
            format!("board {board} is on host {host}, which is not in the lab now; its claim is kept"),
        )),
    })
}

/// Another host's claim: where it lives, and its board.
pub struct Remote {
    pub host: String,
    pub addr: String,
    pub board: String,
}

/// The other hosts in the lab where `user` holds a board.
pub fn hosts_holding(front: &Front, user: &str) -> Vec<(String, String)> {
    let Some(lab) = front.lab.as_ref().map(|l| l.borrow().clone()) else { return Vec::new() };
    let mut hosts: Vec<String> =
        lab.rows.iter().filter(|r| r.user.as_deref() == Some(user)).map(|r| r.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    hosts.into_iter().filter_map(|h| lab.peers.get(&h).map(|a| (h.clone(), a.clone()))).collect()
}

/// The board an operator's call names (`maintenance`, `force-release`).
pub fn board_of(call: &Call) -> Option<&str> {
    match call {
        Call::Maintenance { board, .. }
        | Call::ForceRelease { board, .. }
        | Call::Selftest { board, .. }
        | Call::Health { board } => Some(board),
        // A board's history is in its own host's event log.
        Call::History(q) => q.board.as_deref(),
        _ => None,
    }
}

/// Where a board lives, when it is another host's: `Err` when that host
/// is not in the lab now.
pub fn remote_board(front: &Front, board: &str) -> Option<Result<Remote, ApiError>> {
    let lab = front.lab.as_ref()?.borrow().clone();
    let row = lab.rows.iter().find(|r| r.board == board)?;
    Some(match lab.peers.get(&row.host) {
        Some(addr) => Ok(Remote { host: row.host.clone(), addr: addr.clone(), board: board.to_string() }),
        None => Err(ApiError::new(
            Code::Unavailable,
            format!("board {board} is on host {}, which is not in the lab now", row.host),
        )),
    })
}

/// The other hosts to ask for a board of `class`, best first: those with
/// the most free boards of it, then those that have it at all (a claim
/// that waits). Empty when this host has one free or no other host has
/// the class.
pub fn claim_hosts(front: &Front, class: &str) -> Vec<(String, String)> {
    let Some(lab) = front.lab.as_ref().map(|l| l.borrow().clone()) else { return Vec::new() };
    let snap = front.snapshots.borrow().clone();
    if snap.rows().iter().any(|r| r.class == class && r.claimable) {
        return Vec::new();
    }
    let mut by: std::collections::BTreeMap<&str, (usize, usize)> = std::collections::BTreeMap::new();
    for r in lab.rows.iter().filter(|r| r.class == class && lab.peers.contains_key(&r.host)) {
        let e = by.entry(&r.host).or_default();
        e.0 += usize::from(r.claimable);
        e.1 += 1;
    }
    let mut hosts: Vec<(&str, (usize, usize))> = by.into_iter().collect();
    hosts.sort_by_key(|h| std::cmp::Reverse(h.1));
    let local_has_class = snap.rows().iter().any(|r| r.class == class);
    hosts
        .into_iter()
        // With none free anywhere, a claim that waits waits here if this
        // host has the class.
        .filter(|(_, (free, _))| *free > 0 || !local_has_class)
        .filter_map(|(h, _)| lab.peers.get(h).map(|a| (h.to_string(), a.clone())))
        .collect()
}

/// How the other hosts' boards of `class` are (`1 offline, 2 claimed`),
/// if the lab has any.
pub fn lab_class_summary(front: &Front, class: &str) -> Option<String> {
    let lab = front.lab.as_ref()?.borrow().clone();
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for r in lab.rows.iter().filter(|r| r.class == class) {
        let state = serde_json::from_str::<Value>(&r.json)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        *counts.entry(state).or_default() += 1;
    }
    (!counts.is_empty()).then(|| counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", "))
}

/// Logs where the peer channel listens.
pub fn announce(addr: &std::net::SocketAddr) {
    info!(peer_listen = %addr, "taking other hosts' requests");
}
