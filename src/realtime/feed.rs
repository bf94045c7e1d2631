//! One tenant's feed: the subscriptions of every socket on the tenant, indexed by
//! collection and by document, and the dispatch of each change the tailer
//! (`Broker::tail`) reads from the change log to the subscriptions it can concern.
//!
//! The change log is the only source of events: a commit only wakes the tailer (locally,
//! or through PostgreSQL NOTIFY from another node), which then reads the log after its
//! position. So events reach subscribers in seq order, gap-free, whichever node wrote
//! them, and nothing committed goes unpublished.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Notify;

use super::changes::{LogError, LogPage, OnPage, Read};
use super::outbox::Outbox;
use super::socket_auth::SocketAuth;
use crate::documents::wire::DocJson;
use crate::rules::{
    AuthInfo, Bindings, DocMeta, EVENT_BUDGET, Expression, Operation, RuleSet, Verdict,
};
use crate::store::{Change, ChangeOp, StoredDoc};

/// (socket id, subscription id)
pub(crate) type SubKey = (u64, String);

/// Events buffered for a subscription while its history is being replayed.
const MAX_REPLAY_BUFFER: usize = 10_000;

pub(crate) enum Mode {
    /// History up to the feed's position at registration is being sent by the socket;
    /// later events wait here.
    Replaying {
        buffer: Vec<(i64, String)>,
        overflowed: bool,
    },
    /// Events with seq above `from` go straight to the socket's queue.
    Live { from: i64 },
}

pub(crate) struct Sub {
    pub key: SubKey,
    /// The start of this subscription's `change` messages, up to the seq, rendered once.
    head: String,
    pub collection: String,
    pub doc: Option<String>,
    pub filter: Option<Arc<Expression>>,
    pub socket: Arc<Outbox>,
    pub mode: std::sync::Mutex<Mode>,
    /// Its filter spent the per-event budget: 0 no, 1 yes (error frame not sent yet),
    /// 2 yes and told. A spent subscription gets no more events and costs nothing.
    spent: std::sync::atomic::AtomicU8,
}

impl Sub {
    pub fn new(
        key: SubKey,
        collection: String,
        doc: Option<String>,
        filter: Option<Arc<Expression>>,
        socket: Arc<Outbox>,
        mode: Mode,
    ) -> Sub {
        let id = serde_json::to_string(&key.1).unwrap_or_else(|_| "\"\"".into());
        Sub {
            head: format!("{{\"type\":\"change\",\"id\":{id},\"seq\":"),
            key,
            collection,
            doc,
            filter,
            socket,
            mode: std::sync::Mutex::new(mode),
            spent: std::sync::atomic::AtomicU8::new(0),
        }
    }

    fn mark_spent(&self) {
        let _ = self
            .spent
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn is_spent(&self) -> bool {
        self.spent.load(Ordering::Relaxed) != 0
    }

    /// The `error` frame that ends this subscription, once, after its filter spent the
    /// per-event budget.
    pub fn spent_notice(&self) -> Option<String> {
        self.spent
            .compare_exchange(1, 2, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            .then(|| {
                super::protocol::error(
                    Some(&self.key.1),
                    "filter_too_costly",
                    "the subscription's filter spent its per-event evaluation budget; \
                     no more events are sent for it (unsubscribe, and subscribe with a \
                     cheaper filter)",
                )
            })
    }
}

/// Subscriptions by key, held by the indexes themselves: dispatching a change walks
/// them without a second lookup per subscriber.
type SubSet = HashMap<SubKey, Arc<Sub>>;

#[derive(Default)]
pub(crate) struct FeedState {
    /// Seq of the last change the tailer dispatched.
    pub position: i64,
    pub subs: HashMap<SubKey, Arc<Sub>>,
    by_collection: HashMap<String, SubSet>,
    by_doc: HashMap<(String, String), SubSet>,
    pub tailer_running: bool,
}

pub(crate) struct Feed {
    pub tenant: Arc<crate::tenancy::Tenant>,
    pub state: std::sync::Mutex<FeedState>,
    pub wake: Notify,
}

impl Feed {
    pub fn new(tenant: Arc<crate::tenancy::Tenant>, position: i64) -> Feed {
        Feed {
            tenant,
            state: std::sync::Mutex::new(FeedState {
                position,
                ..Default::default()
            }),
            wake: Notify::new(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Dispatches a page of the log the tailer read, and sends the live events; says
    /// where to read next (None at the log's end).
    pub async fn dispatch_page(&self, page: LogPage) -> Option<Read> {
        let mut out = Deliveries::default();
        {
            let mut state = self.lock();
            if state.collections() != page.collections {
                // A subscription to another collection came meanwhile (registered at the
                // position): this read skipped its changes. Read again.
                return Some(state.next_read());
            }
            for c in &page.changes {
                if c.seq <= state.position {
                    continue;
                }
                state.dispatch(c, &page.rules, page.now_ms, &mut out);
                state.position = c.seq;
            }
            // Past the changes of the collections nobody follows, too.
            if page.reached > state.position {
                state.position = page.reached;
            }
        }
        // Sent before the next read, by this feed's only tailer: each socket gets its
        // events in seq order.
        out.send().await;
        if page.at_end() {
            return None;
        }
        // Outside the budget, nothing else would make a long catch-up (the log reads may
        // complete at once) give the worker to other tasks between reads.
        tokio::task::yield_now().await;
        Some(self.lock().next_read())
    }
}

/// The tailer's handling of the pages it reads: dispatch to the feed's subscriptions.
pub(crate) struct Dispatch<'a>(pub &'a Feed);

impl OnPage for Dispatch<'_> {
    type Error = LogError;

    async fn page(&mut self, page: LogPage) -> Result<Option<Read>, LogError> {
        Ok(self.0.dispatch_page(page).await)
    }
}

impl FeedState {
    pub fn add(&mut self, sub: Arc<Sub>) {
        match &sub.doc {
            Some(d) => {
                self.by_doc
                    .entry((sub.collection.clone(), d.clone()))
                    .or_default()
                    .insert(sub.key.clone(), sub.clone());
            }
            None => {
                self.by_collection
                    .entry(sub.collection.clone())
                    .or_default()
                    .insert(sub.key.clone(), sub.clone());
            }
        }
        self.subs.insert(sub.key.clone(), sub);
    }

    pub fn remove(&mut self, key: &SubKey) -> Option<Arc<Sub>> {
        let sub = self.subs.remove(key)?;
        match &sub.doc {
            Some(d) => {
                let k = (sub.collection.clone(), d.clone());
                if let Some(set) = self.by_doc.get_mut(&k) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_doc.remove(&k);
                    }
                }
            }
            None => {
                if let Some(set) = self.by_collection.get_mut(&sub.collection) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_collection.remove(&sub.collection);
                    }
                }
            }
        }
        Some(sub)
    }

    /// The tailer's next read: after its position, the collections with subscriptions.
    pub fn next_read(&self) -> Read {
        Read {
            from: self.position,
            collections: self.collections(),
        }
    }

    /// The collections with subscriptions (sorted, so two calls compare equal when the
    /// set did not change).
    pub fn collections(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> = self
            .by_collection
            .keys()
            .chain(self.by_doc.keys().map(|(c, _)| c))
            .collect();
        set.into_iter().cloned().collect()
    }

    /// Works out which subscriptions one change concerns and what each gets: live ones
    /// into `out` (sent once the feed is unlocked), replaying ones into their buffer.
    pub fn dispatch(&self, change: &Change, rules: &RuleSet, now_ms: i64, out: &mut Deliveries) {
        let of_collection = self.by_collection.get(&change.collection);
        let of_doc = if self.by_doc.is_empty() {
            None
        } else {
            self.by_doc
                .get(&(change.collection.clone(), change.doc_id.clone()))
        };
        if of_collection.is_none() && of_doc.is_none() {
            return;
        }
        let rendered = Rendered::new(change);
        for sub in of_collection
            .into_iter()
            .chain(of_doc)
            .flat_map(|set| set.values())
        {
            let auth = sub.socket.auth();
            if let Some((op, doc)) =
                event_for(sub, change, &rendered, rules, auth.as_deref(), now_ms)
            {
                let text = rendered.message(sub, change.seq, op, doc);
                deliver(sub, change.seq, text, out);
            }
            if let Some(text) = sub.spent_notice() {
                deliver(sub, change.seq, text, out);
            }
        }
    }
}

/// Buffers one event for a replaying subscription, or adds it to the live deliveries.
fn deliver(sub: &Sub, seq: i64, text: String, out: &mut Deliveries) {
    let mut mode = sub.mode.lock().unwrap_or_else(|p| p.into_inner());
    match &mut *mode {
        Mode::Replaying { buffer, overflowed } => {
            if buffer.len() >= MAX_REPLAY_BUFFER {
                *overflowed = true;
            } else {
                buffer.push((seq, text));
            }
        }
        Mode::Live { from } => {
            if seq > *from {
                out.push(&sub.socket, text);
            }
        }
    }
}

/// Sockets written to between two yields of a fan-out (a direct write is a few µs).
/// `PLINTH_FANOUT_SLICE=0` sends a read's events without yielding, as before: a switch
/// for A/B runs of benches/realtime-bench.sh from one build, not a setting.
static SEND_SLICE: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("PLINTH_FANOUT_SLICE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
});

/// Whether fan-outs yield to other tasks (see [`SEND_SLICE`]).
pub(crate) fn fanout_yields() -> bool {
    *SEND_SLICE > 0
}

/// The live events of one read of the change log, by socket, in seq order. Sent after
/// the feed is unlocked (the sends are most of a fan-out's time; subscribing and
/// unsubscribing need the lock), each socket's events in one write when it is idle, so a
/// burst of changes costs one send per socket, not one per event.
#[derive(Default)]
pub(crate) struct Deliveries {
    sockets: Vec<(Arc<Outbox>, Vec<String>)>,
    /// Socket id → index in `sockets`.
    index: HashMap<u64, usize>,
}

impl Deliveries {
    fn push(&mut self, socket: &Arc<Outbox>, text: String) {
        let i = *self.index.entry(socket.id).or_insert_with(|| {
            self.sockets.push((socket.clone(), Vec::new()));
            self.sockets.len() - 1
        });
        self.sockets[i].1.push(text);
    }

    /// Writes (or queues) every socket's events, `SEND_SLICE` sockets at a time with a
    /// yield between slices, so requests that arrive during a fan-out to thousands of
    /// sockets (the write that caused it, first) are answered between slices rather than
    /// after the whole fan-out. Never waits for a socket.
    pub async fn send(self) {
        let slice = *SEND_SLICE;
        for (i, (socket, texts)) in self.sockets.into_iter().enumerate() {
            if slice > 0 && i > 0 && i % slice == 0 {
                tokio::task::yield_now().await;
            }
            socket.send_events(texts);
        }
    }
}

/// Which side of a change a subscriber sees.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Before,
    After,
}

/// The event a subscriber gets for a change, if any: the op and which version to show.
pub(crate) fn event_for(
    sub: &Sub,
    change: &Change,
    versions: &Rendered,
    rules: &RuleSet,
    auth: Option<&SocketAuth>,
    now_ms: i64,
) -> Option<(&'static str, Side)> {
    // Live dispatch and the `since` replay read only the subscription's collection; the
    // check stays so that a change of another collection can never reach it.
    let other_doc = sub.doc.as_deref().is_some_and(|d| d != change.doc_id);
    if sub.collection != change.collection || other_doc || sub.is_spent() {
        return None;
    }
    let sees = |side: Side| {
        versions
            .version(side)
            .is_some_and(|v| visible(sub, &v.doc, rules, auth, now_ms))
    };
    match change.op {
        ChangeOp::Create => sees(Side::After).then_some(("create", Side::After)),
        ChangeOp::Update => {
            if sees(Side::After) {
                Some(("update", Side::After))
            } else if sees(Side::Before) {
                Some(("remove", Side::Before))
            } else {
                None
            }
        }
        ChangeOp::Delete => sees(Side::Before).then_some(("delete", Side::Before)),
    }
}

/// Whether a subscriber may read this version of a document and it matches the filter.
pub(crate) fn visible(
    sub: &Sub,
    doc: &StoredDoc,
    rules: &RuleSet,
    auth: Option<&SocketAuth>,
    now_ms: i64,
) -> bool {
    let bypass = auth.is_some_and(|a| a.bypasses_rules());
    let info: Option<&AuthInfo> = auth.and_then(|a| a.info.as_ref());
    let meta = DocMeta {
        version: doc.version,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
    };
    let bindings = Bindings {
        auth: info,
        id: &doc.id,
        doc: Some(&doc.data),
        new: None,
        meta: Some(&meta),
        now_ms,
    };
    if !bypass {
        match rules.rule(&sub.collection, Operation::Read) {
            // The same decision (and budget) as a read of the document over REST.
            Some(rule) if rule.evaluate(&bindings) => {}
            _ => return false,
        }
    }
    match sub.filter.as_ref() {
        None => true,
        Some(f) => match f.evaluate_within(&bindings, EVENT_BUDGET) {
            Verdict::True => true,
            Verdict::NotTrue => false,
            Verdict::TooCostly => {
                sub.mark_spent();
                false
            }
        },
    }
}

/// A change's two versions, built and rendered once, shared by every subscriber: rebuilt
/// per subscriber, the document copies alone were a visible share of a large fan-out.
pub(crate) struct Rendered {
    before: Option<Version>,
    after: Option<Version>,
}

pub(crate) struct Version {
    doc: StoredDoc,
    text: String,
}

impl Version {
    fn of(doc: StoredDoc) -> Version {
        Version {
            text: render_doc(&doc),
            doc,
        }
    }
}

fn render_doc(doc: &StoredDoc) -> String {
    DocJson::of(doc).to_json()
}

impl Rendered {
    pub fn new(change: &Change) -> Rendered {
        Rendered {
            before: change.doc_before().map(Version::of),
            after: change.doc_after().map(Version::of),
        }
    }

    fn version(&self, side: Side) -> Option<&Version> {
        match side {
            Side::Before => self.before.as_ref(),
            Side::After => self.after.as_ref(),
        }
    }

    /// `{"type":"change","id":…,"seq":…,"op":…,"doc":…}` for one subscriber.
    pub fn message(&self, sub: &Sub, seq: i64, op: &str, side: Side) -> String {
        use std::fmt::Write;
        let doc = self.version(side).map_or("null", |v| v.text.as_str());
        let mut text = String::with_capacity(sub.head.len() + doc.len() + 48);
        text.push_str(&sub.head);
        let _ = write!(text, "{seq},\"op\":\"{op}\",\"doc\":");
        text.push_str(doc);
        text.push('}');
        text
    }
}
