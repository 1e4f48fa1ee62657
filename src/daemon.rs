//! labd's life: load the configuration, open the state, read the switches,
//! start the actors and the socket, and stop cleanly on SIGTERM.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::actors::registry::{GetDump, Registry, StartWatchdog, StopAll};
use crate::claims::etcd::EtcdLedger;
use crate::claims::sqlite::SqliteLedger;
use crate::config::Config;
use crate::db::{Db, DbWriter};
use crate::metrics::Metrics;
use crate::power::walk_with_deadline;
use crate::protocol::PowerState;
use crate::server;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Registry(#[from] crate::actors::registry::RegistryError),
    #[error(transparent)]
    Bind(#[from] server::BindError),
    #[error("the registry actor died")]
    RegistryDied,
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("joining the lab: {0}")]
    Join(#[from] crate::cluster::JoinError),
    #[error("the peer channel: {0}")]
    Peer(String),
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
}

/// Raises the open-file limit to its hard maximum: a large lab holds a
/// socket per board and per client.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            warn!("cannot raise the open-file limit: {e}");
        }
    }
}

/// Reads every used switch's port table at once, so boards start with their
/// real power state. A switch that does not answer leaves its boards to
/// probe it themselves.
async fn initial_power(cfg: &Config) -> HashMap<String, PowerState> {
    let mut used: Vec<&str> = cfg.boards.iter().map(|b| b.switch.as_str()).collect();
    used.sort_unstable();
    used.dedup();
    let walks = used.iter().filter_map(|name| cfg.switches.get(*name)).map(|sw| {
        let sw = Arc::new(sw.clone());
        let deadline = sw.timeout * (sw.retries + 1) * 4;
        async move { (sw.name.clone(), walk_with_deadline(sw, deadline).await) }
    });
    let mut by_port = HashMap::new();
    for (name, res) in futures::future::join_all(walks).await {
        match res {
            Ok(table) => {
                for ((g, p), s) in table {
                    by_port.insert((name.clone(), g, p), s);
                }
            }
            Err(e) => warn!(switch = %name, "cannot read the port table at start: {e}"),
        }
    }
    cfg.boards
        .iter()
        .filter_map(|b| by_port.get(&(b.switch.clone(), b.group, b.port)).map(|s| (b.name.clone(), (*s).into())))
        .collect()
}

/// The host interfaces that are board links (dedicated interfaces; a
/// VLAN sub-interface exists only while its jail does).
fn board_links(cfg: &Config) -> Vec<String> {
    cfg.boards
        .iter()
        .filter_map(|b| match &b.network {
            Some(crate::config::Network::Interface(n)) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    let t0 = Instant::now();
    // Whatever starts labd (systemd sets UMask=0077, a shell may not),
    // what it makes is its own unless it says otherwise.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    raise_nofile();
    // labd's directories are root's alone, except where someone must walk
    // through: to the socket (users), and to the jails' root_dir (each
    // jail's init finds its root's mount point under it).
    let socket_dir = cfg.daemon.socket.parent().map(std::path::Path::to_path_buf);
    let jails = (cfg.daemon.jail == crate::config::JailMode::Linux).then(|| cfg.jail.settings.root_dir.clone());
    let walk_through = |dir: &std::path::Path| {
        socket_dir.as_deref() == Some(dir) || jails.as_deref().is_some_and(|r| r.starts_with(dir))
    };
    let log_dir = &cfg.daemon.log_dir;
    let walk = walk_through(log_dir);
    if let Err(e) = std::fs::create_dir_all(log_dir).and_then(|()| crate::db::private_dir(log_dir, walk)) {
        warn!("securing the log directory {}: {e}", log_dir.display());
    }
    if cfg.daemon.jail == crate::config::JailMode::Linux {
        // Jail data: walk-through only; each claim's directory is 0700.
        let r = &cfg.jail.settings.root_dir;
        if let Err(e) = crate::jail::disk::ensure_private_dir(r, 0o711) {
            warn!("securing the jails' root_dir {}: {e}", r.display());
        }
        if cfg.jail.keep_host_key && cfg.jail.host_ca.is_some() {
            // The certificate is public (sshd shows it to anyone), so an
            // earlier claimant holding the board's kept key can present
            // the next claim's certificate (SECURITY.md).
            warn!(
                "[jail] keep_host_key with host_ca: every claimant of a board holds its host key, so a former \
                 claimant can pass for a later claim's jail; certificates protect users only with a fresh key per claim"
            );
        }
    }
    let cfg = Arc::new(cfg);
    let db = Db::open(&cfg.daemon.state)?;
    if let Some(dir) = cfg.daemon.state.parent() {
        if let Err(e) = crate::db::private_dir(dir, walk_through(dir)) {
            warn!("securing the state directory {}: {e}", dir.display());
        }
    }
    // The page's port, before anything is changed on the host: a port in
    // use stops labd here (after the state's lock, which names a running
    // labd more clearly).
    let web_listener = cfg.web.as_ref().map(crate::web::bind).transpose()?;
    let power = initial_power(&cfg).await;
    // Unclaimed board links are dropped by the host from the start; each
    // board actor parks its link (down, IPv6 off) as it starts.
    let links = board_links(&cfg);
    if !links.is_empty() {
        match crate::link::install_table(&links) {
            Ok(()) => {
                info!(links = links.len(), "board links filtered while parked (nft table {})", crate::link::TABLE)
            }
            Err(e) => error!("cannot install the nft table for parked board links: {e}"),
        }
    }
    let writer = DbWriter::start(db.clone())?;
    // The peer channel's credentials are checked before joining the lab.
    let peer_tls = match &cfg.cluster {
        None => None,
        Some(cl) => {
            let server = crate::cluster::tls::server(&cl.peer).map_err(StartError::Peer)?;
            let client = crate::cluster::tls::client(&cl.peer).map_err(StartError::Peer)?;
            let listener = tokio::net::TcpListener::bind(cl.peer.listen)
                .await
                .map_err(|e| StartError::Peer(format!("listening on {}: {e}", cl.peer.listen)))?;
            Some((server::peer::Peers::new(server, client, &cl.host), listener))
        }
    };
    // Claims are kept in the host's own database, or in the lab's etcd.
    let member = match &cfg.cluster {
        None => None,
        Some(cl) => {
            let boards: Vec<(String, String)> = cfg.boards.iter().map(|b| (b.name.clone(), b.class.clone())).collect();
            // With jails, their address pools: the lab's hosts must not share one.
            let mut pools: Vec<(String, ipnet::IpNet)> = Vec::new();
            if cfg.daemon.jail == crate::config::JailMode::Linux {
                let p = cfg.jail.settings.pool;
                if let Ok(v4) = ipnet::Ipv4Net::new(p.network(), p.prefix()) {
                    pools.push(("jail.pool".into(), ipnet::IpNet::V4(v4)));
                }
                if let Some(v6) = &cfg.jail.settings.ipv6 {
                    pools.push(("jail.ipv6_pool".into(), ipnet::IpNet::V6(v6.pool)));
                }
            }
            Some(crate::cluster::Member::join(cl, &boards, &pools).await?)
        }
    };
    let ledger: Arc<dyn crate::claims::Ledger> = match (&cfg.cluster, &member) {
        (Some(cl), Some(m)) => Arc::new(EtcdLedger::new(m.client(), &cl.prefix, &cl.host, cl.timeout, writer.clone())),
        _ => Arc::new(SqliteLedger::new(writer.clone())),
    };
    // labd's one metrics registry: the counters are handed down from here.
    let mut prometheus = prometheus_client::registry::Registry::with_prefix(crate::metrics::PREFIX);
    let metrics = Arc::new(Metrics::new(&cfg, &mut prometheus));
    let registry = match Registry::new(cfg.clone(), db, writer, ledger, power, metrics.clone()).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(m) = &member {
                m.leave().await;
            }
            return Err(e.into());
        }
    };
    let snapshots = registry.snapshots();
    let registry = registry.start();
    let listener = server::bind(&cfg.daemon.socket, cfg.daemon.socket_mode, cfg.daemon.socket_group.as_deref())?;
    server::announce(&cfg.daemon.socket);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let lab = match (&member, &cfg.cluster) {
        (Some(m), Some(cl)) => Some(m.start_view(&cl.prefix, snapshots.clone())),
        _ => None,
    };
    if let Some(view) = &lab {
        // The per-user limits count claims on every host.
        registry.do_send(crate::actors::registry::FollowLab(view.clone()));
    }
    let (peers, peer_listener) = match peer_tls {
        Some((mut p, l)) => {
            p.lookup = member.as_ref().map(|m| m.lookup());
            p.queue = member.as_ref().map(|m| m.queue());
            if let Some(q) = &p.queue {
                tokio::task::spawn_local(q.clone().sweep_own(std::time::Duration::from_secs(5)));
            }
            (Some(p), Some(l))
        }
        None => (None, None),
    };
    let front = server::Front::new(registry.clone(), cfg.clone(), snapshots.clone(), lab, peers, metrics);
    prometheus.register_collector(Box::new(crate::web::LabCollector::new(snapshots.clone())));
    let web = match (&cfg.web, web_listener) {
        (Some(w), Some(l)) => {
            let host = cfg.cluster.as_ref().map(|c| c.host.clone());
            match crate::web::start(l, w, registry.clone(), snapshots.clone(), Arc::new(prometheus), host) {
                Ok(s) => Some(s),
                Err(e) => {
                    if let Some(m) = &member {
                        m.leave().await;
                    }
                    let _ = std::fs::remove_file(&cfg.daemon.socket);
                    return Err(e.into());
                }
            }
        }
        _ => None,
    };
    let peering = peer_listener.map(|l| {
        if let Some(cl) = &cfg.cluster {
            server::peer::announce(&cl.peer.listen);
        }
        tokio::task::spawn_local(server::peer::serve(l, front.clone(), stop_rx.clone()))
    });
    let jail_sockets = (cfg.daemon.jail == crate::config::JailMode::Linux)
        .then(|| tokio::task::spawn_local(server::jail_sockets::run(front.clone(), snapshots)));
    let serving = tokio::task::spawn_local(server::serve(listener, front, stop_rx));
    info!(boards = cfg.boards.len(), ms = t0.elapsed().as_millis() as u64, "labd ready");
    crate::systemd::ready(&format!("{} boards", cfg.boards.len()));
    if let Some(every) = crate::systemd::watchdog_interval() {
        registry.do_send(StartWatchdog { every });
    }

    let mut term = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(StartError::Signals)?;
    let mut watchdog = tokio::time::interval(Duration::from_millis(500));
    let mut failed = false;
    loop {
        tokio::select! {
            _ = watchdog.tick() => if !registry.connected() {
                // The registry is the root of the supervision tree; without
                // it nothing can be served. Exit so the service manager
                // restarts labd, which recovers everything from SQLite.
                error!("the registry actor died; exiting");
                failed = true;
                break;
            },
            _ = term.recv() => { info!("SIGTERM: stopping; claims stay in the state database"); break; }
            _ = int.recv() => { info!("SIGINT: stopping; claims stay in the state database"); break; }
            _ = usr1.recv() => match registry.send(GetDump).await {
                Ok(d) => info!(target: "labd::dump", "status dump: {}", serde_json::to_string(&d).unwrap_or_default()),
                Err(e) => error!("status dump failed: {e}"),
            },
        }
    }
    crate::systemd::stopping();
    let _ = stop_tx.send(true);
    if let Some(w) = web {
        w.stop().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    if let Some(j) = jail_sockets {
        j.abort();
    }
    if let Some(p) = peering {
        p.abort();
    }
    if !failed {
        // Jails are stopped (their data kept): nothing of them outlives
        // labd; the next start rebuilds the jails of live claims.
        if tokio::time::timeout(Duration::from_secs(60), registry.send(StopAll)).await.is_err() {
            warn!("boards did not stop their jails within 60 s");
        }
    }
    if !links.is_empty() {
        // The links stay down with IPv6 off while labd is away.
        if let Err(e) = crate::link::remove_from_table(&links) {
            warn!("removing the board links from the nft table {}: {e}", crate::link::TABLE);
        }
    }
    if let Some(m) = &member {
        m.leave().await;
    }
    if let Err(e) = std::fs::remove_file(&cfg.daemon.socket) {
        warn!("removing {}: {e}", cfg.daemon.socket.display());
    }
    if failed {
        return Err(StartError::RegistryDied);
    }
    Ok(())
}
