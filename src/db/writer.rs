//! The state database on a thread of its own.

use super::{Db, DbError};

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
