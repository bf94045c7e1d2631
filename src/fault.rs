//! What kind of failure a domain error is, independent of any transport. Domain errors
//! say their stable `code()` and their `Kind`; the HTTP edge (the `error` module) turns a
//! kind into a status once, and JavaScript functions and the CLI take the same codes
//! and statuses from here rather than from the HTTP error type.

/// The classes of failure a caller can act on differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed or names something invalid.
    Invalid,
    /// The request or the document it makes is over a size limit.
    TooLarge,
    NotFound,
    /// The caller did not prove who they are: no, a wrong or an expired credential.
    Unauthenticated,
    /// Too many attempts; the answer says when to retry.
    RateLimited,
    /// The request collides with the current state (an existing id, a failed patch test).
    Conflict,
    /// A condition the caller set (`If-Match`) does not hold.
    PreconditionFailed,
    /// An access rule or a missing privilege refuses the caller.
    Denied,
    /// Work the request started ran past its time budget.
    Timeout,
    /// The server cannot serve this now; retrying later may work.
    Unavailable,
    /// The storage is full; nothing was written.
    StorageFull,
    /// A tenant's own function failed (a before hook threw or crashed): a server-side
    /// failure whose message the tenant's caller may read.
    FunctionFailed,
    /// A fault of the server's own; the details are logged, never shown.
    Internal,
}

impl Kind {
    /// The HTTP status of this kind: the one place it is decided.
    pub fn status(self) -> u16 {
        match self {
            Kind::Invalid => 400,
            Kind::TooLarge => 413,
            Kind::NotFound => 404,
            Kind::Unauthenticated => 401,
            Kind::RateLimited => 429,
            Kind::Conflict => 409,
            Kind::PreconditionFailed => 412,
            Kind::Denied => 403,
            Kind::Timeout => 504,
            Kind::Unavailable => 503,
            Kind::StorageFull => 507,
            Kind::FunctionFailed | Kind::Internal => 500,
        }
    }
}
