//! The one mapping from gateway errors to gRPC status codes (STYLE, after
//! quickwit). Refusals never come here: they are answers (DESIGN invariant 8).

use tonic::{Code, Status};

use crate::gateway::GatewayError;
use crate::store::StoreError;

pub fn to_status(e: GatewayError) -> Status {
    match e {
        GatewayError::InvalidArgument(m) => Status::invalid_argument(m),
        GatewayError::NotFound(m) => Status::not_found(m),
        GatewayError::FailedPrecondition(m) => Status::failed_precondition(m),
        GatewayError::Store(s) => store_status(&s),
    }
}

fn store_status(e: &StoreError) -> Status {
    let code = match e {
        // The IVR applies its own failure policy; a retry is safe (idempotent).
        StoreError::Unavailable(_) => Code::Unavailable,
        StoreError::Timeout(_) => Code::Unavailable,
        StoreError::Rejected(_) => Code::FailedPrecondition,
        StoreError::NotFound(_) => Code::NotFound,
        StoreError::Corrupt(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
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
