//! The contract's error codes and the error reply they go in.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Error codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    BadRequest,
    UnknownFunction,
    UnknownClass,
    UnknownBoard,
    NoDeviceAvailable,
    NotClaimed,
    /// The caller's claim ended (expired, force-released, released):
    /// the message says how and when.
    ClaimEnded,
    HandleMismatch,
    PermissionDenied,
    DeviceFault,
    Busy,
    Timeout,
    /// The lab's shared state (etcd) cannot be reached: try again later.
    Unavailable,
    /// The host that owns the board stopped answering after it took the
    /// request: it may have been done (the message says how to find out).
    InDoubt,
    /// A per-user limit of the lab's policy (`policy.max_claims_per_user`,
    /// `lease.max_total`): the message names it.
    LimitReached,
    Internal,
}

impl Code {
    /// Every code, in declaration order (`ALL[c as usize] == c`).
    pub const ALL: [Code; 16] = [
        Code::BadRequest,
        Code::UnknownFunction,
        Code::UnknownClass,
        Code::UnknownBoard,
        Code::NoDeviceAvailable,
        Code::NotClaimed,
        Code::ClaimEnded,
        Code::HandleMismatch,
        Code::PermissionDenied,
        Code::DeviceFault,
        Code::Busy,
        Code::Timeout,
        Code::Unavailable,
        Code::InDoubt,
        Code::LimitReached,
        Code::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::UnknownFunction => "unknown_function",
            Code::UnknownClass => "unknown_class",
            Code::UnknownBoard => "unknown_board",
            Code::NoDeviceAvailable => "no_device_available",
            Code::NotClaimed => "not_claimed",
            Code::ClaimEnded => "claim_ended",
            Code::HandleMismatch => "handle_mismatch",
            Code::PermissionDenied => "permission_denied",
            Code::DeviceFault => "device_fault",
            Code::Busy => "busy",
            Code::Timeout => "timeout",
            Code::Unavailable => "unavailable",
            Code::InDoubt => "in_doubt",
            Code::LimitReached => "limit_reached",
            Code::Internal => "internal",
        }
    }
}

/// An error reply: a code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::Code;

    /// `ALL` holds every code once, in order: a code added to the enum
    /// and not here fails (its index is past the end, or two collide).
    #[test]
    fn all_is_every_code_in_order() {
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        // The last variant closes the list.
        assert_eq!(Code::Internal as usize, Code::ALL.len() - 1);
    }
}
