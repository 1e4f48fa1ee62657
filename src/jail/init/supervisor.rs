//! The jail's init, once the jail runs: starts its services, restarts one
//! that died (with a back-off), reaps every orphan, has them reload on
//! SIGUSR1 (labd's renewed host certificate), and stops them all on
//! SIGTERM.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::jail::services::{Ready, Service};
use crate::jail::JailError;

struct Running {
    svc: Service,
    pid: Option<Pid>,
    started: Instant,
    /// Current back-off before the next restart.
    backoff: Duration,
    next_start: Option<Instant>,
}

/// Starts, watches and restarts the services; reaps every orphan.
pub(super) struct Supervisor {
    services: Vec<Running>,
}

/// A service that ran this long is considered healthy: its back-off resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Time services get to exit on SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// `pid:comm` of every process in the jail but the init (for the log).
fn jail_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.parse::<u32>().is_ok_and(|p| p > 1))
                .map(|p| {
                    format!("{p}:{}", std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim())
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Supervisor {
    pub(super) fn new(services: Vec<Service>) -> Supervisor {
        let services = services
            .into_iter()
            .map(|svc| Running { svc, pid: None, started: Instant::now(), backoff: BACKOFF_MIN, next_start: None })
            .collect();
        Supervisor { services }
    }

    fn spawn(r: &mut Running) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&r.svc.log);
        let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let Some((prog, args)) = r.svc.argv.split_first() else { return };
        let mut cmd = Command::new(prog);
        // SAFETY: the closure only calls sigprocmask, which is
        // async-signal-safe, between fork and exec.
        unsafe {
            // The init blocks SIGCHLD/SIGTERM/... to wait for them with
            // sigtimedwait; the mask is inherited through exec, and a
            // service with SIGTERM blocked cannot be stopped (dnsmasq).
            cmd.pre_exec(|| SigSet::all().thread_unblock().map_err(std::io::Error::from));
        }
        let res = cmd
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn();
        r.started = Instant::now();
        r.next_start = None;
        match res {
            // The Child handle is dropped: we reap by pid with waitpid(-1).
            Ok(c) => r.pid = Some(Pid::from_raw(i32::try_from(c.id()).unwrap_or(0))),
            Err(e) => {
                eprintln!("labjail: cannot start {}: {e}", r.svc.name);
                r.pid = None;
                r.next_start = Some(Instant::now() + r.backoff);
                r.backoff = (r.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    pub(super) fn start_all(&mut self) {
        for r in &mut self.services {
            Self::spawn(r);
        }
    }

    /// Reaps every exited child; schedules restarts of services among them.
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                    for r in &mut self.services {
                        if r.pid == Some(pid) {
                            eprintln!("labjail: {} (pid {pid}) exited; restarting in {:?}", r.svc.name, r.backoff);
                            r.pid = None;
                            if r.started.elapsed() > HEALTHY_AFTER {
                                r.backoff = BACKOFF_MIN;
                            }
                            r.next_start = Some(Instant::now() + r.backoff);
                            r.backoff = (r.backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    pub(super) fn wait_ready(&mut self, timeout: Duration) -> Result<(), JailError> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.services.len() {
            loop {
                self.reap();
                let r = &self.services[i];
                if r.pid.is_none() {
                    return Err(JailError::Init(format!(
                        "{} exited at start (see {} in the jail)",
                        r.svc.name, r.svc.log
                    )));
                }
                let up = match &r.svc.ready {
                    Ready::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok(),
                    Ready::Alive => r.started.elapsed() > Duration::from_millis(200),
                    Ready::Udp(port) => crate::jail::services::udp_port_bound(*port),
                };
                if up {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(JailError::Init(format!("{} did not become ready", r.svc.name)));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Alive services must still be alive after the others came up.
        self.reap();
        match self.services.iter().find(|r| r.pid.is_none()) {
            Some(r) => Err(JailError::Init(format!("{} exited at start (see {} in the jail)", r.svc.name, r.svc.log))),
            None => Ok(()),
        }
    }

    /// SIGTERM the services (their process groups) and everything else in
    /// the jail, give them [`STOP_GRACE`], then SIGKILL what is left.
    pub(super) fn stop(&mut self) {
        for r in &self.services {
            if let Some(pid) = r.pid {
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGTERM);
            }
        }
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        if self.wait_all(STOP_GRACE) {
            return;
        }
        eprintln!("labjail: still running {STOP_GRACE:?} after SIGTERM: {:?}; killing", jail_processes());
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        self.wait_all(Duration::from_secs(2));
    }

    /// SIGHUP to every running service that reloads on it. Its PID is
    /// still this init's unreaped child, so the signal reaches it and no
    /// other process.
    fn reload(&self) {
        for r in self.services.iter().filter(|r| r.svc.reload) {
            if let Some(pid) = r.pid {
                eprintln!("labjail: reloading {} (pid {pid})", r.svc.name);
                let _ = kill(pid, Signal::SIGHUP);
            }
        }
    }

    /// Reaps until no child is left (true) or the time is up (false).
    pub(super) fn wait_all(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => return true, // ECHILD: nothing left
                Ok(_) => {}
            }
        }
        false
    }

    pub(super) fn run(&mut self, set: &SigSet) -> i32 {
        loop {
            let now = Instant::now();
            for r in &mut self.services {
                if r.pid.is_none() && r.next_start.is_some_and(|t| t <= now) {
                    Self::spawn(r);
                }
            }
            let wait = self
                .services
                .iter()
                .filter_map(|r| r.next_start)
                .map(|t| t.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(5))
                .max(Duration::from_millis(10));
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(5),
                tv_nsec: libc::c_long::from(i32::try_from(wait.subsec_nanos()).unwrap_or(0)),
            };
            // SAFETY: `set` is a valid sigset_t, a null siginfo is allowed,
            // and `ts` lives across the call.
            let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
            if sig == libc::SIGTERM || sig == libc::SIGINT || sig == libc::SIGHUP {
                self.stop();
                return 0;
            }
            if sig == libc::SIGUSR1 {
                self.reload();
            }
            self.reap();
        }
    }
}
