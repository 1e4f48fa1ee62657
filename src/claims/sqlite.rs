//! The embedded ledger: labd's SQLite database (WAL), through its writer
//! thread ([`crate::db::DbWriter`]), so no statement runs on the actors'
//! loop and writes happen in the order the registry made them.

use std::collections::HashSet;

use futures::FutureExt;

use super::ledger::{Ending, Ledger, LedgerError, LedgerFuture};
use super::Claim;
use crate::db::{self, DbError, DbWriter};

/// Claims in labd's own SQLite database.
pub struct SqliteLedger {
    db: DbWriter,
}

impl SqliteLedger {
    pub fn new(db: DbWriter) -> SqliteLedger {
        SqliteLedger { db }
    }
}

fn storage(e: DbError) -> LedgerError {
    match e {
        DbError::AlreadyClaimed(b) => LedgerError::Taken(b),
        e => LedgerError::Storage(e.to_string()),
    }
}

fn row(c: &Claim) -> db::Claim {
    db::Claim {
        handle: c.handle.clone(),
        board: c.board.clone(),
        user: c.user.clone(),
        claimed_at: c.claimed_at,
        expires_at: c.expires_at,
    }
}

impl Ledger for SqliteLedger {
    fn load(&self) -> LedgerFuture<(Vec<Claim>, HashSet<String>)> {
        self.db
            .run(|d| {
                let claims = d
                    .claims()?
                    .into_iter()
                    .map(|c| Claim {
                        handle: c.handle,
                        board: c.board,
                        user: c.user,
                        claimed_at: c.claimed_at,
                        expires_at: c.expires_at,
                    })
                    .collect();
                Ok((claims, d.maintenance()?))
            })
            .map(|r| r.and_then(|x| x).map_err(storage))
            .boxed()
    }

    fn claim(&self, c: &Claim) -> LedgerFuture<()> {
        let c = row(c);
        self.db.run(move |d| d.insert_claim(&c)).map(|r| r.and_then(|x| x).map_err(storage)).boxed()
    }

    fn end(&self, c: &Claim, how: Ending, by: &str, detail: Option<String>) -> LedgerFuture<()> {
        let (handle, by) = (c.handle.clone(), by.to_string());
        self.db
            .run(move |d| d.delete_claim(&handle, how.as_str(), &by, detail.as_deref()).map(|_| ()))
            .map(|r| r.and_then(|x| x).map_err(storage))
            .boxed()
    }

    fn renew(&self, c: &Claim, by: &str) -> LedgerFuture<()> {
        let (handle, at, by) = (c.handle.clone(), c.expires_at, by.to_string());
        self.db
            .run(move |d| d.renew_claim(&handle, at, &by).map(|_| ()))
            .map(|r| r.and_then(|x| x).map_err(storage))
            .boxed()
    }

    fn maintenance(&self, board: &str, on: bool, by: &str, reason: Option<String>) -> LedgerFuture<()> {
        let (board, by) = (board.to_string(), by.to_string());
        self.db
            .run(move |d| d.set_maintenance(&board, on, &by, reason.as_deref()))
            .map(|r| r.and_then(|x| x).map_err(storage))
            .boxed()
    }
}
