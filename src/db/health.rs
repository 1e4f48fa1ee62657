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

    /// Boards that failed their last health checks in a row (failures,
    /// the last failure's note): kept so that a restart between two
    /// failed checks does not forget the first.
    pub fn health_failures(&self) -> Result<HashMap<String, (u32, String)>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT name, health_failures, COALESCE(health_note, '') FROM boards WHERE health_failures > 0",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX), r.get(2)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A board's failed checks in a row now (0: its last check passed),
    /// and the last failure's note.
    pub fn set_health_failures(&self, board: &str, failures: u32, note: Option<&str>) -> Result<(), DbError> {
        let conn = self.lock();
        conn.prepare_cached("UPDATE boards SET health_failures = ?2, health_note = ?3 WHERE name = ?1")?
            .execute(params![board, failures, note])?;
        Ok(())
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

    #[test]
    fn failed_checks_in_a_row_survive_reopen_until_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let db = super::Db::open(&path).unwrap();
            db.sync_boards(&[("b1".into(), "c".into()), ("b2".into(), "c".into())]).unwrap();
            db.set_health_failures("b1", 1, Some("failed 1 of 3: console")).unwrap();
            db.set_health_failures("b2", 2, Some("x")).unwrap();
            db.set_health_failures("b2", 0, None).unwrap();
        }
        let db = super::Db::open(&path).unwrap();
        let f = db.health_failures().unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f["b1"], (1, "failed 1 of 3: console".to_string()));
    }
}
