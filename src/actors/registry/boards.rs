//! The board actors: started under a supervisor each, restarted alone
//! when they fail, and listened to (power, health, console, jail).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{error, info, warn};

use super::Registry;
use crate::actors::board::{BoardActor, BoardParts, JailCtx, Shutdown};
use crate::config::{Config, JailMode};
use crate::console::ConsoleSettings;
use crate::db::{Db, DbError};
use crate::jail::cgroup::Hierarchy;
use crate::jail::JailSettings;
use crate::link::LinkId;
use crate::protocol::{ConsoleState, JailInfo, PowerState};

/// What every board's jails share, found once at start.
pub(super) struct JailShared {
    /// The jails' settings, with the switches' addresses added to the
    /// destinations jails may never reach.
    settings: JailSettings,
    /// Jails built at once, shared by every board (`[jail] parallel_builds`).
    builds: Arc<tokio::sync::Semaphore>,
    /// Where jail cgroups go on this host.
    cgroups: Hierarchy,
    /// Board name → jail index (its addresses and uids derive from it).
    indexes: HashMap<String, u32>,
    /// Board name → its link's identity as last recorded.
    link_ids: HashMap<String, LinkId>,
}

impl JailShared {
    pub(super) fn new(cfg: &Config, db: &Db) -> Result<JailShared, DbError> {
        let link_ids = db
            .link_ids()?
            .into_iter()
            .filter_map(|(b, json)| serde_json::from_str(&json).ok().map(|id| (b, id)))
            .collect();
        Ok(JailShared {
            settings: jail_settings(cfg),
            builds: Arc::new(tokio::sync::Semaphore::new(cfg.jail.parallel_builds)),
            cgroups: jail_cgroups(cfg),
            indexes: db.jail_indexes()?,
            link_ids,
        })
    }
}

impl Registry {
    pub(super) fn spawn_board(&mut self, name: &str, ctx: &mut Context<Self>) -> Option<Addr<BoardActor>> {
        let socket_dir = self.cfg.daemon.jail_socket_dir(name);
        let claim = self.book.claim_of(name).cloned();
        let jail_record = self.boot.jails.remove(name);
        let initial_power = self.boot.initial_power.remove(name);
        // An unclaimed board is off: whatever a labd killed mid-way left
        // on (a release whose power-off never happened, a claim undone
        // after its power-on) is switched off once the port is read. A
        // board in maintenance is left as it is: an operator may be at it.
        let owe_off = claim.is_none() && !self.book.maintenance(name);
        let jail_ctx = match (self.cfg.daemon.jail, self.jails.indexes.get(name)) {
            (JailMode::Linux, Some(&index)) => Some(Arc::new(JailCtx {
                settings: self.jails.settings.clone(),
                index,
                keys_dir: self.cfg.jail.keys_dir.clone(),
                keep_host_key: self.cfg.jail.keep_host_key,
                host_ca: self.cfg.jail.host_ca.clone(),
                labcli: labcli_path(),
                socket_dir,
                build_delay: build_delay(),
                builds: self.jails.builds.clone(),
                cgroups: self.jails.cgroups.clone(),
            })),
            _ => None,
        };
        let link_id = self.jails.link_ids.get(name).cloned();
        let (policy, db, writer, me) = (self.cfg.power, self.jail_db.clone(), self.db.clone(), ctx.address());
        let e = self.boards.get_mut(name)?;
        let console = e.cfg.console.as_ref().map(|c| ConsoleSettings {
            board: e.cfg.name.clone(),
            source: c.source.clone(),
            baud: c.baud,
            log_dir: self.cfg.daemon.log_dir.clone(),
            log_max_bytes: self.cfg.console.log_max_bytes,
            log_keep: self.cfg.console.log_keep,
            metrics: self.metrics.console(&e.cfg.name),
        });
        let parts = BoardParts {
            cfg: e.cfg.clone(),
            switch: e.switch.clone(),
            switch_limit: e.switch_limit.clone(),
            policy,
            db,
            events: writer,
            registry: me,
            initial_power,
            owe_off,
            console,
            jail_ctx,
            link_id,
            claim,
            jail_record,
            metrics: self.metrics.clone(),
            sd_wipe: self.cfg.storage.wipe_on_release,
        };
        let addr = Supervisor::start(move |_| BoardActor::new(parts));
        e.addr = Some(addr.clone());
        Some(addr)
    }

    /// The board's actor, started afresh if its mailbox is closed (an actor
    /// that died outside the supervisor's reach).
    pub(super) fn board_addr(&mut self, name: &str, ctx: &mut Context<Self>) -> Option<Addr<BoardActor>> {
        let e = self.boards.get_mut(name)?;
        if let Some(a) = &e.addr {
            if a.connected() {
                return Some(a.clone());
            }
        }
        error!(board = %name, "board actor is gone; starting a new one");
        e.restarts += 1;
        self.restarts_total += 1;
        self.metrics.actor_restarted(name);
        let fault = self.book.fault(name).map(str::to_string);
        self.book.health(name, false, fault);
        self.changed(name);
        self.event("respawn", name, None, None);
        self.spawn_board(name, ctx)
    }
}

/// A board actor's report of its power and health.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BoardStatus {
    pub board: String,
    pub power: PowerState,
    pub fault: Option<String>,
    /// The serial console's state (None: the board has no console).
    pub console: Option<ConsoleState>,
    /// A powered port's power detection, when the switch tells.
    pub delivery: Option<crate::power::Detection>,
}

impl Handler<BoardStatus> for Registry {
    type Result = ();

    /// Updates the view; a board that became claimable serves waiters.
    fn handle(&mut self, msg: BoardStatus, ctx: &mut Context<Self>) {
        let Some(e) = self.boards.get_mut(&msg.board) else { return };
        e.power = msg.power;
        e.console = msg.console;
        e.delivery = msg.delivery;
        let became = self.book.health(&msg.board, true, msg.fault);
        self.reported(&msg.board, ctx);
        if let Some(class) = became {
            self.serve(&class, ctx);
        }
    }
}

/// A board actor's report of its claim's jail: up (after a build or an
/// adoption) or gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JailStatus {
    pub board: String,
    pub handle: String,
    pub info: Option<JailInfo>,
}

impl Handler<JailStatus> for Registry {
    type Result = ();

    fn handle(&mut self, msg: JailStatus, _ctx: &mut Context<Self>) {
        if self.book.claim_of(&msg.board).is_some_and(|c| c.handle == msg.handle) {
            if let Some(e) = self.boards.get_mut(&msg.board) {
                e.jail = msg.info;
            }
        }
    }
}

/// A board actor is being restarted by its supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BoardRestarted {
    pub board: String,
}

impl Handler<BoardRestarted> for Registry {
    type Result = ();

    /// Counts the restart; the board shows offline until it reports again.
    fn handle(&mut self, msg: BoardRestarted, _ctx: &mut Context<Self>) {
        let Some(e) = self.boards.get_mut(&msg.board) else { return };
        e.restarts += 1;
        e.power = PowerState::Unknown;
        self.restarts_total += 1;
        self.metrics.actor_restarted(&msg.board);
        let fault = self.book.fault(&msg.board).map(str::to_string);
        self.book.health(&msg.board, false, fault);
        self.changed(&msg.board);
    }
}

/// labd is stopping: every board stops its jail (claims and data stay).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

impl Handler<StopAll> for Registry {
    type Result = ResponseFuture<()>;

    /// Waits for every board to finish.
    fn handle(&mut self, _msg: StopAll, _ctx: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<Addr<BoardActor>> = self.boards.values().filter_map(|e| e.addr.clone()).collect();
        Box::pin(async move {
            futures::future::join_all(addrs.iter().map(|a| a.send(Shutdown))).await;
        })
    }
}

/// labcli next to the running labd (they are installed side by side).
fn labcli_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("labcli")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/labcli"))
}

/// Test-only (`fault-injection`): `LABD_FAULT_JAIL_BUILD_DELAY_MS` makes
/// every jail build wait that long first.
fn build_delay() -> Duration {
    #[cfg(feature = "fault-injection")]
    if let Some(ms) = std::env::var("LABD_FAULT_JAIL_BUILD_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        return Duration::from_millis(ms);
    }
    Duration::ZERO
}

/// The jails' settings from the configuration, with the addresses of
/// every switch and of the lab's etcd members added to `deny_out`: a jail
/// never talks to a switch or to the lab's shared state.
fn jail_settings(cfg: &Config) -> JailSettings {
    use std::net::ToSocketAddrs;
    let mut s = cfg.jail.settings.clone();
    if cfg.daemon.jail != JailMode::Linux {
        return s;
    }
    let switches = cfg.switches.values().map(|sw| (format!("switch {}", sw.name), sw.host.as_str()));
    let etcd = cfg.cluster.iter().flat_map(|c| c.etcd_hostports()).map(|hp| ("etcd".to_string(), hp));
    for (what, hostport) in switches.chain(etcd) {
        // Both always carry the port (HOST:PORT).
        match hostport.to_socket_addrs() {
            Ok(addrs) => {
                for a in addrs {
                    let net = ipnet::IpNet::from(a.ip());
                    if !s.deny_out.contains(&net) {
                        s.deny_out.push(net);
                    }
                }
            }
            Err(e) => warn!("cannot resolve {what} at {hostport} to keep jails away from it: {e}"),
        }
    }
    s
}

/// The host's cgroup hierarchy for jails, said loudly when there is none.
fn jail_cgroups(cfg: &Config) -> Hierarchy {
    if cfg.daemon.jail != JailMode::Linux {
        return Hierarchy::None { why: "jails are off".into() };
    }
    let h = crate::jail::cgroup::detect();
    let l = cfg.jail.settings.limits;
    match &h {
        Hierarchy::None { why } => error!("jails run WITHOUT resource limits (processes, memory, CPU): {why}"),
        h => info!(
            pids_max = l.pids_max,
            memory_max = l.memory_max,
            cpu_weight = l.cpu_weight,
            "jail limits through {h:?}"
        ),
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jails are kept away from every switch and every etcd member,
    /// besides the operators' own prefixes.
    #[test]
    fn jails_are_denied_the_switches_and_etcd() {
        let lab = r#"
[daemon]
jail = "linux"
[jail]
deny_out = ["192.168.0.0/16"]
[switches.poe1]
host = "192.0.2.10:161"
community = "private"
[cluster]
host = "lab1"
etcd = ["http://198.51.100.1:2379", "http://198.51.100.2:2379", "http://[2001:db8::3]:2379"]
peer_listen = "10.0.0.2:7420"
peer_ca = "/p/ca.pem"
peer_cert = "/p/lab1.pem"
peer_key = "/p/lab1.key"
"#;
        let board = "name = \"b1\"\nclass = \"c\"\npower = { switch = \"poe1\", port = 1 }\n".to_string();
        let cfg = Config::from_texts(std::path::Path::new("/x"), lab, &[("/x/boards.d/b1.toml".into(), board)], vec![])
            .unwrap();
        let denied: Vec<String> = jail_settings(&cfg).deny_out.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            denied,
            ["192.168.0.0/16", "192.0.2.10/32", "198.51.100.1/32", "198.51.100.2/32", "2001:db8::3/128"]
        );
    }
}
