//! Headless Chromium for the page tests: chromedriver (Debian's
//! `chromium-driver`) in a process group of its own, with the chromium it
//! starts, all of it ended when dropped; and a WebDriver session on it.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::ports::free_port;

pub struct Driver {
    child: std::process::Child,
    pub port: u16,
}

impl Driver {
    /// Starts chromedriver, its log in `dir` (so a sweep after a killed
    /// test finds it), and waits until it listens.
    pub fn start(dir: &Path) -> Driver {
        let exe = "/usr/bin/chromedriver";
        assert!(
            Path::new(exe).exists() && Path::new("/usr/bin/chromium").exists(),
            "the browser test needs Debian's chromium and chromium-driver (make deps)"
        );
        let port = free_port();
        let child = std::process::Command::new(exe)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.join("chromedriver.log").display()))
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver");
        super::sweep::started(dir, child.id());
        let d = Driver { child, port };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// A headless chromium session, its profile in `profile`.
    pub async fn session(&self, profile: &Path) -> fantoccini::Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1100,700",
                         format!("--user-data-dir={}", profile.display())],
            }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group is chromedriver's (its pid): chromium and its helpers.
        let pg = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs `script` in the page until it returns `true`; past `limit` the
/// test fails naming `what`, with the boards table as the page shows it.
pub async fn until_true(c: &fantoccini::Client, limit: Duration, what: &str, script: &str) {
    let t0 = Instant::now();
    loop {
        if c.execute(script, vec![]).await.ok() == Some(serde_json::Value::Bool(true)) {
            return;
        }
        if t0.elapsed() >= limit {
            let rows = c.execute("return document.querySelector('#boards tbody')?.textContent;", vec![]).await;
            panic!("timed out waiting for {what}; the boards table: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
