//! `selftest`'s answer: one board's commissioning check, step by step
//! (`labd selftest` prints it, a line a step).

use serde::{Deserialize, Serialize};

/// A step's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not run: nothing to check (no console, no link), or the switch
    /// cannot tell.
    Skip,
}

impl Verdict {
    /// As `labd selftest` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One step: what it checked, its verdict, how long it took and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelftestStep {
    pub step: String,
    pub verdict: Verdict,
    pub ms: u64,
    pub detail: String,
}

/// A board's selftest: its steps in order, and whether none failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelftestReport {
    pub board: String,
    pub pass: bool,
    pub steps: Vec<SelftestStep>,
}

impl SelftestReport {
    /// The first step that failed.
    pub fn first_failure(&self) -> Option<&SelftestStep> {
        self.steps.iter().find(|s| s.verdict == Verdict::Fail)
    }
}

/// A health check run now (`health`): its steps, and where the board
/// stands after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    #[serde(flatten)]
    pub check: SelftestReport,
    /// The board's state after the check.
    pub state: super::BoardState,
    /// Failed checks in a row now.
    pub failures: u32,
    /// Why it is unhealthy, or its failures so far (absent: healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}
