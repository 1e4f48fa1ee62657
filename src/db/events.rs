//! The event log as `history` reads it, and its pruning (`[events] keep`).
//!
//! Both run on the state database's thread like every statement. A prune
//! deletes a bounded batch per call, in its own transaction, so claims
//! queued behind it wait for one batch at most, and a `kill -9` in the
//! middle loses nothing but the batch under way (the next prune does it).

use rusqlite::{params_from_iter, types::Value, Connection};

use super::{Db, DbError, Event};

/// What `history` asks of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub board: Option<String>,
    /// Events by this user, or about their claims.
    pub user: Option<String>,
    /// Events at or after this time (Unix ms).
    pub since: Option<i64>,
    pub kind: Option<String>,
    /// The newest this many.
    pub limit: u32,
}

pub(super) fn indexes(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS events_at ON events(at);
         CREATE INDEX IF NOT EXISTS events_board ON events(board, id);",
    )
}

pub(super) fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        board: r.get(3)?,
        user: r.get(4)?,
        subject: r.get(5)?,
        detail: r.get(6)?,
    })
}

impl Db {
    /// The newest `q.limit` events that match `q`, oldest first.
    pub fn events(&self, q: &EventQuery) -> Result<Vec<Event>, DbError> {
        let mut sql = String::from("SELECT id, at, kind, board, user, subject, detail FROM events WHERE 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(b) = &q.board {
            args.push(Value::Text(b.clone()));
            sql.push_str(&format!(" AND board = ?{}", args.len()));
        }
        if let Some(u) = &q.user {
            args.push(Value::Text(u.clone()));
            sql.push_str(&format!(" AND (user = ?{n} OR subject = ?{n})", n = args.len()));
        }
        if let Some(t) = q.since {
            args.push(Value::Integer(t));
            sql.push_str(&format!(" AND at >= ?{}", args.len()));
        }
        if let Some(k) = &q.kind {
            args.push(Value::Text(k.clone()));
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        args.push(Value::Integer(i64::from(q.limit)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
        let conn = self.lock();
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(params_from_iter(args), row_event)?;
        let mut v: Vec<Event> = rows.collect::<Result<_, _>>()?;
        v.reverse();
        Ok(v)
    }

    /// Deletes at most `batch` events older than `before` (Unix ms), the
    /// oldest first; returns how many went.
    pub fn prune_events(&self, before: i64, batch: u32) -> Result<usize, DbError> {
        let conn = self.lock();
        let n = conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ?1 ORDER BY at LIMIT ?2)",
            )?
            .execute(rusqlite::params![before, batch])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(db: &Db, at: i64, kind: &str, board: &str, user: &str, subject: Option<&str>) {
        let conn = db.lock();
        conn.execute(
            "INSERT INTO events(at, kind, board, user, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
            rusqlite::params![at, kind, board, user, subject],
        )
        .unwrap();
    }

    fn kinds(v: &[Event]) -> Vec<String> {
        v.iter().map(|e| format!("{}:{}", e.kind, e.board.as_deref().unwrap_or("-"))).collect()
    }

    #[test]
    fn queries_filter_and_keep_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("s.db")).unwrap();
        at(&db, 100, "claim", "b1", "alice", Some("alice"));
        at(&db, 200, "claim", "b2", "bob", Some("bob"));
        at(&db, 300, "force_release", "b1", "root", Some("alice"));
        at(&db, 400, "maintenance_on", "b1", "root", None);
        let all = |limit| EventQuery { limit, ..Default::default() };
        assert_eq!(kinds(&db.events(&all(10)).unwrap()).len(), 4);
        assert_eq!(kinds(&db.events(&all(2)).unwrap()), vec!["force_release:b1", "maintenance_on:b1"]);
        let q = EventQuery { board: Some("b1".into()), limit: 10, ..Default::default() };
        assert_eq!(kinds(&db.events(&q).unwrap()), vec!["claim:b1", "force_release:b1", "maintenance_on:b1"]);
        // A user's events: theirs, and those about their claims.
        let q = EventQuery { user: Some("alice".into()), limit: 10, ..Default::default() };
        assert_eq!(kinds(&db.events(&q).unwrap()), vec!["claim:b1", "force_release:b1"]);
        let q = EventQuery { since: Some(250), kind: Some("maintenance_on".into()), limit: 10, ..Default::default() };
        assert_eq!(kinds(&db.events(&q).unwrap()), vec!["maintenance_on:b1"]);
        let q = EventQuery { kind: Some("x' OR 1=1 --".into()), limit: 10, ..Default::default() };
        assert!(db.events(&q).unwrap().is_empty(), "values are bound, never spliced into the SQL");
    }

    #[test]
    fn pruning_goes_in_batches_and_keeps_the_young() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("s.db")).unwrap();
        for t in 0..25 {
            at(&db, t, "claim", "b1", "alice", None);
        }
        at(&db, 1000, "release", "b1", "alice", None);
        assert_eq!(db.prune_events(500, 10).unwrap(), 10);
        assert_eq!(db.prune_events(500, 10).unwrap(), 10);
        assert_eq!(db.prune_events(500, 10).unwrap(), 5);
        assert_eq!(db.prune_events(500, 10).unwrap(), 0);
        let left = db.events(&EventQuery { limit: 100, ..Default::default() }).unwrap();
        assert_eq!(kinds(&left), vec!["release:b1"]);
    }
}
