//! The boards table: which boards are configured, each one's stable jail
//! index, its link's recorded identity, and its running jail (what a
//! board actor adopts after `kill -9`).

use rusqlite::{params, OptionalExtension};

use super::{Db, DbError};

impl Db {
    /// Makes the boards table match the configuration (claims on boards
    /// no longer configured are the claim book's to drop).
    pub fn sync_boards(&self, boards: &[(String, String)]) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for (name, class) in boards {
            tx.execute(
                "INSERT INTO boards(name, class) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET class = excluded.class",
                params![name, class],
            )?;
        }
        let names: std::collections::HashSet<&str> = boards.iter().map(|(n, _)| n.as_str()).collect();
        let mut st = tx.prepare("SELECT name FROM boards")?;
        let stale: Vec<String> = st
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(Result::ok)
            .filter(|n| !names.contains(n.as_str()))
            .collect();
        drop(st);
        for n in stale {
            tx.execute("DELETE FROM boards WHERE name = ?1", params![n])?;
        }
        // Every board gets a stable jail index (its addresses and uids
        // derive from it): the smallest one free, kept for as long as the
        // board is configured.
        let mut used: std::collections::BTreeSet<i64> = {
            let mut st = tx.prepare("SELECT jail_index FROM boards WHERE jail_index IS NOT NULL")?;
            let v = st.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<_, _>>()?;
            v
        };
        let without: Vec<String> = {
            let mut st = tx.prepare("SELECT name FROM boards WHERE jail_index IS NULL ORDER BY name")?;
            let v = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
            v
        };
        let mut next = 0i64;
        for n in without {
            while used.contains(&next) {
                next += 1;
            }
            tx.execute("UPDATE boards SET jail_index = ?2 WHERE name = ?1", params![n, next])?;
            used.insert(next);
        }
        tx.commit()?;
        Ok(())
    }

    /// Board name → jail index.
    pub fn jail_indexes(&self) -> Result<std::collections::HashMap<String, u32>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT name, jail_index FROM boards WHERE jail_index IS NOT NULL")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut m = std::collections::HashMap::new();
        for row in rows {
            let (n, i) = row?;
            if let Ok(i) = u32::try_from(i) {
                m.insert(n, i);
            }
        }
        Ok(m)
    }

    /// The board link identities recorded on the host (serde JSON of
    /// `link::LinkId`), by board.
    pub fn link_ids(&self) -> Result<std::collections::HashMap<String, String>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT name, link_id FROM boards WHERE link_id IS NOT NULL")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the identity of a board's link (the board actor, once it
    /// has checked the link on the host).
    pub fn set_link_id(&self, board: &str, id: &str) -> Result<(), DbError> {
        let conn = self.lock();
        conn.prepare_cached("UPDATE boards SET link_id = ?2 WHERE name = ?1")?.execute(params![board, id])?;
        Ok(())
    }

    /// The running jail of a board's claim (serde JSON of `jail::Jail`)
    /// and the claim's handle: what a board actor adopts at start. The
    /// board actor is this table's only writer.
    pub fn jail_of(&self, board: &str) -> Result<Option<(String, String)>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT handle, record FROM jails WHERE board = ?1")?;
        Ok(st.query_row(params![board], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    /// Records (`Some`) or forgets (`None`) a board's running jail.
    pub fn set_jail(&self, board: &str, jail: Option<(&str, &str)>) -> Result<(), DbError> {
        let conn = self.lock();
        match jail {
            Some((handle, record)) => conn
                .prepare_cached("INSERT OR REPLACE INTO jails(board, handle, record) VALUES (?1, ?2, ?3)")?
                .execute(params![board, handle, record])?,
            None => conn.prepare_cached("DELETE FROM jails WHERE board = ?1")?.execute(params![board])?,
        };
        Ok(())
    }
}
