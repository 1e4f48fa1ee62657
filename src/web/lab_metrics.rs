//! What the lab looks like, for `/metrics`: read from the registry's
//! published snapshot at each scrape (nothing is kept or counted).

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde::Deserialize;
use tokio::sync::watch;

use crate::actors::registry::Snapshot;
use crate::metrics::Labels;
use crate::protocol::BoardState;

const STATES: [BoardState; 7] = [
    BoardState::Available,
    BoardState::Claimed,
    BoardState::Maintenance,
    BoardState::Faulted,
    BoardState::Offline,
    BoardState::Checking,
    BoardState::Unhealthy,
];

/// Boards by class and state, claims held and claims waiting per class.
#[derive(Debug)]
pub struct LabCollector {
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl LabCollector {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> LabCollector {
        LabCollector { snapshots }
    }
}

/// Only the state of a board's status line.
#[derive(Deserialize)]
struct StateOnly {
    state: BoardState,
}

impl Collector for LabCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.snapshots.borrow().clone();
        // class -> [count per state], claims held
        let mut by: BTreeMap<&str, ([i64; STATES.len()], i64)> = BTreeMap::new();
        for r in snap.rows() {
            let e = by.entry(r.class.as_str()).or_default();
            // A board that has not reported yet counts as offline.
            let state = serde_json::from_str::<StateOnly>(&r.json).map_or(BoardState::Offline, |s| s.state);
            if let Some(i) = STATES.iter().position(|s| *s == state) {
                e.0[i] += 1;
            }
            e.1 += i64::from(r.user.is_some());
        }
        let mut m =
            encoder.encode_descriptor("boards", "Boards of this host by class and state", None, MetricType::Gauge)?;
        for (class, (counts, _)) in &by {
            for (i, n) in counts.iter().enumerate() {
                let l: Labels = vec![("class", class.to_string()), ("state", STATES[i].as_str().to_string())];
                ConstGauge::new(*n).encode(m.encode_family(&l)?)?;
            }
        }
        let mut m = encoder.encode_descriptor("claims_held", "Claims held, by class", None, MetricType::Gauge)?;
        for (class, (_, held)) in &by {
            let l: Labels = vec![("class", class.to_string())];
            ConstGauge::new(*held).encode(m.encode_family(&l)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "claims_waiting",
            "Claims waiting for a board (claim --wait), by class",
            None,
            MetricType::Gauge,
        )?;
        for c in snap.classes(false) {
            let l: Labels = vec![("class", c.class)];
            ConstGauge::new(c.waiting as i64).encode(m.encode_family(&l)?)?;
        }
        Ok(())
    }
}
