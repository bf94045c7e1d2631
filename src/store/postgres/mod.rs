//! The hot paths of the PostgreSQL backend through sqlx: document reads, lists,
//! snapshots, the change log and the group commit. The SQLite backend runs the same
//! paths through rusqlite (`store::sqlite`); what is cold (control tables, users,
//! secrets, rule sets, deploys, migrations) is written once for both dialects with
//! `on_db!`.

mod commit;
mod documents;

pub(crate) use commit::apply_group;
pub(crate) use documents::{changes, count, explain, get_document, list, snapshot};
