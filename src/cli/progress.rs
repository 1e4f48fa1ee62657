//! `claim --wait`'s place in the queue: while the claim waits, a second
//! connection asks labd where the caller's waiting claims stand (`queue`)
//! every two seconds and says so on stderr when it changes, so a person or
//! a CI log sees the wait move.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::client::Client;
use super::request::named_request_line;

/// How often the place is asked for (the first time after one period:
/// a claim served at once says nothing).
const EVERY: Duration = Duration::from_secs(2);

/// Reports the place of the caller's wait for `class` until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
}

impl Progress {
    pub fn start(socket: PathBuf, as_user: Option<String>, class: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        // Detached: it ends on its own within a tick of being stopped, and
        // with the process.
        let _ = std::thread::Builder::new().name("queue-place".into()).spawn(move || {
            let mut last: Option<String> = None;
            let mut id = 0;
            loop {
                for _ in 0..20 {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(EVERY / 20);
                }
                id += 1;
                let Some(line) = place(&socket, as_user.as_deref(), &class, id) else { continue };
                if s.load(Ordering::Relaxed) {
                    return;
                }
                if last.as_deref() != Some(line.as_str()) {
                    eprintln!("{line}");
                    last = Some(line);
                }
            }
        });
        Progress { stop }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `[waiting for a rockpro64: 2nd of 3 in the queue]`, if labd says.
fn place(socket: &std::path::Path, as_user: Option<&str>, class: &str, id: u64) -> Option<String> {
    let mut c = Client::connect(socket).ok()?;
    let reply: Value = serde_json::from_str(&c.call(&named_request_line(id, "queue", as_user)).ok()?).ok()?;
    let mine = reply["result"].as_array()?.iter().find(|p| p["class"] == class)?.clone();
    let (place, of) = (mine["place"].as_u64()?, mine["waiting"].as_u64()?);
    Some(format!("[waiting for a {class}: {} of {of} in the queue]", ordinal(place)))
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`.
pub fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111].into_iter().map(ordinal).collect();
        assert_eq!(got, ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]);
    }
}
