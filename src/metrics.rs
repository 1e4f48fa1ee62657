//! labd's counters, for `/metrics` (served by `crate::web`).
//!
//! One [`Metrics`] is made in `daemon.rs`, registered in the one
//! Prometheus registry there, and handed down to whoever counts: the
//! registry actor (claims, restarts), the board actors (power, jail
//! builds), the power code (SNMP latency), the consoles (bytes) and the
//! socket front end (requests). Every update on a request's path is an
//! atomic add on a handle made at start; the per-switch and per-board
//! handles are made once for the configured switches and boards, so
//! nothing is looked up or locked when counting. (The two histograms,
//! SNMP latency and jail builds, take the crate's short lock per
//! observation: neither is on a socket request's path.)
//!
//! What the lab looks like (boards by state, claims held, waiters) is not
//! counted here: `crate::web` reads it from the published snapshot at
//! each scrape.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Config;
use crate::protocol::{Code, FUNCTIONS};

/// Label sets: a list of (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The prefix of every metric's name.
pub const PREFIX: &str = "boardlab";

/// The handles every part of labd counts with.
#[derive(Debug)]
pub struct Metrics {
    pub claims_granted: Counter,
    pub claims_released: Counter,
    pub claims_expired: Counter,
    pub claims_force_released: Counter,
    /// Board actors restarted (a supervised restart after a panic, or a
    /// new actor for one that died), by board.
    actor_restarts: Family<Labels, Counter>,
    /// Health checks run, by board and result (`pass`, `fail`, or
    /// `not_run`: the board was busy or its actor gone).
    health_checks: Family<Labels, Counter>,
    /// Claims' jails built, in seconds (the build itself, not its wait).
    pub jail_build_seconds: Histogram,
    /// Socket requests by function and outcome.
    pub requests: Arc<Requests>,
    switches: BTreeMap<String, Arc<SwitchMetrics>>,
    consoles: BTreeMap<String, ConsoleMetrics>,
}

/// One switch's counters.
#[derive(Debug, Clone)]
pub struct SwitchMetrics {
    pub on: Counter,
    pub off: Counter,
    pub cycle: Counter,
    pub on_failed: Counter,
    pub off_failed: Counter,
    pub cycle_failed: Counter,
    /// One SNMP request (with its retries), answered or not, in seconds.
    pub snmp_seconds: Histogram,
}

/// One board's console counters.
#[derive(Debug, Clone, Default)]
pub struct ConsoleMetrics {
    /// Bytes read from the board's serial device.
    pub read: Counter,
    /// Bytes a session missed because it fell behind, and bytes not logged
    /// because the disk was too slow.
    pub dropped: Counter,
}

impl Metrics {
    /// The handles for `cfg`'s switches and boards, registered in `reg`.
    pub fn new(cfg: &Config, reg: &mut Registry) -> Metrics {
        let counter = |reg: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            reg.register(name, help, c.clone());
            c
        };
        let claims_granted = counter(reg, "claims_granted", "Claims granted (a board handed to a claimant)");
        let claims_released = counter(reg, "claims_released", "Claims released by their claimant");
        let claims_expired = counter(reg, "claims_expired", "Claims ended by their lease running out");
        let claims_force_released = counter(reg, "claims_force_released", "Claims ended by an operator");
        let actor_restarts = Family::<Labels, Counter>::default();
        reg.register("actor_restarts", "Board actors restarted, by board", actor_restarts.clone());
        let health_checks = Family::<Labels, Counter>::default();
        reg.register("health_checks", "Health checks run, by board and result", health_checks.clone());
        let jail_build_seconds = Histogram::new(exponential_buckets(0.025, 2.0, 12));
        reg.register_with_unit(
            "jail_build_duration",
            "Time to build a claim's jail (after its turn came)",
            Unit::Seconds,
            jail_build_seconds.clone(),
        );

        let ops = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let snmp: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 14)));
        let mut switches = BTreeMap::new();
        for name in cfg.switches.keys() {
            // One at a time: a family's handle holds its lock until the
            // statement ends.
            let get = |fam: &Family<Labels, Counter>, action: &str| -> Counter {
                let c = fam.get_or_create(&vec![("switch", name.clone()), ("action", action.to_string())]).clone();
                c
            };
            let snmp_seconds = snmp.get_or_create(&vec![("switch", name.clone())]).clone();
            let m = SwitchMetrics {
                on: get(&ops, "on"),
                off: get(&ops, "off"),
                cycle: get(&ops, "cycle"),
                on_failed: get(&failures, "on"),
                off_failed: get(&failures, "off"),
                cycle_failed: get(&failures, "cycle"),
                snmp_seconds,
            };
            switches.insert(name.clone(), Arc::new(m));
        }
        reg.register("power_operations", "Power operations asked of a switch, by action", ops);
        reg.register("power_failures", "Power operations that failed, by switch and action", failures);
        reg.register_with_unit(
            "snmp_request_duration",
            "One SNMP request to a switch, retries included, answered or not",
            Unit::Seconds,
            snmp,
        );

        let read = Family::<Labels, Counter>::default();
        let dropped = Family::<Labels, Counter>::default();
        let mut consoles = BTreeMap::new();
        for b in cfg.boards.iter().filter(|b| b.console.is_some()) {
            let l = vec![("board", b.name.clone())];
            let read = read.get_or_create(&l).clone();
            let dropped = dropped.get_or_create(&l).clone();
            let m = ConsoleMetrics { read, dropped };
            consoles.insert(b.name.clone(), m);
        }
        reg.register_with_unit("console_read", "Bytes read from boards' serial consoles", Unit::Bytes, read);
        reg.register_with_unit(
            "console_dropped",
            "Console bytes a session missed (it fell behind) or the log did not keep (disk too slow)",
            Unit::Bytes,
            dropped,
        );

        let requests = Arc::new(Requests::default());
        reg.register_collector(Box::new(requests.clone()));
        Metrics {
            claims_granted,
            claims_released,
            claims_expired,
            claims_force_released,
            actor_restarts,
            health_checks,
            jail_build_seconds,
            requests,
            switches,
            consoles,
        }
    }

    /// A switch's counters (unregistered ones for a switch not
    /// configured, which the configuration does not allow).
    pub fn switch(&self, name: &str) -> Arc<SwitchMetrics> {
        self.switches.get(name).cloned().unwrap_or_else(|| {
            Arc::new(SwitchMetrics {
                on: Counter::default(),
                off: Counter::default(),
                cycle: Counter::default(),
                on_failed: Counter::default(),
                off_failed: Counter::default(),
                cycle_failed: Counter::default(),
                snmp_seconds: Histogram::new([1.0]),
            })
        })
    }

    /// A board's console counters.
    pub fn console(&self, board: &str) -> ConsoleMetrics {
        self.consoles.get(board).cloned().unwrap_or_default()
    }

    /// A health check of `board` ended with `result` (minutes apart at
    /// most per board: the family's lock is fine).
    pub fn health_checked(&self, board: &str, result: &str) {
        self.health_checks.get_or_create(&vec![("board", board.to_string()), ("result", result.to_string())]).inc();
    }

    /// A board actor was restarted (rare: the family's lock is fine).
    pub fn actor_restarted(&self, board: &str) {
        self.actor_restarts.get_or_create(&vec![("board", board.to_string())]).inc();
    }
}

/// The rows of the requests' table: the socket's functions, then
/// `invalid` for a line that named none.
const ROWS: usize = FUNCTIONS.len() + 1;

/// The outcomes: `ok`, then each error code.
const OUTCOMES: usize = Code::ALL.len() + 1;

/// Requests answered on labd's sockets, by function and outcome (`ok` or
/// the error code): a fixed table of atomics, so counting is one add.
/// Only the pairs that happened are shown.
#[derive(Debug)]
pub struct Requests {
    cells: [[AtomicU64; OUTCOMES]; ROWS],
}

impl Default for Requests {
    fn default() -> Self {
        Requests { cells: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))) }
    }
}

impl Requests {
    /// The cell of `function` (a name of [`FUNCTIONS`]; any other is
    /// `invalid`) and `outcome`.
    fn cell(&self, function: &str, outcome: Result<(), Code>) -> &AtomicU64 {
        let f = FUNCTIONS.iter().position(|n| *n == function).unwrap_or(FUNCTIONS.len());
        let o = match outcome {
            Ok(()) => 0,
            Err(c) => 1 + c as usize,
        };
        &self.cells[f.min(ROWS - 1)][o.min(OUTCOMES - 1)]
    }

    /// Counts one answer to `function` with `outcome`.
    pub fn count(&self, function: &str, outcome: Result<(), Code>) {
        self.cell(function, outcome).fetch_add(1, Ordering::Relaxed);
    }

    /// How many answers `function` got with `outcome`.
    pub fn get(&self, function: &str, outcome: Result<(), Code>) -> u64 {
        self.cell(function, outcome).load(Ordering::Relaxed)
    }
}

impl Collector for Requests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "requests",
            "Requests answered on labd's sockets, by function and outcome (ok or the error code)",
            None,
            MetricType::Counter,
        )?;
        for (f, row) in self.cells.iter().enumerate() {
            for (o, cell) in row.iter().enumerate() {
                let n = cell.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let outcome = if o == 0 { "ok" } else { Code::ALL.get(o - 1).map_or("internal", |c| c.as_str()) };
                let function = FUNCTIONS.get(f).copied().unwrap_or("invalid");
                let labels: Labels = vec![("function", function.to_string()), ("outcome", outcome.to_string())];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_function_and_outcome() {
        let r = Requests::default();
        r.count("claim", Ok(()));
        r.count("claim", Ok(()));
        r.count("claim", Err(Code::NoDeviceAvailable));
        r.count("frobnicate", Err(Code::UnknownFunction));
        assert_eq!(r.get("claim", Ok(())), 2);
        assert_eq!(r.get("claim", Err(Code::NoDeviceAvailable)), 1);
        assert_eq!(r.get("invalid", Err(Code::UnknownFunction)), 1);
        let mut reg = Registry::with_prefix(PREFIX);
        reg.register_collector(Box::new(Arc::new(r)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("boardlab_requests_total{function=\"claim\",outcome=\"ok\"} 2"), "{text}");
        assert!(text.contains("outcome=\"no_device_available\"} 1"), "{text}");
        assert!(!text.contains("function=\"status\""), "{text}");
    }

    #[test]
    fn made_for_a_configuration() {
        let lab = "[switches.poe1]\nhost = \"192.0.2.10:161\"\n[switches.poe2]\nhost = \"192.0.2.11:161\"\n";
        let board = |n: &str, sw: &str| {
            (
                std::path::PathBuf::from(format!("/x/boards.d/{n}.toml")),
                format!("name = \"{n}\"\nclass = \"c\"\npower = {{ switch = \"{sw}\", port = 1 }}\nconsole = {{ path = \"/dev/null\" }}\n"),
            )
        };
        let cfg =
            Config::from_texts(std::path::Path::new("/x"), lab, &[board("a", "poe1"), board("b", "poe2")], vec![])
                .unwrap();
        let mut reg = Registry::with_prefix(PREFIX);
        let m = Metrics::new(&cfg, &mut reg);
        m.switch("poe1").on.inc();
        m.switch("poe2").cycle_failed.inc();
        m.console("b").read.inc_by(7);
        m.actor_restarted("a");
        m.health_checked("a", "fail");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for want in [
            "boardlab_power_operations_total{switch=\"poe1\",action=\"on\"} 1",
            "boardlab_power_failures_total{switch=\"poe2\",action=\"cycle\"} 1",
            "boardlab_console_read_bytes_total{board=\"b\"} 7",
            "boardlab_actor_restarts_total{board=\"a\"} 1",
            "boardlab_health_checks_total{board=\"a\",result=\"fail\"} 1",
            "boardlab_claims_granted_total 0",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }

    /// Every function and every code has its own cell: the ones added
    /// after the table was first written (queue, selftest, health, sd;
    /// in_doubt) were once counted as `invalid` and `internal`.
    #[test]
    fn every_function_and_code_has_its_own_cell() {
        let r = Requests::default();
        for f in FUNCTIONS {
            for c in Code::ALL {
                r.count(f, Err(c));
            }
            r.count(f, Ok(()));
        }
        r.count("frobnicate", Err(Code::UnknownFunction));
        for f in FUNCTIONS {
            assert_eq!(r.get(f, Ok(())), 1, "{f}");
            for c in Code::ALL {
                assert_eq!(r.get(f, Err(c)), 1, "{f} {c:?}");
            }
        }
        assert_eq!(r.get("invalid", Err(Code::UnknownFunction)), 1);
        let mut reg = Registry::with_prefix(PREFIX);
        reg.register_collector(Box::new(std::sync::Arc::new(r)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for want in [
            "boardlab_requests_total{function=\"sd\",outcome=\"ok\"} 1",
            "boardlab_requests_total{function=\"queue\",outcome=\"in_doubt\"} 1",
            "boardlab_requests_total{function=\"invalid\",outcome=\"unknown_function\"} 1",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
