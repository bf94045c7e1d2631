//! End-user authentication: passwords, tokens, sessions and the account flows.

pub mod cache;
mod error;
pub mod mail;
pub mod password;
pub mod password_policy;
pub mod ratelimit;
pub mod reader;
pub mod service;
pub mod tokens;

pub use service::{AuthService, AuthSettings, ClientInfo, IssuedSession, NewUser};

pub use error::{AuthError, CredentialError};
