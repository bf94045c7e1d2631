//! The cluster, tested: three `plinth serve` nodes on one PostgreSQL database behind
//! haproxy running docker/haproxy.cfg, on loopback. PostgreSQL only (SQLite is one node
//! by construction); skipped without TEST_POSTGRES_URL or haproxy, except under CI=true.

#[path = "api/support/mod.rs"]
mod support;

#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/ws.rs"]
mod ws;

#[path = "cluster/fanout.rs"]
mod fanout;
#[path = "cluster/propagation.rs"]
mod propagation;
#[path = "cluster/startup.rs"]
mod startup;
