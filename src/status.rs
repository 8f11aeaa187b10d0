//! The one mapping from errors to gRPC status codes, for both processes
//! (STYLE, after quickwit). Refusals never come here: they are answers
//! (DESIGN invariant 8).
//!
//! Each layer's error says what kind of failure it is ([`Failure`]) and the
//! message a client may see; [`to_status`] turns that into a `Status` whose
//! message is bounded ([`MAX_MESSAGE_BYTES`]) and free of control
//! characters, whatever the error carried. Internal errors are logged here
//! and answered with a fixed text: a database's or a store's own words (which
//! may quote stored data) never reach a client.

use tonic::{Code, Status};

use crate::domain::text::TextError;
use crate::gateway::GatewayError;
use crate::settlement::SettlementError;
use crate::store::StoreError;

/// The longest status message sent, in bytes; longer ones are cut (with "…").
pub const MAX_MESSAGE_BYTES: usize = 240;

/// What kind of failure an error is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request is malformed or names something unknown.
    InvalidArgument,
    NotFound,
    /// Well-formed, but a rule or the stored state refuses it.
    FailedPrecondition,
    /// A dependency is unreachable or too slow; a retry is safe (idempotent).
    Unavailable,
    /// The gateway refused the request before doing anything (issue 10:
    /// its concurrency limit or queue-time budget); a retry is safe.
    ResourceExhausted,
    /// The request's own deadline passed before it was answered.
    DeadlineExceeded,
    /// Authenticated, but not allowed to act on this.
    PermissionDenied,
    /// A bug or inconsistent data: logged, answered with a fixed text.
    Internal,
}

impl Failure {
    pub fn code(self) -> Code {
        match self {
            Failure::InvalidArgument => Code::InvalidArgument,
            Failure::NotFound => Code::NotFound,
            Failure::FailedPrecondition => Code::FailedPrecondition,
            Failure::Unavailable => Code::Unavailable,
            Failure::ResourceExhausted => Code::ResourceExhausted,
            Failure::DeadlineExceeded => Code::DeadlineExceeded,
            Failure::PermissionDenied => Code::PermissionDenied,
            Failure::Internal => Code::Internal,
        }
    }
}

/// An error that knows its [`Failure`] kind and what a client may read.
pub trait Classify: std::fmt::Display {
    fn failure(&self) -> Failure;

    /// The message for the client (internal failures never use it).
    fn client_message(&self) -> String {
        self.to_string()
    }
}

impl Classify for StoreError {
    fn failure(&self) -> Failure {
        match self {
            StoreError::Unavailable(_) | StoreError::Timeout(_) => Failure::Unavailable,
            StoreError::Overloaded(_) => Failure::ResourceExhausted,
            StoreError::Rejected(_) => Failure::FailedPrecondition,
            StoreError::NotFound(_) => Failure::NotFound,
            StoreError::Corrupt(_) => Failure::Internal,
            StoreError::Forbidden(_) => Failure::PermissionDenied,
        }
    }
}

/// Client text refused by [`crate::domain::text`]: the message names the field only.
impl Classify for TextError {
    fn failure(&self) -> Failure {
        Failure::InvalidArgument
    }
}

impl Classify for GatewayError {
    fn failure(&self) -> Failure {
        match self {
            GatewayError::InvalidArgument(_) => Failure::InvalidArgument,
            GatewayError::NotFound(_) => Failure::NotFound,
            GatewayError::FailedPrecondition(_) => Failure::FailedPrecondition,
            GatewayError::Store(s) => s.failure(),
        }
    }
}

impl Classify for SettlementError {
    fn failure(&self) -> Failure {
        match self {
            SettlementError::Invalid(_) => Failure::InvalidArgument,
            SettlementError::NotFound(_) => Failure::NotFound,
            SettlementError::Refused(_) => Failure::FailedPrecondition,
            SettlementError::Store(s) => s.failure(),
            SettlementError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                Failure::Unavailable
            }
            SettlementError::Db(_) | SettlementError::Ledger(_) => Failure::Internal,
        }
    }

    fn client_message(&self) -> String {
        match self {
            SettlementError::Db(_) => "the ledger database is unreachable".into(),
            other => other.to_string(),
        }
    }
}

/// The status for an error: its kind's code and a bounded message.
pub fn to_status(e: impl Classify) -> Status {
    let failure = e.failure();
    let message = if failure == Failure::Internal {
        tracing::error!(error = %e, "request failed with an internal error");
        "internal error (logged on the server)".to_string()
    } else {
        e.client_message()
    };
    Status::new(failure.code(), bounded(&message))
}

/// `text` without control characters and at most [`MAX_MESSAGE_BYTES`]
/// bytes, cut at a character boundary.
pub fn bounded(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_BYTES));
    for ch in text.chars() {
        let ch = if ch.is_control() { ' ' } else { ch };
        if out.len() + ch.len_utf8() > MAX_MESSAGE_BYTES - '…'.len_utf8() {
            out.push('…');
            return out;
        }
        out.push(ch);
    }
    out
}

/// A metrics label for a status code.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_and_printable() {
        let long = format!("call_id: {}", "x".repeat(4 << 20));
        let s = to_status(GatewayError::InvalidArgument(long));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().len() <= MAX_MESSAGE_BYTES,
            "{}",
            s.message().len()
        );
        assert!(s.message().ends_with('…'));
        let s = to_status(GatewayError::InvalidArgument("a\0b\nc".into()));
        assert_eq!(s.message(), "a b c");
        // Cut at a character boundary.
        let s = bounded(&"å".repeat(500));
        assert!(s.len() <= MAX_MESSAGE_BYTES && s.ends_with('…'));
    }

    #[test]
    fn internal_errors_do_not_reach_the_client() {
        let e = SettlementError::Db(sqlx::Error::Protocol(
            "invalid byte sequence for encoding UTF8: 0x00 in +46701234567".into(),
        ));
        let s = to_status(e);
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("4670"), "{}", s.message());
        let s = to_status(GatewayError::Store(StoreError::Corrupt(
            "hold of +46701234567".into(),
        )));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("4670"));
    }

    #[test]
    fn transient_store_errors_are_unavailable() {
        let s = to_status(GatewayError::Store(StoreError::Timeout(250)));
        assert_eq!(s.code(), Code::Unavailable);
        let s = to_status(SettlementError::Db(sqlx::Error::PoolTimedOut));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "the ledger database is unreachable");
    }
}
