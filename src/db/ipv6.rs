//! The claims' IPv6 /64s (`[jail] ipv6_pool`): which /64 each claim's
//! jail holds and which cool down after a release, so that no /64 is
//! handed out twice or again too soon.

use rusqlite::{params, OptionalExtension};

use super::{Db, DbError};
use crate::util::now_unix_ms;

/// How /64s come back: a released one cools down for `reuse_after_ms`;
/// a user has at most `per_user` cooling down before their own come back.
#[derive(Debug, Clone, Copy)]
pub struct Cooling {
    pub reuse_after_ms: i64,
    pub per_user: u32,
}

/// The /64 board ?1 holds starts cooling down until ?2.
const RELEASE_BOARD: &str =
    "UPDATE ipv6_prefixes SET handle = NULL, free_after = ?2 WHERE board = ?1 AND handle IS NOT NULL";

impl Db {
    /// The /64 of `user`'s claim `handle` on `board`: the one it holds (a
    /// rebuild), else a new one from `pick`, given every /64 held or
    /// cooling down (a /64 the board held for another claim is released
    /// first). But a user with `per_user` /64s cooling down already gets
    /// back the one of theirs that cooled longest, not a new one. One
    /// transaction: two boards never get the same /64. `None` when `pick`
    /// finds none free.
    pub fn take_ipv6_prefix(
        &self,
        board: &str,
        handle: &str,
        user: &str,
        cooling: Cooling,
        pick: impl FnOnce(&std::collections::HashSet<String>) -> Option<String>,
    ) -> Result<Option<String>, DbError> {
        let now = now_unix_ms();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let held: Option<String> = tx
            .query_row(
                "SELECT prefix FROM ipv6_prefixes WHERE board = ?1 AND handle = ?2",
                params![board, handle],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(p) = held {
            return Ok(Some(p));
        }
        tx.execute(RELEASE_BOARD, params![board, now.saturating_add(cooling.reuse_after_ms)])?;
        tx.execute("DELETE FROM ipv6_prefixes WHERE handle IS NULL AND free_after <= ?1", params![now])?;
        let users: i64 = tx.query_row(
            "SELECT COUNT(*) FROM ipv6_prefixes WHERE handle IS NULL AND user = ?1",
            params![user],
            |r| r.get(0),
        )?;
        if users >= i64::from(cooling.per_user) {
            let own: Option<String> = tx
                .query_row(
                    "SELECT prefix FROM ipv6_prefixes WHERE handle IS NULL AND user = ?1 ORDER BY free_after LIMIT 1",
                    params![user],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(p) = own {
                tx.execute(
                    "UPDATE ipv6_prefixes SET board = ?2, handle = ?3, free_after = 0 WHERE prefix = ?1",
                    params![p, board, handle],
                )?;
                tx.commit()?;
                return Ok(Some(p));
            }
        }
        let blocked: std::collections::HashSet<String> = {
            let mut st = tx.prepare("SELECT prefix FROM ipv6_prefixes")?;
            let v = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
            v
        };
        let Some(p) = pick(&blocked) else {
            tx.commit()?;
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO ipv6_prefixes(prefix, board, handle, user, free_after) VALUES (?1, ?2, ?3, ?4, 0)",
            params![p, board, handle, user],
        )?;
        tx.commit()?;
        Ok(Some(p))
    }

    /// Releases the /64 `board` holds, if any: it cools down for
    /// `reuse_after_ms` before any claim may draw it again.
    pub fn release_ipv6_prefix(&self, board: &str, reuse_after_ms: i64) -> Result<(), DbError> {
        let conn = self.lock();
        conn.prepare_cached(RELEASE_BOARD)?.execute(params![board, now_unix_ms().saturating_add(reuse_after_ms)])?;
        Ok(())
    }
}
