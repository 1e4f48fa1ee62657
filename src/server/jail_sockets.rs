//! The jail sockets: while jails are on, each claimed board's jail has a
//! socket of its own (in a directory the jail binds at /run/boardlab),
//! through which whoever is inside acts as the claimant on that claim
//! only. One is bound when a claim appears in the published snapshot and
//! removed when the claim goes.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::error;

use super::{serve_jail, Front};
use crate::actors::registry::Snapshot;

/// The sockets being served: board → (claim handle, task). Dropping it
/// stops them all (labd stopping: the files stay for the jails, and the
/// next labd binds them anew).
#[derive(Default)]
struct Served(HashMap<String, (String, JoinHandle<()>)>);

impl Drop for Served {
    fn drop(&mut self) {
        for (_, (_, task)) in self.0.drain() {
            task.abort();
        }
    }
}

/// Keeps the jail sockets in step with the claims until `snapshots` ends.
pub async fn run(front: Rc<Front>, mut snapshots: watch::Receiver<Arc<Snapshot>>) {
    let mut served = Served::default();
    loop {
        let snap = snapshots.borrow_and_update().clone();
        let wanted: HashMap<&str, (&str, &str)> = snap
            .rows()
            .iter()
            .filter_map(|r| Some((r.board.as_str(), (r.handle.as_deref()?, r.user.as_deref()?))))
            .collect();
        served.0.retain(|board, (handle, task)| {
            if wanted.get(board.as_str()).is_some_and(|(h, _)| h == handle) {
                return true;
            }
            task.abort();
            let path = front.cfg.daemon.jail_socket_dir(board).join("jail.sock");
            let _ = std::fs::remove_file(path);
            false
        });
        for (board, (handle, user)) in wanted {
            if served.0.contains_key(board) {
                continue;
            }
            let path = front.cfg.daemon.jail_socket_dir(board).join("jail.sock");
            match serve_jail(front.clone(), &path, user.to_string(), handle.to_string()) {
                Ok(task) => {
                    served.0.insert(board.to_string(), (handle.to_string(), task));
                }
                Err(e) => error!(board = %board, "cannot serve the jail's socket: {e}"),
            }
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}
