//! A subscription's set-up: checks, the read plan, registration in the feed, the
//! snapshot or history, and the switch to live events, with nothing lost or repeated.

use std::sync::Arc;

use super::{Connection, LocalSub, SubError, reply, send};
use crate::documents::{DocError, MAX_PAGE_BYTES, ReadFor};
use crate::names::{CollectionName, DocId};
use crate::query::OrderField;
use crate::realtime::changes::{self, Read};
use crate::realtime::feed::{self, Feed, Mode, Sub};
use crate::realtime::outbox::Sink;
use crate::realtime::protocol::{ServerMsg, Subscribe};
use crate::realtime::socket_auth::SocketAuth;
use crate::rules::{Expression, Predicate};
use crate::store::{ListQuery, ListedDoc, OrderKey, StoreError};
use crate::tenancy::Scope;

impl Connection {
    pub(super) async fn subscribe(
        &mut self,
        sink: &mut Sink,
        req: &Subscribe,
    ) -> Result<(), SubError> {
        let id = req.id.as_str();
        let (collection, doc) = self.check_request(req)?;
        let scope = self.scope();
        let auth = self
            .shared
            .auth()
            .unwrap_or_else(|| Arc::new(SocketAuth::anonymous()));
        // The read plan: the rule as SQL for the snapshot, the filter to evaluate per
        // event, and a refusal at once of a subscription the rule can never serve.
        let plan = self
            .broker
            .docs
            .read_plan(
                &scope,
                &collection,
                req.filter.as_deref(),
                doc.as_ref(),
                ReadFor::Subscription,
            )
            .await
            .map_err(|e| plan_refused(id, &auth, e))?;
        let last = self.log_position(&scope, id, req.since).await?;

        // Register first (buffering live events), then send history, then go live: no
        // event is lost between the history and the live stream, and none repeats.
        let replaying = req.since.is_some() || req.snapshot;
        // A subscription that depends on a token that expires ends with it.
        let requires_auth = auth.info.is_some() || auth.expires.is_some();
        let (feed, sub, position) = self.register(req, plan.filter, last, replaying, requires_auth);
        if !replaying {
            let t = ServerMsg::Subscribed { id, seq: position }.text();
            return send(sink, t).await;
        }
        let mut from = req.since.unwrap_or(position);
        let mut snap = None;
        if req.snapshot {
            let (seq, docs) = self
                .read_snapshot(&scope, req, plan.predicate.as_ref())
                .await?;
            from = seq;
            snap = Some(docs);
        }
        send(sink, ServerMsg::Subscribed { id, seq: from }.text()).await?;
        if let Some(docs) = snap {
            send(sink, self.snapshot_frame(id, from, docs)).await?;
        }
        let broker = self.broker.clone();
        let replayed = replay(&broker, sink, &scope, &sub, &auth, from, position).await;
        if let Err(SubError::Reply(_)) = &replayed {
            self.detach(id);
        }
        replayed?;
        self.go_live(sink, id, &feed, &sub, from.max(position))
            .await
    }

    /// The checks of a subscription that need neither the rules nor the log; past them the
    /// collection and document id are checked names.
    fn check_request(&self, req: &Subscribe) -> Result<(CollectionName, Option<DocId>), SubError> {
        let id = req.id.as_str();
        let max = self.broker.config.max_subscriptions_per_socket;
        if id.is_empty() || id.len() > 128 {
            return Err(reply(
                id,
                "invalid_subscription",
                "id must be 1-128 characters",
            ));
        }
        if self.subs.contains_key(id) {
            return Err(reply(
                id,
                "invalid_subscription",
                "a subscription with this id exists",
            ));
        }
        if self.subs.len() >= max {
            return Err(reply(
                id,
                "too_many_subscriptions",
                &format!("at most {max} subscriptions per socket"),
            ));
        }
        let collection = CollectionName::parse(&req.collection).map_err(|_| {
            reply(
                id,
                "invalid_subscription",
                "collection must match ^[a-z][a-z0-9_]{0,62}$",
            )
        })?;
        let doc = match &req.doc {
            Some(d) => Some(DocId::parse(d).map_err(|_| {
                reply(
                    id,
                    "invalid_subscription",
                    "doc must be 1-128 of [A-Za-z0-9_-]",
                )
            })?),
            None => None,
        };
        Ok((collection, doc))
    }

    /// The log's end, once `since` is checked against it: not ahead of it, and not
    /// before what was pruned (then the client must resync).
    async fn log_position(
        &self,
        scope: &Scope,
        id: &str,
        since: Option<i64>,
    ) -> Result<i64, SubError> {
        let (last, pruned) = self
            .broker
            .store
            .change_seq(scope)
            .await
            .map_err(|e| store_fault(id, &e))?;
        if let Some(s) = since {
            if s > last || s < 0 {
                return Err(reply(
                    id,
                    "invalid_since",
                    &format!("since {s} is ahead of the log (at {last})"),
                ));
            }
            if s < pruned {
                return Err(SubError::Reply(
                    ServerMsg::Resync {
                        id,
                        reason: "since_too_old",
                    }
                    .text(),
                ));
            }
        }
        Ok(last)
    }

    /// Adds the subscription to the tenant's feed (live at once unless it replays
    /// history first) and to the socket's own; returns the feed's position then.
    fn register(
        &mut self,
        req: &Subscribe,
        filter: Option<Arc<Expression>>,
        last: i64,
        replaying: bool,
        requires_auth: bool,
    ) -> (Arc<Feed>, Arc<Sub>, i64) {
        let feed = self.broker.feed(&self.shared.tenant, last);
        let sub = Arc::new(Sub::new(
            (self.shared.id, req.id.clone()),
            req.collection.clone(),
            req.doc.clone(),
            filter,
            self.shared.clone(),
            Mode::Replaying {
                buffer: Vec::new(),
                overflowed: false,
            },
        ));
        let position = {
            let mut state = feed.lock();
            if !replaying {
                *sub.mode.lock().unwrap_or_else(|p| p.into_inner()) = Mode::Live {
                    from: state.position,
                };
            }
            state.add(sub.clone());
            state.position
        };
        self.broker.ensure_tailer(&feed);
        self.subs.insert(
            req.id.clone(),
            LocalSub {
                feed: feed.clone(),
                requires_auth,
            },
        );
        (feed, sub, position)
    }

    /// The documents the plan allows, oldest first, and the log's seq they are as of.
    async fn read_snapshot(
        &mut self,
        scope: &Scope,
        req: &Subscribe,
        predicate: Option<&Predicate>,
    ) -> Result<(i64, Vec<ListedDoc>), SubError> {
        let order = [OrderKey {
            field: OrderField::CreatedAt,
            desc: false,
        }];
        let limit = self.broker.config.snapshot_limit as i64;
        let read = self
            .broker
            .store
            .snapshot(
                scope,
                ListQuery {
                    collection: &req.collection,
                    predicate,
                    order: &order,
                    after: None,
                    limit: limit + 1,
                    max_bytes: MAX_PAGE_BYTES,
                    sort_matches: false,
                },
            )
            .await;
        read.map_err(|e| {
            self.detach(&req.id);
            store_fault(&req.id, &e)
        })
    }

    fn snapshot_frame(&self, id: &str, seq: i64, mut docs: Vec<ListedDoc>) -> String {
        let keep = crate::store::page_len(&docs, self.broker.config.snapshot_limit, MAX_PAGE_BYTES);
        let truncated = docs.len() > keep;
        docs.truncate(keep);
        ServerMsg::Snapshot {
            id,
            seq,
            truncated,
            docs: docs
                .iter()
                .map(crate::documents::wire::DocJson::listed)
                .collect(),
        }
        .text()
    }

    /// Go live: flush what arrived during the history, in order, past what was already
    /// sent; events from now on go straight to the socket.
    async fn go_live(
        &mut self,
        sink: &mut Sink,
        id: &str,
        feed: &Feed,
        sub: &Sub,
        live_from: i64,
    ) -> Result<(), SubError> {
        let (buffered, overflowed) = {
            let _state = feed.lock();
            let mut mode = sub.mode.lock().unwrap_or_else(|p| p.into_inner());
            let old = std::mem::replace(&mut *mode, Mode::Live { from: live_from });
            match old {
                Mode::Replaying { buffer, overflowed } => (buffer, overflowed),
                Mode::Live { .. } => (Vec::new(), false),
            }
        };
        if overflowed {
            self.detach(id);
            return Err(SubError::Reply(
                ServerMsg::Resync {
                    id,
                    reason: "slow_consumer",
                }
                .text(),
            ));
        }
        for (seq, text) in buffered {
            if seq > live_from {
                send(sink, text).await?;
            }
        }
        Ok(())
    }
}

/// Sends the subscription's history between `from` and `position` (the feed's position
/// when it registered), judged as the feed judges live events, read in pages until one
/// comes back short (the log's end) or passes `position`.
async fn replay(
    broker: &crate::realtime::Broker,
    sink: &mut Sink,
    scope: &Scope,
    sub: &Sub,
    auth: &SocketAuth,
    from: i64,
    position: i64,
) -> Result<(), SubError> {
    let id = sub.key.1.as_str();
    let first = (from < position).then(|| Read {
        from,
        collections: vec![sub.collection.clone()],
    });
    let mut history = History {
        sink,
        sub,
        auth,
        position,
        cursor: from,
    };
    let read = changes::read_log(&broker.store, &broker.rules, scope, first, &mut history).await;
    read.map_err(|e| match e {
        Replay::Log(e) => store_fault(id, e.store()),
        Replay::Socket(e) => e,
    })
}

/// A history replay's handling of the pages it reads: send one subscription's events.
struct History<'a> {
    sink: &'a mut Sink,
    sub: &'a Sub,
    auth: &'a SocketAuth,
    position: i64,
    /// The seq of the last change sent or passed.
    cursor: i64,
}

impl changes::OnPage for History<'_> {
    type Error = Replay;

    async fn page(&mut self, page: changes::LogPage) -> Result<Option<Read>, Replay> {
        let (sub, position) = (self.sub, self.position);
        for c in page.changes.iter().take_while(|c| c.seq <= position) {
            self.cursor = c.seq;
            let versions = feed::Rendered::new(c);
            if let Some((op, side)) =
                feed::event_for(sub, c, &versions, &page.rules, Some(self.auth), page.now_ms)
            {
                send(self.sink, versions.message(sub, c.seq, op, side)).await?;
            }
            if let Some(text) = sub.spent_notice() {
                send(self.sink, text).await?;
            }
        }
        // A full page ends at its last change (`reached` is that seq, which `cursor` now
        // holds): read on. A short one reached the log's end, which is at or past
        // `position` (the feed only reads committed changes).
        if page.at_end() || page.changes.last().is_some_and(|c| c.seq >= position) {
            return Ok(None);
        }
        self.cursor = self.cursor.max(page.reached);
        Ok((self.cursor < position).then_some(Read {
            from: self.cursor,
            collections: page.collections,
        }))
    }
}

/// What ends a history replay: the log could not be read, or the socket failed.
enum Replay {
    Log(changes::LogError),
    Socket(SubError),
}

impl From<changes::LogError> for Replay {
    fn from(e: changes::LogError) -> Replay {
        Replay::Log(e)
    }
}

impl From<SubError> for Replay {
    fn from(e: SubError) -> Replay {
        Replay::Socket(e)
    }
}

/// The error frame of a subscription the read plan refused: the domain error's code,
/// and its detail (a denial hints at `auth` when the socket is anonymous).
fn plan_refused(id: &str, auth: &SocketAuth, e: DocError) -> SubError {
    let message = match &e {
        DocError::Denied { collection, .. } => {
            let hint = if auth.info.is_none() {
                "; send auth first"
            } else {
                ""
            };
            format!("the read rule of '{collection}' denies this caller{hint}")
        }
        DocError::InvalidFilter(u) => {
            format!("line {} column {}: {}", u.line, u.column, u.message)
        }
        other => other.client_detail(),
    };
    reply(id, e.code(), &message)
}

fn store_fault(id: &str, e: &StoreError) -> SubError {
    tracing::warn!(error = %e, "realtime: a subscription could not be set up");
    reply(id, e.code(), &e.client_detail())
}
