//! Persistent state in SQLite: boards, claims and the event log.
//!
//! SQLite is the source of truth for claims: the registry writes a claim
//! here before it answers, so a claim the user saw survives SIGTERM and
//! `kill -9`. WAL with `synchronous = NORMAL` is durable against a crash of
//! the process (what labd must survive); only a power loss of the host could
//! lose the last transactions, and then the boards lose power too.
//!
//! The `UNIQUE` constraint on `claims.board` is the last line of defence
//! against double-booking: even a bug in the registry cannot give one board
//! to two users.
//!
//! Calls are short, indexed statements on a local file (tens of
//! microseconds), so actors call them inline instead of paying a thread hop
//! per request; the mutex is uncontended in practice because all actors run
//! on one arbiter.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use std::os::unix::fs::PermissionsExt;

use rusqlite::{params, Connection, OptionalExtension};

use crate::util::now_unix_ms;

mod boards;
mod events;
mod health;
mod ipv6;
mod writer;
pub use events::EventQuery;
pub use ipv6::Cooling;
pub use writer::DbWriter;

/// A claim as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub handle: String,
    pub board: String,
    pub user: String,
    /// Unix milliseconds.
    pub claimed_at: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub board: Option<String>,
    pub user: Option<String>,
    /// Whose claim the event is about (claims' events only).
    pub subject: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening the state database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("creating the state directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("board {0} is already claimed")]
    AlreadyClaimed(String),
    #[error("the state database's writer thread is gone")]
    Gone,
    #[error("labd is already running on this state ({path}: pid {pid}); stop it first, or give this one another [daemon] state")]
    Running { path: String, pid: String },
}

/// A shared handle to the state database.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// `STATE.lock`, locked while this labd has the database (and holding
    /// its pid), so a second labd on the same state says so at once.
    _lock: Arc<std::fs::File>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS boards (
    name        TEXT PRIMARY KEY,
    class       TEXT NOT NULL,
    maintenance INTEGER NOT NULL DEFAULT 0,
    jail_index  INTEGER UNIQUE,
    link_id     TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    handle     TEXT PRIMARY KEY,
    board      TEXT NOT NULL UNIQUE,
    user       TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    jail       TEXT
);
CREATE TABLE IF NOT EXISTS jails (
    board  TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ipv6_prefixes (
    prefix     TEXT PRIMARY KEY,
    board      TEXT,
    handle     TEXT,
    user       TEXT,
    free_after INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    board  TEXT,
    user   TEXT,
    detail TEXT
);
";

impl Db {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|source| DbError::CreateDir { path: parent.display().to_string(), source })?;
        }
        let lock = lock_state(path)?;
        let open_err = |source| DbError::Open { path: path.display().to_string(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        // labd is the database's only user: holding it exclusively saves the
        // file-lock system calls of every transaction (a third of a claim's
        // cost) and keeps a second labd on the same state out.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        migrate(&conn).map_err(open_err)?;
        // Claims carry handles (bearer secrets): the files are root's alone,
        // whoever made them and whatever umask labd runs with.
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = std::path::PathBuf::from(p);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .map_err(|source| DbError::CreateDir { path: p.display().to_string(), source })?;
            }
        }
        Ok(Db { conn: Arc::new(Mutex::new(conn)), _lock: Arc::new(lock) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn claims(&self) -> Result<Vec<Claim>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT handle, board, user, claimed_at, expires_at FROM claims")?;
        let rows = st.query_map([], row_claim)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn maintenance(&self) -> Result<std::collections::HashSet<String>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached("SELECT name FROM boards WHERE maintenance != 0")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a new claim and its event atomically. Fails with
    /// `AlreadyClaimed` if the board has a claim.
    pub fn insert_claim(&self, c: &Claim) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let r = tx
            .prepare_cached(
                "INSERT INTO claims(handle, board, user, claimed_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| st.execute(params![c.handle, c.board, c.user, c.claimed_at, c.expires_at]));
        match r {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                return Err(DbError::AlreadyClaimed(c.board.clone()))
            }
            r => r?,
        };
        insert_event(
            &tx,
            "claim",
            Some(&c.board),
            Some(&c.user),
            Some(&c.user),
            Some(&format!("expires {}", crate::util::rfc3339_ms(c.expires_at))),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a claim and logs why (`release`, `expire`, `force_release`,
    /// `claim_rolled_back`). Returns whether a claim was removed.
    pub fn delete_claim(&self, handle: &str, kind: &str, by: &str, detail: Option<&str>) -> Result<bool, DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let claim: Option<(String, String)> = tx
            .prepare_cached("SELECT board, user FROM claims WHERE handle = ?1")?
            .query_row(params![handle], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((board, claimant)) = claim else { return Ok(false) };
        tx.prepare_cached("DELETE FROM claims WHERE handle = ?1")?.execute(params![handle])?;
        insert_event(&tx, kind, Some(&board), Some(by), Some(&claimant), detail)?;
        tx.commit()?;
        Ok(true)
    }

    pub fn renew_claim(&self, handle: &str, expires_at: i64, by: &str) -> Result<bool, DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let claim: Option<(String, String)> = tx
            .query_row("SELECT board, user FROM claims WHERE handle = ?1", params![handle], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((board, claimant)) = claim else { return Ok(false) };
        tx.execute("UPDATE claims SET expires_at = ?2 WHERE handle = ?1", params![handle, expires_at])?;
        insert_event(
            &tx,
            "renew",
            Some(&board),
            Some(by),
            Some(&claimant),
            Some(&format!("expires {}", crate::util::rfc3339_ms(expires_at))),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// A board into maintenance or out of it, with its event (`reason`:
    /// the operator's, as its detail).
    pub fn set_maintenance(&self, board: &str, on: bool, by: &str, reason: Option<&str>) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("UPDATE boards SET maintenance = ?2 WHERE name = ?1", params![board, on as i64])?;
        let kind = if on { "maintenance_on" } else { "maintenance_off" };
        insert_event(&tx, kind, Some(board), Some(by), None, reason)?;
        tx.commit()?;
        Ok(())
    }

    /// Appends to the event log.
    pub fn event(
        &self,
        kind: &str,
        board: Option<&str>,
        user: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), DbError> {
        self.event_about(kind, board, user, None, detail)
    }

    /// Appends to the event log an event about `subject`'s claim.
    pub fn event_about(
        &self,
        kind: &str,
        board: Option<&str>,
        user: Option<&str>,
        subject: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), DbError> {
        let conn = self.lock();
        insert_event(&conn, kind, board, user, subject, detail)?;
        Ok(())
    }
    /// The last `n` events, oldest first.
    pub fn recent_events(&self, n: u32) -> Result<Vec<Event>, DbError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT id, at, kind, board, user, subject, detail FROM events ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![n], events::row_event)?;
        let mut v: Vec<Event> = rows.collect::<Result<_, _>>()?;
        v.reverse();
        Ok(v)
    }
}

/// Makes labd's own directory 0700 (`walk`: 0711, for a directory that
/// also holds the socket users connect to), unless it is a shared one
/// (world-writable and sticky, like /tmp), which is left as it is.
pub fn private_dir(dir: &Path, walk: bool) -> std::io::Result<()> {
    let m = std::fs::metadata(dir)?;
    let mode = m.permissions().mode();
    if mode & 0o1002 == 0o1002 {
        tracing::warn!("{} is a shared directory; labd's files in it are still private", dir.display());
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(if walk { 0o711 } else { 0o700 }))
}

/// Locks `STATE.lock` for this process (released when the file closes,
/// also by `kill -9`) and writes its pid there; a lock held by another
/// labd is `Running`, with that labd's pid.
fn lock_state(path: &Path) -> Result<std::fs::File, DbError> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    let p = std::path::PathBuf::from(p);
    let io = |source| DbError::CreateDir { path: p.display().to_string(), source };
    let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&p).map_err(io)?;
    // SAFETY: flock on a descriptor owned by `f`, which outlives the call;
    // LOCK_NB makes it return at once.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io(e));
        }
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        let pid = if pid.trim().is_empty() { "unknown".to_string() } else { pid.trim().to_string() };
        return Err(DbError::Running { path: path.display().to_string(), pid });
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    writeln!(f, "{}", std::process::id()).map_err(io)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(f)
}

/// Columns added after the first release, for databases made before them.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in [
        ("boards", "jail_index", "INTEGER"),
        ("claims", "jail", "TEXT"),
        ("boards", "link_id", "TEXT"),
        ("events", "subject", "TEXT"),
        ("boards", "unhealthy", "TEXT"),
        ("ipv6_prefixes", "user", "TEXT"),
        ("boards", "health_failures", "INTEGER"),
        ("boards", "health_note", "TEXT"),
    ] {
        let mut st = conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?;
        if !st.exists(params![column])? {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    conn.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS boards_jail_index ON boards(jail_index)")?;
    events::indexes(conn)?;
    // Jails were kept in the claims table by an older labd.
    conn.execute_batch(
        "INSERT OR IGNORE INTO jails(board, handle, record)
             SELECT board, handle, jail FROM claims WHERE jail IS NOT NULL;
         UPDATE claims SET jail = NULL WHERE jail IS NOT NULL;",
    )?;
    Ok(())
}

fn row_claim(r: &rusqlite::Row<'_>) -> rusqlite::Result<Claim> {
    Ok(Claim { handle: r.get(0)?, board: r.get(1)?, user: r.get(2)?, claimed_at: r.get(3)?, expires_at: r.get(4)? })
}

fn insert_event(
    conn: &Connection,
    kind: &str,
    board: Option<&str>,
    user: Option<&str>,
    subject: Option<&str>,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    let mut st = conn
        .prepare_cached("INSERT INTO events(at, kind, board, user, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    st.execute(params![now_unix_ms(), kind, board, user, subject, detail])?;
    Ok(())
}

#[cfg(test)]
mod tests;
