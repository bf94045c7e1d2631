//! The subcommands' arguments. Each works on local data or, remotely, through a
//! server's admin API (src/cli/remote_commands.rs); the module doc of src/cli.rs says
//! which is chosen when.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs of a tenant, oldest first.
    List {
        #[arg(long)]
        tenant: String,
        /// pending or dead (default: both).
        #[arg(long)]
        state: Option<String>,
    },
    /// Run a dead job again, with fresh attempts.
    Retry {
        id: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate a TOML rule set and make it the tenant's active set.
    Deploy {
        file: std::path::PathBuf,
        #[arg(long)]
        tenant: String,
    },
    /// Run a rules test file (cases of auth, doc, new, operation, expected allow/deny);
    /// exits non-zero when a case fails. Needs no server or data.
    Test { file: std::path::PathBuf },
    /// Show which rule and sub-expression decide an operation on a stored document.
    Explain {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        collection: String,
        #[arg(long)]
        id: String,
        /// Evaluate as this user (default: anonymous).
        #[arg(long)]
        uid: Option<String>,
        /// read, update or delete.
        #[arg(long, default_value = "read")]
        op: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an admin; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: passwords never go in argv).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        slug: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Where its data lives: `default` (the server's own storage) or a cluster of
        /// PLINTH_CLUSTERS.
        #[arg(long)]
        location: Option<String>,
    },
    /// List tenants.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a tenant: its routes answer 403 until resumed.
    Suspend { slug: String },
    /// Resume a suspended tenant.
    Resume { slug: String },
    /// Delete a tenant and all of its data.
    Delete {
        slug: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Write a tenant (documents, rules, deploys, users, service keys) to standard
    /// output as NDJSON, from local storage or a server's admin API.
    Export {
        slug: String,
        /// Also write the tenant's secrets, decrypted. Keep such a file as safe as the
        /// secrets themselves; without this flag they are left out.
        #[arg(long)]
        include_secrets: bool,
    },
    /// Create the tenant SLUG from an export read on standard input. The file is
    /// checked whole first; on any error nothing is left behind. Several SLUGs make a
    /// tenant of the file under each, one after the other (copies of a template, e.g.
    /// to seed a benchmark); the first that fails stops the command, and the tenants
    /// imported before it stay.
    Import {
        #[arg(required = true, value_name = "SLUG")]
        slugs: Vec<String>,
        /// If SLUG exists, replace its data (documents, rules, deploys, users, keys,
        /// secrets) with the file's in one transaction, signing its users out; without
        /// this flag an existing tenant is refused.
        #[arg(long)]
        replace: bool,
    },
    /// Move a tenant's data to another storage location (`default` or a cluster of
    /// PLINTH_CLUSTERS): its writes are refused (503 tenant_moving) while it copies; the
    /// copy is checked by counts and a checksum before the tenant switches over. A move
    /// interrupted by a crash (its mover silent past its lease) is first finished, if it
    /// had switched, or rolled back; `--to` its current location then only recovers.
    Move {
        slug: String,
        /// The target location.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a service key; the key is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// List a tenant's service keys.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a service key.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Create or replace a secret; the value is read from standard input (one trailing
    /// newline is dropped), never from the command line.
    Set {
        /// `^[A-Z_][A-Z0-9_]{0,63}$`
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// List a tenant's secrets (names and update times, never values).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Delete a secret.
    Delete {
        name: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SigningKeyCommand {
    /// Make a new signing key current; older keys keep verifying until restart.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// A tenant's users in creation order (50 a page; `--cursor` for the next).
    List {
        #[arg(long)]
        tenant: String,
        /// Part of the email.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Create a user, with sign-up's checks of the email and password. Without
    /// `--password-stdin` the user has no password and signs in after a password reset.
    Create {
        email: String,
        #[arg(long)]
        tenant: String,
        /// Mark the email verified.
        #[arg(long)]
        verified: bool,
        /// Read the user's password from standard input (passwords never go in argv).
        #[arg(long)]
        password_stdin: bool,
    },
    /// One user.
    Show {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Disable a user (ends their sessions).
    Disable {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Enable a disabled user.
    Enable {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// End every session of a user.
    RevokeSessions {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Delete a user and their sessions.
    Delete {
        id: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        yes: bool,
    },
}

/// Admins of a remote server (owners only); `plinth admin create` makes the first one
/// on the server's own disk.
#[derive(Subcommand, Debug)]
pub enum AdminsCommand {
    /// List admins.
    List,
    /// Add an admin; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        /// owner, admin, tenant_admin or viewer.
        #[arg(long)]
        role: String,
        /// A tenant of a tenant_admin (repeat, or separate with commas).
        #[arg(long = "tenant", value_delimiter = ',')]
        tenants: Vec<String>,
        /// Read the password from standard input (required: passwords never go in argv).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change an admin's role and/or tenants.
    Update {
        id: String,
        #[arg(long)]
        role: Option<String>,
        /// The new tenant list (repeat, or separate with commas); `--tenant ''` clears it.
        #[arg(long = "tenant", value_delimiter = ',')]
        tenants: Option<Vec<String>>,
    },
    /// Remove an admin: their sessions end and their tokens stop working.
    Remove { id: String },
    /// Invite an admin by mail: they get a one-time link to choose their password.
    Invite {
        #[arg(long)]
        email: String,
        /// owner, admin, tenant_admin or viewer.
        #[arg(long)]
        role: String,
        /// A tenant of a tenant_admin (repeat, or separate with commas).
        #[arg(long = "tenant", value_delimiter = ',')]
        tenants: Vec<String>,
    },
    /// List the invitations not yet accepted.
    Invitations,
    /// Withdraw an invitation: its link stops working.
    Withdraw { id: String },
}

/// Admin API keys of a remote server, for CI and other machines.
#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// The keys you may see (owners: all).
    List,
    /// Make a key; it is printed once, on standard output.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long = "tenant", value_delimiter = ',')]
        tenants: Vec<String>,
        /// RFC 3339, e.g. 2027-06-30T00:00:00Z (default: never).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Revoke a key: refused from its next request on.
    Revoke { id: String },
}
