//! A new end-user account: the checks and the insert that sign-up and an admin's "create
//! user" share, so both refuse the same emails and passwords with the same codes.

use super::{check_password, email_of};
use crate::auth::{AuthError, password};
use crate::store::{Store, StoreError, UserRow};
use crate::tenancy::Scope;

/// An account whose email (normalised) and password passed the sign-up checks.
pub struct NewUser {
    email: String,
    password: Option<String>,
}

impl NewUser {
    /// Checks the email and, when there is one, the password as sign-up does. An empty
    /// password is a password that fails the policy, not "no password".
    pub fn check(email: &str, password: Option<&str>) -> Result<NewUser, AuthError> {
        let email = email_of(email)?;
        if let Some(p) = password {
            check_password("password", p, Some(&email))?;
        }
        Ok(NewUser {
            email,
            password: password.map(str::to_string),
        })
    }

    /// Hashes the password and stores the user. Without a password the account has none
    /// (no password ever matches it): its owner signs in after a password reset.
    pub async fn create(
        self,
        store: &Store,
        scope: &Scope,
        verified: bool,
    ) -> Result<UserRow, AuthError> {
        let hash = match self.password {
            Some(p) => password::hash(p).await?,
            None => password::NO_PASSWORD.to_string(),
        };
        let id = uuid::Uuid::now_v7().to_string();
        store
            .create_user(scope, &id, &self.email, &hash, verified)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AuthError::EmailTaken,
                other => other.into(),
            })
    }
}
