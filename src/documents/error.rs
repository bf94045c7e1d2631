//! The documents layer's one error type. Each failure says its stable `code()`, its
//! `kind()` and the detail a client may read; the HTTP edge (the `error` module) and the
//! functions' host calls (`ctx.db`) both build their answers from these.

use crate::fault::Kind;
use crate::rules::CelError;
use crate::store::StoreError;

use super::patch;

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("invalid collection name")]
    InvalidCollection,
    #[error("invalid document id")]
    InvalidId,
    #[error("{0}")]
    InvalidData(String),
    #[error("document exceeds {0} bytes")]
    TooLarge(usize),
    #[error("document not found")]
    NotFound,
    #[error("a document with this id exists")]
    Exists,
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("the {op} rule of collection '{collection}' denied this operation")]
    Denied {
        collection: String,
        op: &'static str,
    },
    /// A write by a caller that only reads (an admin's read token).
    #[error("this credential reads the tenant's data and changes nothing")]
    ReadOnly,
    #[error("invalid filter: {0}")]
    InvalidFilter(CelError),
    /// Evaluating the filter's parts that do not mention the document spent the
    /// evaluation budget.
    #[error("{}", crate::rules::TOO_COSTLY)]
    FilterTooCostly,
    #[error("invalid {param}: {message}")]
    InvalidParam {
        param: &'static str,
        message: String,
    },
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("{0}")]
    Patch(patch::PatchError),
    #[error("write {index}: {source}")]
    InBatch {
        index: usize,
        #[source]
        source: Box<DocError>,
    },
    /// A before hook refused the write (its thrown message).
    #[error("{0}")]
    HookRejected(String),
    #[error("a before hook ran past its time budget")]
    HookTimeout,
    #[error("a before hook failed: {0}")]
    HookFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `explain` as a user the tenant does not have.
    #[error("no such user")]
    UnknownUser,
    #[error("{0}")]
    Internal(String),
}

impl DocError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        use patch::PatchError as P;
        match self {
            DocError::InvalidCollection | DocError::InvalidId => "validation_failed",
            DocError::InvalidData(_) => "invalid_document",
            DocError::TooLarge(_) => "document_too_large",
            DocError::NotFound => "document_not_found",
            DocError::Exists => "document_exists",
            DocError::PreconditionFailed(_) => "precondition_failed",
            DocError::Denied { .. } => "rule_denied",
            DocError::ReadOnly => "read_only",
            DocError::InvalidFilter(_) => "invalid_filter",
            DocError::FilterTooCostly => "filter_too_costly",
            DocError::InvalidParam { param, .. } => match *param {
                "order" => "invalid_order",
                "limit" => "invalid_limit",
                _ => "validation_failed",
            },
            DocError::InvalidCursor => "invalid_cursor",
            DocError::Patch(P::Invalid(_)) => "invalid_patch",
            DocError::Patch(P::TestFailed(_)) => "patch_test_failed",
            DocError::Patch(P::Failed(_)) => "patch_failed",
            DocError::Patch(P::Overflow(_)) => "increment_overflow",
            DocError::InBatch { source, .. } => source.code(),
            DocError::HookRejected(_) => "function_rejected",
            DocError::HookTimeout => "function_timeout",
            DocError::HookFailed(_) => "function_error",
            DocError::UnknownUser => "user_not_found",
            DocError::Store(e) => e.code(),
            DocError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> Kind {
        use patch::PatchError as P;
        match self {
            DocError::InvalidCollection
            | DocError::InvalidId
            | DocError::InvalidData(_)
            | DocError::InvalidFilter(_)
            | DocError::FilterTooCostly
            | DocError::InvalidParam { .. }
            | DocError::InvalidCursor
            | DocError::Patch(P::Invalid(_) | P::Overflow(_))
            | DocError::HookRejected(_) => Kind::Invalid,
            DocError::TooLarge(_) => Kind::TooLarge,
            DocError::NotFound | DocError::UnknownUser => Kind::NotFound,
            DocError::Exists | DocError::Patch(P::TestFailed(_) | P::Failed(_)) => Kind::Conflict,
            DocError::PreconditionFailed(_) => Kind::PreconditionFailed,
            DocError::Denied { .. } | DocError::ReadOnly => Kind::Denied,
            DocError::InBatch { source, .. } => source.kind(),
            DocError::HookTimeout => Kind::Timeout,
            DocError::HookFailed(_) => Kind::FunctionFailed,
            DocError::Store(e) => e.kind(),
            DocError::Internal(_) => Kind::Internal,
        }
    }

    /// What a client is told. Faults of the server's own say nothing of their cause.
    pub fn client_detail(&self) -> String {
        match self {
            DocError::InvalidCollection | DocError::InvalidId => {
                let (field, problem) = self.field().unwrap_or_default();
                format!("{field}: {problem}")
            }
            DocError::TooLarge(n) => format!("document data exceeds {n} bytes"),
            DocError::NotFound => "no such document".into(),
            DocError::PreconditionFailed(m) => m.clone(),
            DocError::InvalidFilter(e) => {
                format!("filter, line {} column {}: {}", e.line, e.column, e.message)
            }
            DocError::InvalidParam { param, message } => format!("{param}: {message}"),
            DocError::InvalidCursor => "the cursor is not valid for this query".into(),
            DocError::InBatch { index, source } => {
                format!("write {index}: {}", source.client_detail())
            }
            DocError::HookTimeout => {
                "a before hook ran past its time budget; nothing was written".into()
            }
            DocError::HookFailed(m) => format!("a before hook failed; nothing was written ({m})"),
            DocError::Store(e) => e.client_detail(),
            DocError::Internal(_) => "internal server error".into(),
            other => other.to_string(),
        }
    }

    /// The input field at fault, and what is wrong with it, when there is one.
    pub fn field(&self) -> Option<(String, String)> {
        match self {
            DocError::InvalidCollection => Some((
                "collection".into(),
                "must match ^[a-z][a-z0-9_]{0,62}$".into(),
            )),
            DocError::InvalidId => Some(("id".into(), "must be 1-128 of [A-Za-z0-9_-]".into())),
            DocError::InvalidFilter(e) => Some(("filter".into(), e.to_string())),
            DocError::FilterTooCostly => {
                Some(("filter".into(), crate::rules::TOO_COSTLY.to_string()))
            }
            DocError::InvalidParam { param, message } => Some((param.to_string(), message.clone())),
            DocError::InBatch { source, .. } => source.field(),
            _ => None,
        }
    }
}

impl From<crate::names::NameError> for DocError {
    fn from(e: crate::names::NameError) -> DocError {
        match e {
            crate::names::NameError::Collection => DocError::InvalidCollection,
            crate::names::NameError::DocId => DocError::InvalidId,
        }
    }
}
