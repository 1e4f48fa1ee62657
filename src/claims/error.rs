//! Why the book says no, with each answer's protocol code.

use crate::protocol::Code;
pub use crate::util::shown;

/// Why the book says no. Each has its protocol code ([`BookError::code`]);
/// the message quotes the caller's own input, shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("no class {} (classes: {known})", shown(.class))]
    UnknownClass { class: String, known: String },
    #[error("no board is named {}", shown(.0))]
    UnknownBoard(String),
    #[error("no {class} board is available ({summary})")]
    NoneAvailable { class: String, summary: String },
    #[error("you hold no claim with handle {}", shown(.0))]
    NotYours(String),
    #[error("a HANDLE is required (the one `claim` returned)")]
    HandleRequired,
    #[error("a jail's socket acts only on the jail's own claim")]
    HandleMismatch,
    #[error("board {0} is not claimed")]
    NotClaimed(String),
    #[error("{0}")]
    BadLease(String),
    #[error("your claim on {board} {how} at {}", crate::util::rfc3339_ms(*.at))]
    Ended { board: String, how: String, at: i64 },
    #[error("{what} is for operators (root and daemon.admins); you are {user}")]
    Operators { what: String, user: String },
    #[error("board {board} is claimed by {user}; wait for the release or force-release it first")]
    Claimed { board: String, user: String },
    /// A per-user limit of the lab's policy: the message names it.
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Busy(String),
}

impl BookError {
    pub fn code(&self) -> Code {
        match self {
            BookError::UnknownClass { .. } => Code::UnknownClass,
            BookError::UnknownBoard(_) => Code::UnknownBoard,
            BookError::NoneAvailable { .. } => Code::NoDeviceAvailable,
            BookError::NotYours(_) | BookError::NotClaimed(_) => Code::NotClaimed,
            BookError::Ended { .. } => Code::ClaimEnded,
            BookError::HandleRequired | BookError::BadLease(_) => Code::BadRequest,
            BookError::HandleMismatch => Code::HandleMismatch,
            BookError::Operators { .. } => Code::PermissionDenied,
            BookError::Claimed { .. } | BookError::Busy(_) => Code::Busy,
            BookError::Limit(_) => Code::LimitReached,
        }
    }
}

impl From<BookError> for crate::protocol::ApiError {
    fn from(e: BookError) -> Self {
        crate::protocol::ApiError::new(e.code(), e.to_string())
    }
}
