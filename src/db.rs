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

mod events;
mod health;
pub use events::EventQuery;

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

    /// The /64 of `handle`'s jail on `board`: the one it holds (a rebuild),
    /// else a new one from `pick`, given every /64 held or cooling down
    /// (a /64 the board held for another claim is released first). One
    /// transaction: two boards never get the same /64. `None` when `pick`
    /// finds none free.
    pub fn take_ipv6_prefix(
        &self,
        board: &str,
        handle: &str,
        reuse_after_ms: i64,
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
        tx.execute(
            "UPDATE ipv6_prefixes SET handle = NULL, free_after = ?2 WHERE board = ?1 AND handle IS NOT NULL",
            params![board, now.saturating_add(reuse_after_ms)],
        )?;
        tx.execute("DELETE FROM ipv6_prefixes WHERE handle IS NULL AND free_after <= ?1", params![now])?;
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
            "INSERT INTO ipv6_prefixes(prefix, board, handle, free_after) VALUES (?1, ?2, ?3, 0)",
            params![p, board, handle],
        )?;
        tx.commit()?;
        Ok(Some(p))
    }

    /// Releases the /64 `board` holds, if any: it cools down for
    /// `reuse_after_ms` before any claim may draw it again.
    pub fn release_ipv6_prefix(&self, board: &str, reuse_after_ms: i64) -> Result<(), DbError> {
        let conn = self.lock();
        conn.prepare_cached(
            "UPDATE ipv6_prefixes SET handle = NULL, free_after = ?2 WHERE board = ?1 AND handle IS NOT NULL",
        )?
        .execute(params![board, now_unix_ms().saturating_add(reuse_after_ms)])?;
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

/// Columns added after the first release, for databases made before them.
/// A job for the writer thread.
type Job = Box<dyn FnOnce(&Db) + Send>;

/// The state database on a thread of its own: every statement runs there,
/// in the order it was submitted, never on the actors' loop. Cheap to
/// clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct DbWriter {
    tx: std::sync::mpsc::Sender<Job>,
}

impl DbWriter {
    /// Starts the thread that owns `db` from now on.
    pub fn start(db: Db) -> Result<DbWriter, DbError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("labd-db".into())
            .spawn(move || {
                for job in rx {
                    job(&db);
                }
            })
            .map_err(|source| DbError::CreateDir { path: "(the state database's thread)".into(), source })?;
        Ok(DbWriter { tx })
    }

    /// Runs `f` on the writer thread; the result comes back when it is done.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, DbError>> + Send + 'static {
        let (otx, orx) = tokio::sync::oneshot::channel();
        let sent = self.tx.send(Box::new(move |db| {
            let _ = otx.send(f(db));
        }));
        async move {
            sent.map_err(|_| DbError::Gone)?;
            orx.await.map_err(|_| DbError::Gone)
        }
    }

    /// Runs `f` on the writer thread, in turn, without waiting for it.
    pub fn fire(&self, f: impl FnOnce(&Db) + Send + 'static) {
        let _ = self.tx.send(Box::new(f));
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

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in [
        ("boards", "jail_index", "INTEGER"),
        ("claims", "jail", "TEXT"),
        ("boards", "link_id", "TEXT"),
        ("events", "subject", "TEXT"),
        ("boards", "unhealthy", "TEXT"),
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
mod tests {
    use super::*;

    fn claim(h: &str, b: &str, u: &str) -> Claim {
        Claim { handle: h.into(), board: b.into(), user: u.into(), claimed_at: 1, expires_at: 2 }
    }

    #[test]
    fn a_second_opener_is_told_who_holds_the_state() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.db");
        let db = Db::open(&path).unwrap();
        let t0 = std::time::Instant::now();
        match Db::open(&path) {
            Err(DbError::Running { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened twice"),
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(1), "at once, not after a busy wait");
        drop(db);
        Db::open(&path).unwrap();
    }

    #[test]
    fn ipv6_prefixes_are_held_per_claim_and_cool_down() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.db");
        let pool: ipnet::Ipv6Net = "2001:db8:4200:10::/62".parse().unwrap();
        let pick = |blocked: &std::collections::HashSet<String>| {
            let blocked = blocked.iter().filter_map(|p| p.parse().ok()).collect();
            crate::jail::v6pool::pick(&pool, &blocked, crate::jail::v6pool::os_random).map(|p| p.to_string())
        };
        let hour = 3_600_000;
        let db = Db::open(&path).unwrap();
        let a = db.take_ipv6_prefix("b1", "h1", hour, pick).unwrap().unwrap();
        // A rebuild of the same claim keeps its /64, also after a restart.
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.take_ipv6_prefix("b1", "h1", hour, pick).unwrap().as_ref(), Some(&a));
        let b = db.take_ipv6_prefix("b2", "h2", hour, pick).unwrap().unwrap();
        assert_ne!(a, b);
        // The next claim of b1 gets another; a is cooling down, and with
        // a, b and c taken only the fourth is left.
        let c = db.take_ipv6_prefix("b1", "h3", hour, pick).unwrap().unwrap();
        assert!(c != a && c != b);
        db.release_ipv6_prefix("b2", hour).unwrap();
        let d4 = db.take_ipv6_prefix("b3", "h4", hour, pick).unwrap().unwrap();
        assert!(![&a, &b, &c].contains(&&d4));
        assert_eq!(db.take_ipv6_prefix("b4", "h5", hour, pick).unwrap(), None, "all four held or cooling");
        // With no cool-down, a released /64 comes back.
        db.release_ipv6_prefix("b3", 0).unwrap();
        assert_eq!(db.take_ipv6_prefix("b4", "h5", hour, pick).unwrap(), Some(d4));
    }

    #[test]
    fn one_claim_per_board_and_events() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("s.db")).unwrap();
        db.sync_boards(&[("b1".into(), "c".into()), ("b2".into(), "c".into())]).unwrap();
        db.insert_claim(&claim("h1", "b1", "alice")).unwrap();
        assert!(matches!(db.insert_claim(&claim("h2", "b1", "bob")), Err(DbError::AlreadyClaimed(_))));
        assert!(db.renew_claim("h1", 99, "alice").unwrap());
        assert!(!db.renew_claim("nope", 99, "alice").unwrap());
        assert_eq!(db.claims().unwrap()[0].expires_at, 99);
        assert!(db.delete_claim("h1", "release", "alice", None).unwrap());
        assert!(!db.delete_claim("h1", "release", "alice", None).unwrap());
        let kinds: Vec<String> = db.recent_events(10).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["claim", "renew", "release"]);
    }

    #[test]
    fn claims_survive_reopen_and_removed_boards_leave_the_table() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        {
            let db = Db::open(&p).unwrap();
            db.sync_boards(&[("b1".into(), "c".into()), ("b2".into(), "c".into())]).unwrap();
            db.insert_claim(&claim("h1", "b1", "alice")).unwrap();
            db.insert_claim(&claim("h2", "b2", "bob")).unwrap();
            db.set_maintenance("b2", true, "root", None).unwrap();
        }
        let db = Db::open(&p).unwrap();
        assert_eq!(db.claims().unwrap().len(), 2);
        db.sync_boards(&[("b1".into(), "c".into())]).unwrap();
        assert!(db.maintenance().unwrap().is_empty(), "b2 is gone from the boards table");
        // The claim on b2 is the claim book's to drop (through the ledger).
        assert_eq!(db.claims().unwrap().len(), 2);
        assert!(db.delete_claim("h2", "claim_dropped", "bob", None).unwrap());
        assert_eq!(db.claims().unwrap(), vec![claim("h1", "b1", "alice")]);
    }

    #[test]
    fn jail_indexes_are_stable_and_reused() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("s.db")).unwrap();
        let b = |names: &[&str]| names.iter().map(|n| (n.to_string(), "c".to_string())).collect::<Vec<_>>();
        db.sync_boards(&b(&["b", "c", "a"])).unwrap();
        let m = db.jail_indexes().unwrap();
        assert_eq!((m["a"], m["b"], m["c"]), (0, 1, 2));
        db.sync_boards(&b(&["a", "c", "d"])).unwrap();
        let m = db.jail_indexes().unwrap();
        assert_eq!((m["a"], m["c"], m["d"]), (0, 2, 1), "d takes b's freed index; others keep theirs");
        db.set_jail("a", Some(("h1", "{}"))).unwrap();
        assert_eq!(db.jail_of("a").unwrap(), Some(("h1".to_string(), "{}".to_string())));
        db.set_jail("a", None).unwrap();
        assert_eq!(db.jail_of("a").unwrap(), None);
    }
}
