//! The `sd` function: a claimed board's microSD card.
//!
//! ```text
//! {"fn": "sd", "handle": "bl-...", "action": "host", "power_off": true}
//! {"fn": "sd", "action": "flash", "path": "/root/card.img"}
//! ```
//!
//! `action` is `host`, `board`, `off`, `status` or `flash` (with `path`,
//! an image file in the claim's jail). `power_off` lets `host` and
//! `flash` power the board off first instead of being refused.

use serde::{Deserialize, Serialize};

/// What to do with the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdAction {
    Host,
    Board,
    Off,
    Status,
    Flash,
}

impl SdAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SdAction::Host => "host",
            SdAction::Board => "board",
            SdAction::Off => "off",
            SdAction::Status => "status",
            SdAction::Flash => "flash",
        }
    }
}

/// The `sd` request's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdArgs {
    pub handle: Option<String>,
    pub action: SdAction,
    /// `flash`: the image's path in the jail.
    pub path: Option<String>,
    #[serde(default)]
    pub power_off: bool,
}

/// A flash in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdProgress {
    /// `writing`, `verifying` or `switching`.
    pub phase: String,
    pub done: u64,
    pub total: u64,
}

/// What the last flash wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdFlashed {
    /// The image's path in the jail.
    pub path: String,
    /// The image's size: the card holds it from byte 0.
    pub image_bytes: u64,
    /// Bytes written and verified (only the mapped blocks with a bmap).
    pub written: u64,
    pub block_size: u64,
    pub blocks: u64,
    pub ranges: u64,
    /// Whether a `.bmap` was used.
    pub bmap: bool,
    /// `raw`, `gzip` or `xz`.
    pub packing: String,
    /// SHA-256 of the written bytes, as read back from the card.
    pub sha256: String,
    pub seconds: f64,
    /// Written bytes per second over the whole flash (write, verify,
    /// switch), in MB/s (10^6 bytes).
    pub mb_per_s: f64,
}

/// A board's card as its claimant sees it (`sd`'s reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdView {
    pub board: String,
    /// `usbsdmux`, `sdwire` or `sim`.
    pub mux: String,
    /// `off`, `host`, `board`, or `unknown` (not set since labd started,
    /// or a switch failed).
    pub side: String,
    /// Where the card is in the claim's jail (`/dev/sdcard`) while it is
    /// on the host side; null otherwise, or without jails.
    pub device: Option<String>,
    /// What the card is busy with (`switching`, `flashing`), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<SdProgress>,
    /// The last flash of this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flashed: Option<SdFlashed>,
    /// The last error of a switch or flash of this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
