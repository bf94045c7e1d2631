//! Integration tests: each spawns a real server and drives it over HTTP (and the CLI
//! binary), on SQLite and on PostgreSQL.

mod support;

mod admin;
mod auth;
mod cli;
mod demo;
mod documents;
mod functions;
mod hooks;
mod lists;
mod plumbing;
mod realtime;
mod rules;
mod secrets;
mod tenancy;
mod voting;
