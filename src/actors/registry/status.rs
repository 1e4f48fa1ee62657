//! What the lab looks like: the published [`Snapshot`] that `status`,
//! `classes` and the jail sockets are served from, and the operators'
//! dump.
//!
//! Each board's line of `status` is serialized when the board changes, not
//! when someone asks; a snapshot is the list of those lines, so answering
//! `status` costs a copy of text made once, however many ask.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use tracing::error;

use super::Registry;
use crate::protocol::{BoardView, ClaimView, ClassView, DaemonView, Dump, DumpBoard, EventView};
use crate::util::rfc3339_ms;

/// One board's line of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub board: String,
    pub class: String,
    /// The claimant, if claimed.
    pub user: Option<String>,
    /// The claim's handle: never shown to anyone; the front end serves the
    /// claim's jail socket by it.
    pub handle: Option<String>,
    /// Whether a claim could get this board now.
    pub claimable: bool,
    /// The board's [`BoardView`] as JSON.
    pub json: Box<str>,
}

impl StatusRow {
    /// The row of a board nothing is known of yet.
    pub(super) fn placeholder(board: &str, class: &str) -> StatusRow {
        StatusRow {
            board: board.into(),
            class: class.into(),
            user: None,
            handle: None,
            claimable: false,
            json: "{}".into(),
        }
    }
}

/// The lab as of its last change.
#[derive(Debug, Default)]
pub struct Snapshot {
    rows: Vec<Arc<StatusRow>>,
    /// Claims waiting per class (`claim --wait`).
    waiting: BTreeMap<String, usize>,
    /// `status` of every board: made by the first who asks.
    all: OnceLock<Arc<str>>,
}

impl Snapshot {
    pub fn rows(&self) -> &[Arc<StatusRow>] {
        &self.rows
    }

    /// The JSON array of every board's view.
    pub fn all(&self) -> Arc<str> {
        self.all.get_or_init(|| join(self.rows.iter())).clone()
    }

    /// The JSON array of the views of `user`'s boards; with `handles`,
    /// each carries its claim's `handle` (for `status --mine` on the main
    /// socket: the claimant's own, never anyone else's).
    pub fn of_user(&self, user: &str, handles: bool) -> String {
        let mut s = String::from("[");
        for (i, r) in self.rows.iter().filter(|r| r.user.as_deref() == Some(user)).enumerate() {
            if i > 0 {
                s.push(',');
            }
            match r.handle.as_deref().filter(|_| handles) {
                Some(h) => s.push_str(&with_handle(&r.json, h)),
                None => s.push_str(&r.json),
            }
        }
        s.push(']');
        s
    }

    /// Every class with its counts (`available_only`: those with a free
    /// board).
    pub fn classes(&self, available_only: bool) -> Vec<ClassView> {
        let mut by: BTreeMap<&str, ClassView> = BTreeMap::new();
        for r in &self.rows {
            let v = by.entry(&r.class).or_insert_with(|| ClassView {
                class: r.class.clone(),
                total: 0,
                available: 0,
                waiting: self.waiting.get(&r.class).copied().unwrap_or(0),
            });
            v.total += 1;
            v.available += usize::from(r.claimable);
        }
        by.into_values().filter(|c| !available_only || c.available > 0).collect()
    }
}

/// A board's `status` object with `"handle": h` added.
pub fn with_handle(json: &str, h: &str) -> String {
    let Some(body) = json.trim_end().strip_suffix('}') else { return json.to_string() };
    let h = serde_json::Value::from(h);
    if body.trim_end().ends_with('{') {
        format!("{body}\"handle\":{h}}}")
    } else {
        format!("{body},\"handle\":{h}}}")
    }
}

fn join<'a>(rows: impl Iterator<Item = &'a Arc<StatusRow>>) -> Arc<str> {
    let mut s = String::from("[");
    for (i, r) in rows.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&r.json);
    }
    s.push(']');
    s.into()
}

impl Registry {
    /// A board as users see it.
    pub(super) fn view(&self, name: &str) -> Option<BoardView> {
        let e = self.boards.get(name)?;
        let c = self.book.claim_of(name);
        Some(BoardView {
            board: e.cfg.name.clone(),
            class: e.cfg.class.clone(),
            state: self.book.state(name),
            user: c.map(|c| c.user.clone()),
            power: e.power,
            claimed_at: c.map(|c| rfc3339_ms(c.claimed_at)),
            expires_at: c.map(|c| rfc3339_ms(c.expires_at)),
            fault: self.book.fault(name).map(str::to_string),
            console: e.console.map(|s| s.as_str().to_string()),
            host: self.cfg.cluster.as_ref().map(|c| c.host.clone()),
            delivery: e.delivery.filter(|_| e.power == crate::protocol::PowerState::On).map(|d| d.as_str().to_string()),
            health: self.book.health_note(name).map(str::to_string),
        })
    }

    /// A claim as its claimant sees it.
    pub(super) fn claim_view(&self, handle: &str) -> Option<ClaimView> {
        let board = self.book.board_of_handle(handle)?;
        let view = self.view(board)?;
        let jail = self.boards.get(board).and_then(|e| e.jail.clone());
        Some(ClaimView { board: view, handle: handle.to_string(), jail })
    }

    /// Re-serializes `name`'s line of `status` (without publishing it).
    pub(super) fn refresh_row(&mut self, name: &str) {
        let Some(view) = self.view(name) else { return };
        let json = match serde_json::to_string(&view) {
            Ok(j) => j.into_boxed_str(),
            Err(e) => {
                error!(board = %name, "cannot encode the board's status: {e}");
                return;
            }
        };
        let c = self.book.claim_of(name);
        let row = StatusRow {
            board: view.board,
            class: view.class,
            user: c.map(|c| c.user.clone()),
            handle: c.map(|c| c.handle.clone()),
            claimable: self.book.claimable(name),
            json,
        };
        if let Some(e) = self.boards.get_mut(name) {
            if *e.row != row {
                e.row = Arc::new(row);
            }
        }
    }

    /// Publishes the rows as they are now.
    pub(super) fn publish(&mut self) {
        let rows: Vec<Arc<StatusRow>> = self.boards.values().map(|e| e.row.clone()).collect();
        let waiting = self.book.waiting();
        let same = {
            let old = self.snapshot.borrow();
            old.rows.len() == rows.len()
                && old.rows.iter().zip(&rows).all(|(a, b)| Arc::ptr_eq(a, b))
                && old.waiting == waiting
        };
        if !same {
            self.snapshot.send_replace(Arc::new(Snapshot { rows, waiting, all: OnceLock::new() }));
        }
    }

    /// `name` changed: its row again, published. Every change of a claim
    /// goes through here, so that whoever is answered next sees it.
    pub(super) fn changed(&mut self, name: &str) {
        self.refresh_row(name);
        self.publish();
    }

    /// `name` changed by a board's report (power, health, console). Once
    /// every board has reported, at once like any change: a request's
    /// answer may depend on it (a power request that faulted the board,
    /// whose report the board sends before it answers). Until then (the
    /// burst of first reports at start, which no request waits for) the
    /// publication waits for the end of the loop's turn, so that 1,000
    /// boards starting are a few publications, not 1,000.
    pub(super) fn reported(&mut self, name: &str, ctx: &mut Context<Self>) {
        if self.unreported.remove(name) || !self.unreported.is_empty() {
            self.refresh_row(name);
        } else {
            self.changed(name);
            return;
        }
        if self.unreported.is_empty() {
            self.publish();
            return;
        }
        if !self.publish_pending {
            self.publish_pending = true;
            ctx.run_later(std::time::Duration::ZERO, |act, _| {
                act.publish_pending = false;
                act.publish();
            });
        }
    }

    /// The operators' dump (the events come from the database's thread).
    pub(super) fn dump(&self) -> ResponseActFuture<Self, Dump> {
        let boards: Vec<DumpBoard> = self
            .boards
            .iter()
            .filter_map(|(name, e)| {
                Some(DumpBoard {
                    view: self.view(name)?,
                    switch: e.cfg.switch.clone(),
                    group: e.cfg.group,
                    port: e.cfg.port,
                    maintenance: self.book.maintenance(name),
                    restarts: e.restarts,
                    console_detail: None,
                    sd: None,
                })
            })
            .collect();
        let daemon = DaemonView {
            config: self.cfg.dir.display().to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            boards: self.boards.len(),
            claims: self.book.claims().count(),
            restarts: self.restarts_total,
        };
        let waiters = self.book.waiting();
        let events = self.db.run(|db| db.recent_events(50));
        // Each board's console and card, asked of its actor.
        let actors: Vec<(String, bool, bool, Addr<super::BoardActor>)> = self
            .boards
            .iter()
            .filter(|(_, e)| e.cfg.console.is_some() || e.cfg.storage.is_some())
            .filter_map(|(n, e)| {
                e.addr.clone().map(|a| (n.clone(), e.cfg.console.is_some(), e.cfg.storage.is_some(), a))
            })
            .collect();
        let work = async move {
            let events = match events.await {
                Ok(Ok(ev)) => ev,
                Ok(Err(e)) | Err(e) => {
                    error!("reading the event log for the dump: {e}");
                    Vec::new()
                }
            };
            let details = futures::future::join_all(actors.into_iter().map(|(name, console, sd, a)| async move {
                let console = match console {
                    true => a.send(crate::actors::board::ConsoleDetail).await.ok().flatten(),
                    false => None,
                };
                let sd = match sd {
                    true => a.send(crate::actors::board::SdDetail).await.ok().flatten(),
                    false => None,
                };
                (name, console, sd)
            }))
            .await;
            (events, details)
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(work).map(move |(events, details), _, _| {
            let mut boards = boards;
            let at: std::collections::HashMap<String, usize> =
                boards.iter().enumerate().map(|(i, b)| (b.view.board.clone(), i)).collect();
            for (name, console, sd) in details {
                if let Some(b) = at.get(&name).and_then(|&i| boards.get_mut(i)) {
                    b.console_detail = console;
                    b.sd = sd;
                }
            }
            let events = events.into_iter().map(event_view).collect();
            Dump { daemon, boards, waiters, events }
        }))
    }
}

/// An event of the log as the dump and the status page show it.
fn event_view(e: crate::db::Event) -> EventView {
    super::history::visible(e, "", true)
}

/// The dump, for SIGUSR1.
#[derive(Message)]
#[rtype(result = "Dump")]
pub struct GetDump;

impl Handler<GetDump> for Registry {
    type Result = ResponseActFuture<Self, Dump>;

    /// The same dump operators get over the socket.
    fn handle(&mut self, _msg: GetDump, _ctx: &mut Context<Self>) -> Self::Result {
        self.dump()
    }
}

/// The latest `n` events of the log, newest first (for the status page).
#[derive(Message)]
#[rtype(result = "Vec<EventView>")]
pub struct GetEvents(pub u32);

impl Handler<GetEvents> for Registry {
    type Result = ResponseFuture<Vec<EventView>>;

    /// Read on the database's thread, after every write queued before.
    fn handle(&mut self, msg: GetEvents, _ctx: &mut Context<Self>) -> Self::Result {
        let events = self.db.run(move |db| db.recent_events(msg.0));
        Box::pin(async move {
            match events.await {
                Ok(Ok(ev)) => ev.into_iter().rev().map(event_view).collect(),
                Ok(Err(e)) | Err(e) => {
                    error!("reading the event log for the status page: {e}");
                    Vec::new()
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(board: &str, user: Option<&str>, handle: Option<&str>, json: &str) -> Arc<StatusRow> {
        Arc::new(StatusRow {
            board: board.into(),
            class: "c".into(),
            user: user.map(String::from),
            handle: handle.map(String::from),
            claimable: false,
            json: json.into(),
        })
    }

    #[test]
    fn only_the_claimant_sees_handles_and_only_when_asked() {
        let snap = Snapshot {
            rows: vec![
                row("b1", Some("alice"), Some("bl-1"), r#"{"board":"b1","user":"alice"}"#),
                row("b2", Some("bob"), Some("bl-2"), r#"{"board":"b2","user":"bob"}"#),
                row("b3", None, None, r#"{"board":"b3","user":null}"#),
            ],
            waiting: BTreeMap::new(),
            all: OnceLock::new(),
        };
        assert_eq!(snap.of_user("alice", true), r#"[{"board":"b1","user":"alice","handle":"bl-1"}]"#);
        assert_eq!(snap.of_user("alice", false), r#"[{"board":"b1","user":"alice"}]"#);
        assert_eq!(snap.of_user("carol", true), "[]");
        assert!(!snap.all().contains("bl-"));
        assert_eq!(with_handle("{}", "bl-\"x"), r#"{"handle":"bl-\"x"}"#);
        assert_eq!(with_handle("not json", "h"), "not json");
    }
}
