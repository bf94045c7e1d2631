//! The invocation log's writer: records gathered off the request path and written in
//! batches per tenant.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::FunctionService;
use crate::store::{InvocationRow, Store};
use crate::tenancy::Scope;

impl FunctionService {
    /// Writes the invocation records still gathering (at shutdown), waiting up to 5 s.
    pub async fn flush_invocations(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.log.send(LogMsg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

/// What the invocation-log writer receives.
pub(super) enum LogMsg {
    Record(Box<(Scope, InvocationRow)>),
    /// Write what has been gathered now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Writes invocation records in batches, off the request path: at most one transaction
/// per tenant every 50 ms. Written as they came, a busy tenant's records took hundreds of
/// small transactions a second on the tenant's SQLite writer, between the group commits
/// that requests wait for.
pub(super) async fn write_invocations(store: Store, mut rx: mpsc::UnboundedReceiver<LogMsg>) {
    const GATHER: Duration = Duration::from_millis(50);
    const MAX_BATCH: usize = 4096;
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
        if !buf.iter().any(|m| matches!(m, LogMsg::Flush(_))) {
            tokio::time::sleep(GATHER).await;
            while buf.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => buf.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut by_tenant: HashMap<i64, (Scope, Vec<InvocationRow>)> = HashMap::new();
        let mut flushed = Vec::new();
        for msg in buf.drain(..) {
            match msg {
                LogMsg::Record(r) => {
                    let (scope, row) = *r;
                    by_tenant
                        .entry(scope.tenant().id)
                        .or_insert_with(|| (scope, Vec::new()))
                        .1
                        .push(row)
                }
                LogMsg::Flush(done) => flushed.push(done),
            }
        }
        for (_, (scope, rows)) in by_tenant {
            if let Err(e) = store.insert_invocations(&scope, &rows).await {
                tracing::warn!(tenant = %scope.tenant().slug, error = %e, "could not record invocations");
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}
