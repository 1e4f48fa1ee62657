//! Turns for tests that use names or resources of the whole host (jail
//! interfaces named by board index, an etcd lab that needs both cores):
//! one test at a time in this process (a mutex) and across processes (a
//! lock file), so two test runs on one machine (two checkouts, say) take
//! turns instead of colliding.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

/// A held turn; given back when dropped.
pub struct Turn {
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

/// Waits for the turn named `name`, guarded in this process by `lock`.
pub fn take(lock: &'static Mutex<()>, name: &str) -> Turn {
    let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    let path = format!("/run/lock/boardlab-test-{name}.lock");
    let file = File::options().create(true).truncate(false).write(true).open(&path).unwrap();
    // SAFETY: flock on a descriptor this function owns; it blocks until
    // the lock is held and is released when the file is closed.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock {path}: {}", std::io::Error::last_os_error());
    Turn { _file: file, _guard: guard }
}
