//! Reading a tenant's change log page by page, with the rule set and the clock to judge
//! each page by: one loop for the feed's tailer and for a subscription's history replay.
//! What each does with a page (dispatch to every subscription, or send to one socket)
//! and where it reads next are theirs.

use std::sync::Arc;

use crate::rules::{RuleSet, RulesRegistry};
use crate::store::{Change, Store, StoreError};
use crate::tenancy::Scope;

/// Changes read from the log at a time.
pub(crate) const LOG_PAGE: i64 = 500;

/// Where to read the log next: after `from`, the changes of these collections.
pub(crate) struct Read {
    pub from: i64,
    pub collections: Vec<String>,
}

/// One page of the log.
pub(crate) struct LogPage {
    /// The changes after the read's `from`, of its collections, in seq order.
    pub changes: Vec<Change>,
    /// How far the read got, including changes of other collections (it may be past the
    /// last change of `changes`).
    pub reached: i64,
    /// The collections read.
    pub collections: Vec<String>,
    pub rules: Arc<RuleSet>,
    pub now_ms: i64,
}

impl LogPage {
    /// A short page reached the log's end (as far as it was committed when read).
    pub fn at_end(&self) -> bool {
        (self.changes.len() as i64) < LOG_PAGE
    }
}

/// Why a page could not be read.
#[derive(Debug)]
pub(crate) enum LogError {
    Changes(StoreError),
    Rules(StoreError),
}

impl LogError {
    pub fn store(&self) -> &StoreError {
        match self {
            LogError::Changes(e) | LogError::Rules(e) => e,
        }
    }
}

/// What is done with each page of a read of the log.
pub(crate) trait OnPage {
    type Error: From<LogError>;

    /// Handles one page; says where to read next (None: stop).
    async fn page(&mut self, page: LogPage) -> Result<Option<Read>, Self::Error>;
}

/// Reads pages from `first` on, handing each to `on_page`, until it says stop.
pub(crate) async fn read_log<H: OnPage>(
    store: &Store,
    rules: &RulesRegistry,
    scope: &Scope,
    first: Option<Read>,
    on_page: &mut H,
) -> Result<(), H::Error> {
    let mut next = first;
    while let Some(read) = next {
        let (changes, reached) = store
            .changes_since(scope, read.from, LOG_PAGE, Some(&read.collections))
            .await
            .map_err(LogError::Changes)?;
        let rules = rules.get(scope).await.map_err(LogError::Rules)?;
        let page = LogPage {
            changes,
            reached,
            collections: read.collections,
            rules,
            now_ms: chrono::Utc::now().timestamp_millis(),
        };
        next = on_page.page(page).await?;
    }
    Ok(())
}
