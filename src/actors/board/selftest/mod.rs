//! `labd selftest`'s work on one board, for commissioning and after
//! rewiring: read the port; get the link ready to watch; power-cycle the
//! board (each set read back); then, at once, the port's power detection,
//! the console's first output (or the board file's `console.selftest`
//! pattern) and the board's DHCP request on its link; and last, put the
//! port and the link back as they were. One step a line, each timed.
//!
//! The registry has taken the board out of service for the test; the
//! board's duty is `Testing` meanwhile (no claim attaches), and its jail
//! slot is held (no link check or jail work runs under the test).

mod steps;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::info;

use super::{BoardActor, Duty};
use crate::actors::catch;
use crate::config::Network;
use crate::console::Console;
use crate::link::LinkId;
use crate::power::{PortState, SwitchClient};
use crate::protocol::{ApiError, Code, PowerState, SelftestReport, SelftestStep, Verdict};

/// Run the selftest; answers its report (a test that ran, passed or not),
/// or why it could not run.
#[derive(Message)]
#[rtype(result = "Result<SelftestReport, ApiError>")]
pub struct Selftest {
    /// How long each sign of life after power-on is waited for.
    pub wait: Duration,
    /// A class's health check rather than an operator's selftest.
    pub health: Option<HealthCheck>,
}

/// What a health check asks of the selftest's machinery: the console's
/// pattern (else the board file's `console.selftest`, else any byte),
/// whether the DHCP request counts, and the port left off at the end.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub pattern: Option<String>,
    pub dhcp: bool,
}

/// What the test works with, taken from the actor when it starts.
struct Plan {
    board: String,
    port: Arc<tokio::sync::Mutex<SwitchClient>>,
    group: u32,
    portno: u32,
    cycle_delay: Duration,
    console: Option<Console>,
    pattern: Option<String>,
    network: Option<Network>,
    link_id: Option<LinkId>,
    wait: Duration,
    /// Whether the link and the board's DHCP request are part of it.
    dhcp: bool,
    /// Whether the port is left off at the end (a health check), rather
    /// than as it was.
    off_after: bool,
}

/// What the test left, for the actor to take up.
struct Outcome {
    report: SelftestReport,
    /// The port's state at the end, when known.
    power: Option<PowerState>,
    /// The link's check after the test (None: not touched).
    link: Option<Result<Option<LinkId>, String>>,
}

/// The steps so far.
struct Steps(Vec<SelftestStep>);

impl Steps {
    fn add(&mut self, step: &str, verdict: Verdict, since: Instant, detail: impl Into<String>) {
        let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.push(SelftestStep { step: step.into(), verdict, ms, detail: detail.into() });
    }

    fn skip(&mut self, steps: &[&str], why: &str) {
        for s in steps {
            self.0.push(SelftestStep { step: (*s).into(), verdict: Verdict::Skip, ms: 0, detail: why.into() });
        }
    }
}

impl Handler<Selftest> for BoardActor {
    type Result = ResponseActFuture<Self, Result<SelftestReport, ApiError>>;

    fn handle(&mut self, msg: Selftest, _ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.duty.can_test(self.name()) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        if self.power_inflight > 0 {
            let e = ApiError::new(Code::Busy, format!("board {} is switching its power; try again", self.name()));
            return Box::pin(actix::fut::ready(Err(e)));
        }
        info!(board = %self.name(), "selftest");
        self.duty = Duty::Testing;
        // The port changes under the test: `power` is not to be trusted.
        self.power_inflight += 1;
        let plan = Plan {
            board: self.name().to_string(),
            port: self.port.clone(),
            group: self.cfg.group,
            portno: self.cfg.port,
            cycle_delay: self.policy.cycle_delay,
            console: self.console.clone(),
            pattern: msg
                .health
                .as_ref()
                .and_then(|h| h.pattern.clone())
                .or_else(|| self.cfg.console.as_ref().and_then(|c| c.selftest.clone())),
            network: self.link.network.clone(),
            link_id: self.link.id.clone(),
            wait: msg.wait,
            dhcp: msg.health.as_ref().is_none_or(|h| h.dhcp),
            off_after: msg.health.is_some(),
        };
        let slot = self.jail_cell.slot.clone();
        let generation = self.generation;
        let fut = catch(async move {
            // In turn with the board's jail work and link checks.
            let _slot = slot.lock_owned().await;
            plan.run().await
        });
        Box::pin(actix::fut::wrap_future::<_, Self>(fut).map(move |res, act, ctx| {
            if generation != act.generation {
                return Err(ApiError::new(Code::Internal, "the board restarted during its selftest; run it again"));
            }
            act.power_inflight = act.power_inflight.saturating_sub(1);
            if act.duty == Duty::Testing {
                act.duty = Duty::Free;
            }
            let out = match res {
                Ok(o) => o,
                Err(p) => {
                    act.crashed(ctx, &p);
                    return Err(ApiError::new(Code::Internal, format!("the selftest failed: {p}")));
                }
            };
            act.delivery = None;
            match out.power {
                Some(p) => act.healthy(p, ctx),
                None => act.probe(ctx),
            }
            if out.link.is_some() {
                act.link_checked(out.link, ctx);
            }
            Ok(out.report)
        }))
    }
}

impl Plan {
    async fn run(self) -> Outcome {
        let mut s = Steps(Vec::new());
        let done = |s: Steps, power, link| {
            let pass = s.0.iter().all(|x| x.verdict != Verdict::Fail);
            Outcome { report: SelftestReport { board: self.board.clone(), pass, steps: s.0 }, power, link }
        };
        let (group, portno) = (self.group, self.portno);

        let t = Instant::now();
        let was = match self.port.lock().await.get(group, portno).await {
            Ok(p) => {
                s.add("port", Verdict::Pass, t, format!("port {group}.{portno} reads {}", p.as_str()));
                p
            }
            Err(e) => {
                s.add("port", Verdict::Fail, t, e.to_string());
                let why = "not run: the port cannot be read";
                s.skip(&["link", "power", "detection", "console", "dhcp", "restore"], why);
                return done(s, None, None);
            }
        };

        let t = Instant::now();
        let link = match &self.network {
            _ if !self.dhcp => {
                s.add("link", Verdict::Skip, t, "not part of the check (no dhcp in its [health.CLASS])");
                None
            }
            None => {
                s.add("link", Verdict::Skip, t, "the board file names no network");
                None
            }
            Some(n) => match steps::link_up(n.clone()).await {
                Ok(up) => {
                    s.add(
                        "link",
                        Verdict::Pass,
                        t,
                        format!("{} is there, up for the test without an address", up.ifname),
                    );
                    Some(Ok(up))
                }
                Err(e) => {
                    s.add("link", Verdict::Fail, t, e.clone());
                    Some(Err(e))
                }
            },
        };

        // Attached before power-on: the first byte is not missed.
        let session = self.console.as_ref().map(steps::console_session);

        let t = Instant::now();
        let cycled = async {
            let mut c = self.port.lock().await;
            c.set(group, portno, false).await?;
            tokio::time::sleep(self.cycle_delay).await;
            c.set(group, portno, true).await
        }
        .await;
        let on_at = Instant::now();
        let powered = match cycled {
            Ok(()) => {
                let d = format!("off, {} ms, on; each read back", self.cycle_delay.as_millis());
                s.add("power", Verdict::Pass, t, d);
                true
            }
            Err(e) => {
                s.add("power", Verdict::Fail, t, e.to_string());
                s.skip(&["detection", "console", "dhcp"], "not run: the power step failed");
                false
            }
        };

        if powered {
            let until = on_at + self.wait;
            let (det, con, dhcp) = tokio::join!(
                steps::detection(&self.port, group, portno, until.min(on_at + steps::DETECTION_WAIT)),
                steps::console_output(session, self.pattern.as_deref(), until),
                steps::dhcp_request(link.as_ref(), until, self.dhcp),
            );
            for (name, (verdict, detail, at)) in [("detection", det), ("console", con), ("dhcp", dhcp)] {
                let ms = at.map(|a| a.saturating_duration_since(on_at)).unwrap_or_else(|| on_at.elapsed());
                let ms = u64::try_from(ms.as_millis()).unwrap_or(u64::MAX);
                s.0.push(SelftestStep { step: name.into(), verdict, ms, detail });
            }
        }

        let t = Instant::now();
        let mut back = Vec::new();
        let mut failed = Vec::new();
        let end = if self.off_after { PortState::Off } else { was };
        let power = match end {
            PortState::On if powered => {
                back.push("port left on, as it was".to_string());
                Some(PowerState::On)
            }
            _ => match self.port.lock().await.set(group, portno, end == PortState::On).await {
                Ok(()) if end == was => {
                    back.push(format!("port {} again (read back)", end.as_str()));
                    Some(end.into())
                }
                Ok(()) => {
                    back.push(format!("port {} (read back)", end.as_str()));
                    Some(end.into())
                }
                Err(e) => {
                    failed.push(format!("the port could not be set {}: {e}", end.as_str()));
                    None
                }
            },
        };
        let link = match (link, &self.network) {
            (Some(up), Some(n)) => {
                let r = steps::link_back(up.ok(), n.clone(), self.link_id.clone()).await;
                match &r {
                    Ok(_) => back.push("link parked".into()),
                    Err(e) => failed.push(e.clone()),
                }
                Some(r)
            }
            _ => None,
        };
        if failed.is_empty() {
            s.add("restore", Verdict::Pass, t, back.join(", "));
        } else {
            s.add("restore", Verdict::Fail, t, failed.join("; "));
        }
        done(s, power, link)
    }
}
