//! The console against real pseudo-terminals: the test plays the board on the
//! master side, the Console opens the slave through a symlink (as labsim
//! gives it). Everything runs on a current-thread runtime inside a LocalSet,
//! as under actix.

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use boardlab::config::ConsoleSource;
use boardlab::console::{Console, ConsoleSettings, Output};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios;
use tokio::io::unix::AsyncFd;
use tokio::time::{sleep, timeout, Instant};

fn run<F: Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    rt.block_on(local.run_until(f));
}

/// The board's end of a pty pair.
struct Board {
    master: AsyncFd<OwnedFd>,
    /// Held so that the slave keeps its raw settings until the Console opens it.
    _slave: OwnedFd,
    slave_path: PathBuf,
}

impl Board {
    fn new() -> Board {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut t = termios::tcgetattr(&pty.slave).unwrap();
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &t).unwrap();
        fcntl(pty.master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let slave_path = nix::unistd::ttyname(&pty.slave).unwrap();
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
        let master = unsafe { AsyncFd::register(pty.master) }.unwrap();
        Board { master, _slave: pty.slave, slave_path }
    }

    async fn write(&self, mut data: &[u8]) {
        while !data.is_empty() {
            let mut g = self.master.writable().await.unwrap();
            if let Ok(r) = g.try_io(|fd| nix::unistd::write(fd, data).map_err(std::io::Error::from)) {
                data = &data[r.unwrap()..];
            }
        }
    }

    async fn read(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        timeout(Duration::from_secs(5), async {
            while out.len() < n {
                let mut g = self.master.readable().await.unwrap();
                if let Ok(r) = g.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(std::io::Error::from))
                {
                    let k = r.unwrap();
                    out.extend_from_slice(&buf[..k]);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("board read {} of {n} bytes", out.len()));
        out
    }
}

fn settings(dir: &Path, link: &Path, max: u64, keep: u32) -> ConsoleSettings {
    ConsoleSettings {
        board: "b1".into(),
        source: ConsoleSource::Path(link.to_path_buf()),
        baud: 115_200,
        log_dir: dir.join("logs"),
        log_max_bytes: max,
        log_keep: keep,
        metrics: Default::default(),
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(3);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

async fn log_until(c: &Console, handle: &str, what: &[u8]) -> Vec<u8> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        if let Ok(l) = c.read_log(handle, None).await {
            if l.windows(what.len()).any(|w| w == what) {
                return l;
            }
        }
        assert!(Instant::now() < end, "log of {handle} never got {:?}", String::from_utf8_lossy(what));
        sleep(Duration::from_millis(10)).await;
    }
}

async fn recv_n(o: &mut Output, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(Duration::from_secs(5), async {
        while out.len() < n {
            out.extend_from_slice(&o.recv().await.expect("output ended"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("session got {} of {n} bytes", out.len()));
    out
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

#[test]
fn bytes_round_trip_and_one_writer() {
    run(async {
        let t = tempfile::tempdir().unwrap();
        let board = Board::new();
        let link = t.path().join("console");
        std::os::unix::fs::symlink(&board.slave_path, &link).unwrap();
        let c = Console::start(settings(t.path(), &link, 1 << 20, 2));
        until("attached", || c.status().state() == "attached").await;
        let st = c.status();
        assert_eq!(st.device.as_deref(), board.slave_path.to_str());
        assert_eq!(serde_json::to_value(&st).unwrap()["state"], "attached");

        let mut s1 = c.attach(true);
        let mut s2 = c.attach(true);
        assert!(s1.writer.is_some());
        assert!(s2.writer.is_none(), "second writer refused while the first holds the slot");
        assert!(c.status().writer);
        assert_eq!(c.status().readers, 2);

        let all: Vec<u8> = (0..=255u8).cycle().take(256 * 8).collect();
        board.write(&all).await;
        let a = recv_n(&mut s1.output, all.len()).await;
        let b = recv_n(&mut s2.output, all.len()).await;
        assert_eq!(a, all);
        assert_eq!(a, b, "sessions see identical bytes");

        let w = s1.writer.take().unwrap();
        let keys: Vec<u8> = (0..=255u8).collect();
        w.write(&keys).await.unwrap();
        assert_eq!(board.read(256).await, keys);

        assert!(c.attach(true).writer.is_none());
        drop(w);
        assert!(!c.status().writer);
        let s3 = c.attach(true);
        assert!(s3.writer.is_some(), "slot free after the writer dropped");
        drop(s1);
        drop(s2);
        assert_eq!(c.status().readers, 1);

        // Stop ends the sessions' streams and refuses writes.
        let mut s3 = s3;
        c.stop();
        c.stop();
        assert!(timeout(Duration::from_secs(2), s3.output.recv()).await.unwrap().is_none());
        assert!(s3.writer.as_ref().unwrap().write(b"x").await.is_err());
        assert_eq!(c.status().state(), "missing");
    });
}

#[test]
fn logs_follow_claims_and_rotate() {
    run(async {
        let t = tempfile::tempdir().unwrap();
        let board = Board::new();
        let link = t.path().join("console");
        std::os::unix::fs::symlink(&board.slave_path, &link).unwrap();
        let c = Console::start(settings(t.path(), &link, 4096, 2));
        until("attached", || c.status().state() == "attached").await;
        let a = "bl-0123456789abcdef0123456789abcdef";
        let b = "bl-fedcba9876543210fedcba9876543210";

        // A claim applies to what is read after it: wait until the pump has
        // read the unclaimed line.
        let mut s0 = c.attach(false);
        board.write(b"unclaimed output\r\n").await;
        recv_n(&mut s0.output, 18).await;
        c.set_claim(Some(a.into()));
        board.write(b"alpha says hello\r\n").await;
        let la = log_until(&c, a, b"alpha says hello\r\n").await;
        assert!(!contains(&la, b"unclaimed"));
        c.set_claim(Some(b.into()));
        recv_n(&mut s0.output, 18).await;
        board.write(b"beta says hello\r\n").await;
        let lb = log_until(&c, b, b"beta says hello\r\n").await;
        assert!(!contains(&lb, b"alpha"), "B's log has none of A's bytes");
        assert!(!contains(&c.read_log(a, None).await.unwrap(), b"beta"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(t.path().join(format!("logs/b1/{b}.log"))).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        c.remove_logs(a);
        assert!(c.read_log(a, None).await.is_err());
        assert!(c.read_log("../../etc/passwd", None).await.is_err());

        // 1000 lines of 12 bytes: about 3 rotations of 4096 bytes.
        let mut text = Vec::new();
        for i in 0..1000 {
            text.extend_from_slice(format!("line {i:05}\r\n").as_bytes());
        }
        board.write(&text).await;
        log_until(&c, b, b"line 00999\r\n").await;
        let dir = t.path().join("logs/b1");
        assert!(dir.join(format!("{b}.log.1")).exists());
        assert!(dir.join(format!("{b}.log.2")).exists());
        assert!(!dir.join(format!("{b}.log.3")).exists(), "log_keep = 2");
        for n in ["", ".1", ".2"] {
            assert!(std::fs::metadata(dir.join(format!("{b}.log{n}"))).unwrap().len() <= 4096);
        }
        let tail = c.read_log(b, Some(3)).await.unwrap();
        assert_eq!(tail, b"line 00997\r\nline 00998\r\nline 00999\r\n");
        let tail = c.read_log(b, Some(700)).await.unwrap();
        assert_eq!(tail.len(), 700 * 12, "tail spans the rotated files");
        assert!(tail.starts_with(b"line 00300\r\n"));

        c.set_claim(None);
        let mut s = c.attach(false);
        board.write(b"still read\r\n").await;
        assert_eq!(recv_n(&mut s.output, 12).await, b"still read\r\n");
        assert!(!contains(&c.read_log(b, None).await.unwrap(), b"still read"));
    });
}

#[test]
fn hot_plug_leaves_a_gap_and_recovers() {
    run(async {
        let t = tempfile::tempdir().unwrap();
        let board = Board::new();
        let link = t.path().join("console");
        std::os::unix::fs::symlink(&board.slave_path, &link).unwrap();
        let c = Console::start(settings(t.path(), &link, 1 << 20, 2));
        until("attached", || c.status().state() == "attached").await;
        let h = "bl-00000000000000000000000000000001";
        c.set_claim(Some(h.into()));
        let mut s = c.attach(true);
        board.write(b"before\r\n").await;
        assert_eq!(recv_n(&mut s.output, 8).await, b"before\r\n");

        // Unplug.
        drop(board);
        std::fs::remove_file(&link).unwrap();
        until("missing", || c.status().state() == "missing").await;
        assert!(c.status().device.is_none());
        log_until(&c, h, b"[boardlab] console adapter vanished at ").await;
        let w = s.writer.as_ref().unwrap();
        let e = w.write(b"x").await.unwrap_err();
        assert!(e.to_string().contains("not attached"), "{e}");
        let notice = s.output.recv().await.unwrap();
        assert!(contains(&notice, b"vanished"), "{:?}", String::from_utf8_lossy(&notice));
        // No busy loop, no reattach while nothing is there.
        sleep(Duration::from_millis(600)).await;
        assert_eq!(c.status().state(), "missing");

        // Plug a new adapter in.
        let board = Board::new();
        std::os::unix::fs::symlink(&board.slave_path, &link).unwrap();
        let t0 = Instant::now();
        until("attached again", || c.status().state() == "attached").await;
        assert!(t0.elapsed() < Duration::from_secs(1), "reattached in {:?}", t0.elapsed());
        assert_eq!(c.status().device.as_deref(), board.slave_path.to_str());
        let notice = s.output.recv().await.unwrap();
        assert!(contains(&notice, b"back"), "{:?}", String::from_utf8_lossy(&notice));
        board.write(b"after\r\n").await;
        assert_eq!(recv_n(&mut s.output, 7).await, b"after\r\n");
        s.writer.as_ref().unwrap().write(b"typed").await.unwrap();
        assert_eq!(board.read(5).await, b"typed");
        let log = log_until(&c, h, b"after\r\n").await;
        let text = String::from_utf8_lossy(&log);
        let gone = text.find("[boardlab] console adapter vanished at ").unwrap();
        let back = text.find("[boardlab] console adapter back at ").unwrap();
        assert!(text.find("before").unwrap() < gone && gone < back && back < text.find("after").unwrap(), "{text}");
    });
}

#[test]
fn missing_from_the_start_and_lagging_reader() {
    run(async {
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("console");
        let c = Console::start(settings(t.path(), &link, 1 << 20, 2));
        sleep(Duration::from_millis(300)).await;
        let st = c.status();
        assert_eq!(st.state(), "missing");
        assert!(st.message.unwrap().contains("does not exist"));

        let board = Board::new();
        std::os::unix::fs::symlink(&board.slave_path, &link).unwrap();
        until("attached", || c.status().state() == "attached").await;
        // A reader that never reads while far more than the channel holds goes by.
        let mut slow = c.attach(false);
        let mut fast = c.attach(false);
        let chunk = vec![b'z'; 4000];
        let total = 6000 * chunk.len();
        let board_task = async {
            for _ in 0..6000 {
                board.write(&chunk).await;
            }
        };
        let reader = async {
            let got = recv_n(&mut fast.output, total).await;
            assert!(got.iter().all(|&b| b == b'z'), "the fast reader lost nothing");
        };
        tokio::join!(board_task, reader);
        let first = slow.output.recv().await.unwrap();
        let text = String::from_utf8_lossy(&first);
        assert!(text.starts_with("\r\n[boardlab: ") && text.ends_with(" bytes dropped]\r\n"), "{text}");
    });
}

#[test]
fn match_source_with_no_such_adapter_is_missing() {
    run(async {
        let t = tempfile::tempdir().unwrap();
        let mut s = settings(t.path(), Path::new("/nonexistent"), 4096, 1);
        s.source = ConsoleSource::Match([("ID_SERIAL_SHORT".to_string(), "NO-SUCH-ADAPTER".to_string())].into());
        let c = Console::start(s);
        until("a verdict", || c.status().message.as_deref() != Some("looking for the device")).await;
        let st = c.status();
        assert_eq!(st.state(), "missing");
        assert_eq!(st.message.as_deref(), Some("no tty matches ID_SERIAL_SHORT=NO-SUCH-ADAPTER"));
        let mut sess = c.attach(true);
        assert!(sess.writer.as_ref().unwrap().write(b"x").await.is_err());
        drop(c); // the last handle: the pump stops
        assert!(timeout(Duration::from_secs(2), sess.output.recv()).await.unwrap().is_none());
    });
}
