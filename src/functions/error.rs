//! The functions layer's one error type.

use super::{BundleError, Failure};
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
