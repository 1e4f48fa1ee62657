//! A board as users see it: its view in `status`, `claim` and `dump`, its
//! state and its power.

use serde::{Deserialize, Serialize};

/// A board as users see it in `status`, `claim` and `dump`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardView {
    pub board: String,
    pub class: String,
    pub state: BoardState,
    pub user: Option<String>,
    pub power: PowerState,
    pub claimed_at: Option<String>,
    pub expires_at: Option<String>,
    /// Why the board is faulted or offline, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The serial console's state (`attached`, `missing`, `error`); absent
    /// for a board without a console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
    /// The host the board is on, in a lab of several hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Whether a powered port delivers power, as the switch detects it
    /// (`delivering`; `searching`: on, but nothing draws power), when the
    /// switch says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// What the board's health checks said lately: why it is
    /// `unhealthy`, or how many failed in a row so far (absent: healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoardState {
    Available,
    Claimed,
    Maintenance,
    Faulted,
    Offline,
    /// Its class's health check runs on it (after a release, on the
    /// schedule, or asked for): not claimable until it ends.
    Checking,
    /// It failed its class's health check `failures` times in a row: never
    /// granted until a check passes.
    Unhealthy,
}

impl BoardState {
    pub fn as_str(self) -> &'static str {
        match self {
            BoardState::Available => "available",
            BoardState::Claimed => "claimed",
            BoardState::Maintenance => "maintenance",
            BoardState::Faulted => "faulted",
            BoardState::Offline => "offline",
            BoardState::Checking => "checking",
            BoardState::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
    Unknown,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        }
    }
}
