//! What became of one request: the server's answer, or the reason there was none.
//!
//! The report counts requests by [`Answer::label`], so a run against an overloaded or broken
//! server says exactly how it failed: a gRPC status name, an HTTP status, or one of the
//! failures on the way (`connect_error`, `transport_error`, `timeout`) that never got an answer.
//! Telling a server's `UNAVAILABLE` from a refused connection matters, so statuses that tonic
//! made up on the client from a transport error are classified here, not taken at face value.

use std::borrow::Cow;
use std::error::Error;

use tonic::{Code, ConnectError, Status, TimeoutExpired};

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The server answered with this gRPC status.
    Grpc(Code),
    /// The server answered with this HTTP status.
    Http(u16),
    /// The server said success, but its response was not a valid export response; its items are
    /// not counted as accepted.
    BadResponse,
    /// No connection could be made.
    ConnectError,
    /// The connection failed after it was made (reset, protocol error) before an answer came.
    TransportError,
    /// No answer within `--timeout`.
    Timeout,
}

impl Answer {
    /// The name this answer is counted under in the report.
    pub fn label(self) -> Cow<'static, str> {
        match self {
            Answer::Grpc(code) => Cow::Borrowed(grpc_code_name(code)),
            Answer::Http(status) => Cow::Owned(status.to_string()),
            Answer::BadResponse => Cow::Borrowed("bad_response"),
            Answer::ConnectError => Cow::Borrowed("connect_error"),
            Answer::TransportError => Cow::Borrowed("transport_error"),
            Answer::Timeout => Cow::Borrowed("timeout"),
        }
    }

    /// Did the server take the request (all of it, minus any partial-success rejections)?
    pub fn is_success(self) -> bool {
        match self {
            Answer::Grpc(code) => code == Code::Ok,
            Answer::Http(status) => (200..300).contains(&status),
            _ => false,
        }
    }

    /// Did the request reach the server and get an answer? Only these count towards wire bytes
    /// and latency: a refused connection moved no body, and a timeout has no latency to speak of.
    pub fn was_answered(self) -> bool {
        !matches!(
            self,
            Answer::ConnectError | Answer::TransportError | Answer::Timeout
        )
    }
}

/// How one request ended, with what a successful answer said about rejected items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub answer: Answer,
    /// Items the server's `partial_success` says it rejected; zero unless the answer is success.
    pub rejected: u64,
}

impl Outcome {
    /// An outcome with nothing rejected.
    pub fn of(answer: Answer) -> Outcome {
        Outcome {
            answer,
            rejected: 0,
        }
    }
}

/// The answer a tonic [`Status`] stands for.
///
/// A status the server sent is built from response headers or trailers and has no source
/// error. One that tonic made on this side from a transport failure carries that failure as its
/// source (a refused connection becomes `UNAVAILABLE`, a reset stream `INTERNAL`), so those are
/// reported as the failure they are.
pub fn answer_for_status(status: &Status) -> Answer {
    match status.source() {
        None => Answer::Grpc(status.code()),
        Some(source) => answer_for_transport_error(source),
    }
}

/// Classifies a client-side error by the errors in its source chain.
pub fn answer_for_transport_error(error: &(dyn Error + 'static)) -> Answer {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<ConnectError>() {
            return Answer::ConnectError;
        }
        if error.is::<TimeoutExpired>() {
            return Answer::Timeout;
        }
        cause = error.source();
    }
    Answer::TransportError
}

/// The canonical gRPC status code names, as gRPC's own docs and other tools print them.
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_grpc_names_http_numbers_and_failure_words() {
        assert_eq!(Answer::Grpc(Code::Ok).label(), "OK");
        assert_eq!(
            Answer::Grpc(Code::ResourceExhausted).label(),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(Answer::Grpc(Code::Unavailable).label(), "UNAVAILABLE");
        assert_eq!(
            Answer::Grpc(Code::InvalidArgument).label(),
            "INVALID_ARGUMENT"
        );
        assert_eq!(Answer::Http(200).label(), "200");
        assert_eq!(Answer::Http(429).label(), "429");
        assert_eq!(Answer::ConnectError.label(), "connect_error");
        assert_eq!(Answer::Timeout.label(), "timeout");
        assert_eq!(Answer::TransportError.label(), "transport_error");
        assert_eq!(Answer::BadResponse.label(), "bad_response");
    }

    #[test]
    fn every_grpc_code_has_its_canonical_name() {
        for n in 0..=16 {
            let code = Code::from_i32(n);
            let name = grpc_code_name(code);
            assert_eq!(name, name.to_uppercase());
            assert_eq!(
                name.replace('_', "").to_lowercase(),
                format!("{code:?}").to_lowercase()
            );
        }
    }

    #[test]
    fn server_statuses_keep_their_code() {
        let status = Status::resource_exhausted("queue full");
        assert_eq!(
            answer_for_status(&status),
            Answer::Grpc(Code::ResourceExhausted)
        );
        let status = Status::unavailable("draining");
        assert_eq!(answer_for_status(&status), Answer::Grpc(Code::Unavailable));
    }

    #[test]
    fn statuses_made_from_transport_errors_are_failures() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = Status::from_error(Box::new(ConnectError(Box::new(refused))));
        assert_eq!(status.code(), Code::Unavailable, "tonic's own mapping");
        assert_eq!(answer_for_status(&status), Answer::ConnectError);

        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let status = Status::from_error(Box::new(reset));
        assert_eq!(answer_for_status(&status), Answer::TransportError);
    }

    #[test]
    fn success_and_answered() {
        assert!(Answer::Grpc(Code::Ok).is_success());
        assert!(Answer::Http(200).is_success());
        assert!(!Answer::Http(429).is_success());
        assert!(!Answer::Grpc(Code::Unavailable).is_success());
        assert!(!Answer::BadResponse.is_success());
        assert!(Answer::Http(503).was_answered());
        assert!(Answer::BadResponse.was_answered());
        assert!(!Answer::ConnectError.was_answered());
        assert!(!Answer::Timeout.was_answered());
    }
}
