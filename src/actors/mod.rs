//! The actors: one [`board::BoardActor`] per physical board, each under an
//! actix `Supervisor`, and the [`registry::Registry`] that routes requests,
//! owns the claims and restarts board actors that die.

pub mod board;
pub mod registry;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// Who is asking, as established by the socket front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name every check is made against.
    pub user: String,
    /// The peer's uid (the gateway's, when acting for someone).
    pub uid: u32,
    /// Operators: root and the users in `admins`.
    pub admin: bool,
    /// On a jail socket: the handle of the jail's own claim.
    pub jail_handle: Option<String>,
}

/// Runs a future and turns a panic inside it into `Err(message)`, so that a
/// panic in a board's power code is contained to that board.
pub async fn catch<F: Future>(f: F) -> Result<F::Output, String> {
    AssertUnwindSafe(f).catch_unwind().await.map_err(panic_message)
}

/// The text of a panic payload.
pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}
