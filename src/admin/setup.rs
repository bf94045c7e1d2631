//! First-run setup and admin login: the setup token, the first owner, admin tokens.

use super::*;

impl AdminService {
    /// Which database holds the data: `sqlite` or `postgres` (the server's overview).
    pub fn backend_name(&self) -> &'static str {
        match self.store.kind() {
            crate::store::BackendKind::Sqlite => "sqlite",
            crate::store::BackendKind::Postgres => "postgres",
        }
    }

    /// Starts signing tokens with a new key; the old ones still verify until retired.
    /// Servers already running keep signing with the key they loaded until restarted.
    pub async fn rotate_signing_key(&self, actor: &Actor) -> Result<String> {
        let kid = Keyring::rotate(&self.store).await?;
        self.audit(
            actor,
            "signing_key.rotate",
            None,
            Some(&kid),
            serde_json::json!({}),
        )
        .await?;
        Ok(kid)
    }

    /// When no admin exists, makes a fresh one-time setup token (stored hashed) and
    /// returns it for printing. Each start without an admin adds one: nodes starting
    /// together each print their own, and each works (once, for the first admin only).
    pub async fn prepare_setup_token(&self) -> Result<Option<String>> {
        if self.store.count_admins().await? > 0 {
            self.store.clear_setup_token().await?;
            return Ok(None);
        }
        let token = random_token(24);
        self.store.add_setup_token(&sha256_hex(&token)).await?;
        Ok(Some(token))
    }

    pub(super) async fn checked_credentials(
        &self,
        email: &str,
        pw: &str,
    ) -> Result<(String, String)> {
        let email = password::normalize_email(email).map_err(|p| field("email", p))?;
        password_policy(pw, Some(&email)).map_err(|p| {
            if p.is_weak() {
                CredentialError::WeakPassword {
                    field: "password",
                    problem: p.describe(),
                }
                .into()
            } else {
                field("password", p.describe())
            }
        })?;
        let hash = password::hash(pw.to_string()).await?;
        Ok((email, hash))
    }

    /// Creates the first admin with the setup token printed at start. Anyone may call
    /// it, so it is throttled per client IP (the login limiter's bucket) and it checks the
    /// token, and that no admin exists, before it spends a password hash on the request.
    pub async fn setup(
        &self,
        token: &str,
        email: &str,
        pw: &str,
        ip: &str,
    ) -> Result<(AdminRow, String)> {
        if token.is_empty() {
            return Err(field("token", "is required"));
        }
        self.limiter
            .check_ip(ip)
            .map_err(CredentialError::RateLimited)?;
        let token_hash = sha256_hex(token);
        if !self.store.setup_token_pending(&token_hash).await? {
            return Err(AdminError::InvalidSetupToken);
        }
        let (email, hash) = self.checked_credentials(email, pw).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let admin = self
            .store
            .create_first_admin(&token_hash, &id, &email, &hash)
            .await?
            .ok_or(AdminError::InvalidSetupToken)?;
        self.audit(
            &Actor::admin(&admin.email),
            "admin.setup",
            None,
            Some(&admin.id),
            serde_json::json!({"email": admin.email}),
        )
        .await?;
        let token = self.keyring.sign(&admin_claims(
            &admin.id,
            &admin.email,
            admin.password_version,
            self.admin_ttl,
        ))?;
        Ok((admin, token))
    }

    /// Creates an admin from the local CLI (which has direct access to the data, so the
    /// admin is an owner).
    pub async fn create_admin(&self, email: &str, pw: &str) -> Result<AdminRow> {
        let (email, hash) = self.checked_credentials(email, pw).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let admin = self
            .store
            .create_admin(&id, &email, &hash, Role::Owner.as_str(), "[]")
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::AdminExists,
                other => other.into(),
            })?;
        self.store.clear_setup_token().await?;
        self.audit(
            &Actor::cli(),
            "admin.create",
            None,
            Some(&admin.id),
            serde_json::json!({"email": admin.email}),
        )
        .await?;
        Ok(admin)
    }

    /// An admin token for these credentials (`POST /admin/v1/auth/login`).
    pub async fn login(&self, email: &str, pw: &str, ip: &str) -> Result<String> {
        let admin = self.check_password(email, pw, ip).await?;
        Ok(self.keyring.sign(&admin_claims(
            &admin.id,
            &admin.email,
            admin.password_version,
            self.admin_ttl,
        ))?)
    }

    /// The admin these credentials prove, rate limited like a tenant user's login (see
    /// `auth::ratelimit`), without the known-address pass: admins are few, and the
    /// ceiling guards the whole platform. Token and session logins share the buckets.
    pub(super) async fn check_password(&self, email: &str, pw: &str, ip: &str) -> Result<AdminRow> {
        let email = password::normalize_email(email).map_err(|p| field("email", p))?;
        let account = format!("admin:{email}");
        let mut attempt = self
            .limiter
            .begin_login(ip, &account)
            .map_err(CredentialError::RateLimited)?;
        if let Err(wait) = attempt.charge_account(&account) {
            attempt.cancel();
            return Err(CredentialError::RateLimited(wait).into());
        }
        let Some(admin) = self.store.get_admin_by_email(&email).await? else {
            password::verify_dummy(pw.to_string()).await;
            return Err(CredentialError::InvalidCredentials.into());
        };
        if !password::verify(pw.to_string(), admin.password_hash.clone()).await {
            return Err(CredentialError::InvalidCredentials.into());
        }
        attempt.succeeded();
        Ok(admin)
    }

    /// The principal of an `Authorization: Bearer` credential: an admin API key
    /// (`pak_...`) or an admin token.
    pub async fn verify_bearer(&self, token: &str) -> Result<Principal> {
        if token.starts_with(api_keys::KEY_MARK) {
            return self.verify_api_key(token).await;
        }
        let claims: AdminClaims =
            self.keyring
                .verify(token, ADMIN_AUDIENCE)
                .await
                .map_err(|e| match e {
                    TokenError::Expired => AdminError::TokenExpired,
                    TokenError::Invalid(why) => CredentialError::InvalidToken(why).into(),
                })?;
        let admin = self
            .store
            .get_admin(&claims.sub)
            .await?
            .ok_or_else(|| invalid_token("admin no longer exists"))?;
        if claims.pwv != admin.password_version {
            return Err(invalid_token(
                "the password changed since this token was issued",
            ));
        }
        admins::principal_of(admin, Via::Token)
    }
}
