//! Integration tests: each spawns a real server and drives it over HTTP (and the CLI
//! binary), on SQLite and on PostgreSQL.

// The server binary's allocator (src/main.rs): the servers run inside this process, so
// memory measured here (e.g. RSS under a flood) is what the server would use.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The server binary's jemalloc settings (src/main.rs: freed pages go back to the system
/// while the process is otherwise idle).
#[cfg(all(unix, not(target_env = "musl")))]
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
#[used]
static malloc_conf: &[u8; 23] = b"background_thread:true\0";

mod support;

mod acme;
mod admin;
mod admin_info;
mod admin_invites;
mod admin_keys;
mod admin_read_token;
mod admin_read_token_revocation;
mod admin_roles;
mod admin_sessions;
mod admin_users;
mod attacks;
mod auth;
mod backup;
mod cli;
mod cli_remote;
mod demo;
mod documents;
mod exhaustion;
mod export;
mod export_remote;
mod functions;
mod hooks;
mod hooks_idle;
mod hooks_lease;
mod hooks_writer;
mod idle_release;
mod list_count;
mod lists;
mod nodes_start;
mod placement;
mod placement_cli;
mod placement_fence;
mod placement_recovery;
mod plans;
mod plumbing;
mod realtime;
mod rules;
mod rules_console;
mod secrets;
mod tenancy;
mod tls;
mod tls_process;
mod usage;
mod voting;
