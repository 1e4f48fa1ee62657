//! Boards that failed their health checks (`unhealthy`), kept across
//! restarts like maintenance: a board that was unhealthy when labd
//! stopped (or was killed) is unhealthy when it starts.

use std::collections::HashMap;

use rusqlite::params;

use super::{insert_event, Db, DbError};

impl Db {
    /// The unhealthy boards and why.
    pub fn unhealthy(&self) -> Result<HashMap<String, String>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT name, unhealthy FROM boards WHERE unhealthy IS NOT NULL")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A board went unhealthy (`why`) or healthy again (None), with its
    /// event (`unhealthy` or `healthy`, by labd or the operator `by`).
    pub fn set_unhealthy(&self, board: &str, why: Option<&str>, by: &str) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("UPDATE boards SET unhealthy = ?2 WHERE name = ?1", params![board, why])?;
        let kind = if why.is_some() { "unhealthy" } else { "healthy" };
        insert_event(&tx, kind, Some(board), Some(by), None, why)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unhealthy_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let db = super::Db::open(&path).unwrap();
            db.sync_boards(&[("b1".into(), "c".into()), ("b2".into(), "c".into())]).unwrap();
            db.set_unhealthy("b1", Some("console silent"), "labd").unwrap();
            db.set_unhealthy("b2", Some("x"), "labd").unwrap();
            db.set_unhealthy("b2", None, "root").unwrap();
        }
        let db = super::Db::open(&path).unwrap();
        let u = db.unhealthy().unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u["b1"], "console silent");
    }
}
