//! The functions layer's one error type. Each failure says its stable `code()`, its
//! `kind()` and the detail a client may read; the HTTP edge (the `error` module) builds
//! its answer from these.

use super::{BundleError, Failure};
use crate::fault::Kind;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FnError {
    #[error("the bundle has {} problem(s)", .0.len())]
    InvalidBundle(Vec<BundleError>),
    #[error("no deploy version {0}")]
    NoSuchVersion(i64),
    #[error("no HTTP function named '{0}'")]
    NotFound(String),
    #[error("no dead job {0}")]
    NoSuchJob(String),
    #[error("{message}")]
    Failed {
        failure: Failure,
        message: String,
        invocation: String,
    },
    #[error("the function pool is shut down")]
    Unavailable,
    #[error("the function returned an invalid response: {message}")]
    BadResponse { message: String, invocation: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl FnError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            FnError::InvalidBundle(_) => "invalid_bundle",
            FnError::NoSuchVersion(_) => "deploy_not_found",
            FnError::NotFound(_) => "function_not_found",
            FnError::NoSuchJob(_) => "job_not_found",
            FnError::Failed { failure, .. } => match failure {
                Failure::Timeout => "function_timeout",
                Failure::OutOfMemory => "function_out_of_memory",
                Failure::Thrown { .. } | Failure::Internal(_) => "function_error",
            },
            FnError::Unavailable => "functions_unavailable",
            FnError::BadResponse { .. } => "function_bad_response",
            FnError::Store(e) => e.code(),
            FnError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            FnError::InvalidBundle(_) => Kind::Invalid,
            FnError::NoSuchVersion(_) | FnError::NotFound(_) | FnError::NoSuchJob(_) => {
                Kind::NotFound
            }
            FnError::Failed {
                failure: Failure::Timeout,
                ..
            } => Kind::Timeout,
            FnError::Failed { .. } | FnError::BadResponse { .. } => Kind::FunctionFailed,
            FnError::Unavailable => Kind::Unavailable,
            FnError::Store(e) => e.kind(),
            FnError::Internal(_) => Kind::Internal,
        }
    }

    /// What a client is told. The caller of an HTTP function is not its author: why it
    /// failed is in the invocation log, not here. Faults of the server's own say nothing
    /// of their cause.
    pub fn client_detail(&self) -> String {
        match self {
            FnError::InvalidBundle(errors) => {
                let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
                format!("the bundle has {} problem(s); first: {first}", errors.len())
            }
            FnError::NotFound(name) => format!("no HTTP function named '{name}' is deployed"),
            FnError::Failed {
                failure,
                invocation,
                ..
            } => {
                let what = match failure {
                    Failure::Timeout => "the function ran past its time budget",
                    Failure::OutOfMemory => "the function ran out of memory",
                    Failure::Thrown { .. } => "the function threw an error",
                    Failure::Internal(_) => "the function could not run",
                };
                format!("{what}; see invocation {invocation} in the invocation log")
            }
            FnError::Unavailable => "the function pool is shutting down".into(),
            FnError::Store(e) => e.client_detail(),
            FnError::Internal(_) => "internal server error".into(),
            other => other.to_string(),
        }
    }

    /// The invocation a failure is recorded under, when one ran.
    pub fn invocation(&self) -> Option<&str> {
        match self {
            FnError::Failed { invocation, .. } | FnError::BadResponse { invocation, .. } => {
                Some(invocation)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes, kinds and details are the public contract of the functions API.
    #[test]
    fn codes_and_kinds() {
        let failed = |failure| FnError::Failed {
            failure,
            message: "secret reason".into(),
            invocation: "inv1".into(),
        };
        let cases = [
            (FnError::InvalidBundle(vec![]), "invalid_bundle", 400),
            (FnError::NoSuchVersion(3), "deploy_not_found", 404),
            (FnError::NotFound("f".into()), "function_not_found", 404),
            (FnError::NoSuchJob("j".into()), "job_not_found", 404),
            (failed(Failure::Timeout), "function_timeout", 504),
            (failed(Failure::OutOfMemory), "function_out_of_memory", 500),
            (
                failed(Failure::Thrown {
                    name: "Error".into(),
                    message: "x".into(),
                }),
                "function_error",
                500,
            ),
            (failed(Failure::Internal("x".into())), "function_error", 500),
            (
                FnError::BadResponse {
                    message: "not JSON".into(),
                    invocation: "inv1".into(),
                },
                "function_bad_response",
                500,
            ),
            (FnError::Unavailable, "functions_unavailable", 503),
            (FnError::Internal("boom".into()), "internal", 500),
        ];
        for (e, code, status) in cases {
            assert_eq!((e.code(), e.kind().status()), (code, status), "{e:?}");
            assert!(!e.client_detail().contains("secret reason"), "{e:?}");
            assert!(!e.client_detail().contains("boom"), "{e:?}");
        }
        assert_eq!(failed(Failure::Timeout).invocation(), Some("inv1"));
        assert_eq!(FnError::Unavailable.invocation(), None);
    }
}
