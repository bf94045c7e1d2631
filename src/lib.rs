//! Plinth: a self-hosted, multi-tenant Backend-as-a-Service in one binary.
//!
//! `app::App::build(config)` is what the server binary and the integration tests embed.
// Only the JavaScript sandbox (loading bytecode it compiled itself) and the store's SQLite
// memory counters and budget (`store::sqlite::tuning`: C calls without pointers) may use
// `unsafe`.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod acme;
pub mod admin;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod demo;
pub mod documents;
pub mod error;
pub mod fault;
pub mod functions;
pub mod http;
pub mod metrics;
pub mod names;
pub mod query;
pub mod realtime;
pub mod rules;
pub mod secrets;
pub mod state;
pub mod store;
pub mod tenancy;
pub mod tenant_registry;
pub mod text;
pub mod usage;
