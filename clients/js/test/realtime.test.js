import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { createClient, PlinthError } from "../src/index.js";
import { TestServer, spyWebSocket, waitFor, email, PASSWORD } from "../test-support/helpers.js";

const RULES = `
[notes]
read   = "auth != null && doc.owner == auth.uid"
create = "auth != null && new.owner == auth.uid"
update = "auth != null && doc.owner == auth.uid && new.owner == doc.owner"
delete = "auth != null && doc.owner == auth.uid"
indexes = [["owner"]]

[events]
read = "true"
`;

let server;
let tenant;
let svc; // writes with a service key
const clients = [];

before(async () => {
  server = await TestServer.start();
  tenant = await server.tenant("rtapp", RULES);
  svc = createClient({ url: server.url, tenant, serviceKey: await server.serviceKey(tenant) });
});

after(async () => {
  for (const c of clients) c.close();
  await server?.close();
});

/** A client with a spy on its WebSocket and quick reconnects. */
function client(opts = {}) {
  const spy = spyWebSocket();
  const c = createClient({
    url: server.url,
    tenant,
    WebSocket: spy.WebSocket,
    realtime: { minReconnectDelay: 50, maxReconnectDelay: 400, ...(opts.realtime || {}) },
    ...opts,
  });
  clients.push(c);
  return { c, spy };
}

async function user() {
  const { c, spy } = client();
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  return { c, spy, uid: s.user.id };
}

/** Collects a subscription's events. */
function collector() {
  const events = { changes: [], snapshots: [], errors: [], resyncs: [], subscribed: [] };
  events.handlers = {
    change: (e) => events.changes.push(e),
    snapshot: (e) => events.snapshots.push(e),
    error: (e) => events.errors.push(e),
    resync: (e) => events.resyncs.push(e),
    subscribed: (e) => events.subscribed.push(e),
  };
  return events;
}

function assertIncreasing(seqs) {
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `seqs not increasing: ${seqs}`);
}

test("change events: create, update, remove (left the filter), delete; one socket for all", async () => {
  const { c, spy, uid } = await user();
  const ev = collector();
  const unsubscribe = c.collection("notes").subscribe({ filter: "doc.done == false" }, ev.handlers);
  const all = collector();
  c.subscribe({ collection: "notes" }, all.handlers);
  await waitFor(() => ev.subscribed.length === 1 && all.subscribed.length === 1, { message: "subscribed" });
  assert.equal(c.realtime.state, "open");

  const notes = c.collection("notes");
  const d = await notes.create({ owner: uid, title: "t", done: false });
  await notes.patch(d.id, { title: "t2" });
  await notes.patch(d.id, { done: true }); // leaves the filtered view
  await notes.patch(d.id, { done: false }); // enters it again
  await notes.delete(d.id);
  await waitFor(() => ev.changes.length === 5 && all.changes.length === 5, { message: "5 changes" });
  assert.deepEqual(ev.changes.map((e) => e.op), ["create", "update", "remove", "update", "delete"]);
  assert.deepEqual(all.changes.map((e) => e.op), ["create", "update", "update", "update", "delete"]);
  assert.equal(ev.changes[2].doc.data.title, "t2"); // remove carries the last version it could see
  assertIncreasing(ev.changes.map((e) => e.seq));
  assert.deepEqual(ev.changes.map((e) => e.seq), all.changes.map((e) => e.seq));
  assert.equal(spy.instances.length, 1, "one multiplexed socket");
  assert.equal(spy.sentOf("auth").length, 1);
  assert.deepEqual(ev.errors, []);

  unsubscribe();
  assert.ok(spy.sentOf("unsubscribe").length === 1);
  const before = all.changes.length;
  await notes.create({ owner: uid, title: "after", done: false });
  await waitFor(() => all.changes.length === before + 1, { message: "change after unsubscribe" });
  assert.equal(ev.changes.length, 5);
});

test("snapshot first, then changes; a doc subscription sees only its document", async () => {
  const { c, uid } = await user();
  const notes = c.collection("notes");
  await notes.put("n1", { owner: uid, title: "one" });
  await notes.put("n2", { owner: uid, title: "two" });
  const ev = collector();
  c.subscribe({ collection: "notes", snapshot: true }, ev.handlers);
  const one = collector();
  c.subscribe({ collection: "notes", doc: "n1" }, one.handlers);
  await waitFor(() => ev.snapshots.length === 1 && one.subscribed.length === 1, { message: "snapshot" });
  assert.deepEqual(ev.snapshots[0].docs.map((d) => d.id), ["n1", "n2"]);
  assert.equal(ev.snapshots[0].truncated, false);
  await notes.patch("n2", { title: "two!" });
  await notes.patch("n1", { title: "one!" });
  await waitFor(() => ev.changes.length === 2 && one.changes.length === 1, { message: "changes" });
  assert.ok(ev.changes[0].seq > ev.snapshots[0].seq);
  assert.equal(one.changes[0].doc.id, "n1");
  assert.equal(one.changes[0].doc.data.title, "one!");
});

test("a seq saved by one client resumes a subscription in another", async () => {
  const seqs = [];
  for (let i = 0; i < 4; i++) seqs.push((await svc.batch([{ op: "create", collection: "events", data: { saved: i } }]))[0].seq);
  const { c } = client();
  const ev = collector();
  c.subscribe({ collection: "events", since: seqs[1] }, ev.handlers);
  await waitFor(() => ev.changes.length >= 2, { message: "replayed changes" });
  const replayed = ev.changes.filter((e) => e.doc.data.saved !== undefined);
  assert.deepEqual(replayed.map((e) => e.seq), seqs.slice(2));
  assert.deepEqual(ev.snapshots, []);
});

test("subscription errors end that subscription only", async () => {
  const { c } = await user();
  const denied = collector();
  c.subscribe({ collection: "secret_stuff" }, denied.handlers);
  const bad = collector();
  c.subscribe({ collection: "notes", filter: "doc.title ==" }, bad.handlers);
  const ok = collector();
  c.subscribe({ collection: "notes" }, ok.handlers);
  const ahead = collector();
  c.subscribe({ collection: "notes", since: 1_000_000_000 }, ahead.handlers);
  await waitFor(() => denied.errors.length && bad.errors.length && ahead.errors.length && ok.subscribed.length, {
    message: "answers",
  });
  assert.ok(denied.errors[0] instanceof PlinthError);
  assert.equal(denied.errors[0].code, "rule_denied");
  assert.equal(bad.errors[0].code, "invalid_filter");
  assert.equal(ahead.errors[0].code, "invalid_since");
  assert.equal(c.realtime.state, "open");
});

test("the socket opens lazily and closes after the last unsubscribe", async () => {
  const { c, spy } = client();
  const states = [];
  c.realtime.onStateChange((s) => states.push(s));
  assert.equal(spy.instances.length, 0);
  const ev = collector();
  const stop = c.subscribe({ collection: "events" }, ev.handlers); // anonymous, allowed
  await waitFor(() => ev.subscribed.length === 1, { message: "subscribed" });
  assert.equal(spy.sentOf("auth").length, 0);
  stop();
  assert.equal(c.realtime.state, "closed");
  assert.deepEqual(states, ["connecting", "open", "closed"]);
  const stop2 = c.subscribe({ collection: "events" }, ev.handlers);
  await waitFor(() => ev.subscribed.length === 2, { message: "subscribed again" });
  assert.equal(spy.instances.length, 2);
  stop2();
});

test("resume after the socket is killed: nothing lost, nothing repeated", async () => {
  const { c, spy } = client();
  const ev = collector();
  c.subscribe({ collection: "events" }, ev.handlers);
  await waitFor(() => ev.subscribed.length === 1, { message: "subscribed" });

  const written = [];
  const write = async (n) => {
    for (let i = 0; i < n; i++) {
      const [r] = await svc.batch([{ op: "create", collection: "events", data: { i: written.length } }]);
      written.push(r.seq);
    }
  };
  await write(5);
  await waitFor(() => ev.changes.length === 5, { message: "first changes" });

  // Kill the connection and keep the client from reconnecting while 10 writes happen.
  spy.refuse = true;
  spy.last().close(3000, "killed by the test");
  await waitFor(() => c.realtime.state === "reconnecting", { message: "reconnecting" });
  await write(10);
  assert.equal(ev.changes.length, 5);
  // The writes may outrun the first retry (50 ms at most): see one refused first.
  await waitFor(() => spy.refused > 0, { message: "a reconnect refused" });
  // Let it back in while more writes go on, across the resume seam.
  spy.refuse = false;
  await Promise.all([write(30), waitFor(() => c.realtime.state === "open", { message: "reconnected" })]);
  await waitFor(() => ev.changes.length >= written.length, { message: "every change", timeout: 15_000 });

  assert.deepEqual(ev.changes.map((e) => e.seq), written, "every write delivered once, in order");
  const resubscribe = spy.last().sentHere.find((m) => m.type === "subscribe");
  assert.equal(resubscribe.since, written[4], "resumed after the last seq delivered");
  assert.ok(spy.refused > 0, "reconnects were refused while killed");
  assert.deepEqual(ev.errors, []);
});

test("resume after a server restart, with re-authentication", async () => {
  const { c, spy, uid } = await user();
  const states = [];
  c.realtime.onStateChange((s) => states.push(s));
  const ev = collector();
  c.collection("notes").subscribe(ev.handlers);
  await waitFor(() => ev.subscribed.length === 1, { message: "subscribed" });
  const notes = c.collection("notes");
  for (let i = 0; i < 3; i++) await notes.create({ owner: uid, i });
  await waitFor(() => ev.changes.length === 3, { message: "3 changes" });

  await server.restart();
  // Written at once, most likely before the client is back: replayed from the log.
  for (let i = 3; i < 6; i++) await notes.create({ owner: uid, i });
  await waitFor(() => ev.changes.length >= 6, { message: "6 changes", timeout: 15_000 }).catch((e) => {
    throw new Error(`${e.message}; states ${states}; server log:\n${server.stderr.slice(-2000)}`);
  });
  assert.deepEqual(ev.changes.map((e) => e.doc.data.i), [0, 1, 2, 3, 4, 5]);
  assertIncreasing(ev.changes.map((e) => e.seq));
  const last = spy.last();
  assert.ok(spy.instances.length >= 2);
  assert.equal(last.sentHere[0].type, "auth", "re-authenticated first");
  const resub = last.sentHere.find((m) => m.type === "subscribe");
  assert.equal(resub.since, ev.changes[2].seq);
  assert.ok(states.includes("reconnecting"));
  assert.equal(c.realtime.state, "open");
  assert.deepEqual(ev.errors, []);
});

test("client pings; a connection that stops answering is replaced", async () => {
  const { c, spy } = client({ realtime: { pingInterval: 100, pongTimeout: 300 } });
  const ev = collector();
  c.subscribe({ collection: "events" }, ev.handlers);
  await waitFor(() => spy.receivedOf("pong").length >= 2, { message: "pongs" });
  spy.dropPongs = true; // from now on the connection looks dead
  await waitFor(() => spy.instances.length >= 2, { message: "a new socket" });
  spy.dropPongs = false;
  await waitFor(() => c.realtime.state === "open" && ev.subscribed.length >= 2, { message: "resubscribed" });
  const [r] = await svc.batch([{ op: "create", collection: "events", data: { ping: true } }]);
  await waitFor(() => ev.changes.some((e) => e.seq === r.seq), { message: "change on the new socket" });
  assert.equal(new Set(ev.changes.map((e) => e.seq)).size, ev.changes.length, "no duplicates");
});

test("signing in swaps the token on the open socket; signing out reconnects anonymously", async () => {
  const { c, spy } = client();
  const pub = collector();
  c.subscribe({ collection: "events" }, pub.handlers);
  await waitFor(() => pub.subscribed.length === 1, { message: "anonymous subscription" });
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  await waitFor(() => spy.receivedOf("authenticated").some((m) => m.uid === s.user.id), { message: "authenticated" });
  assert.equal(spy.instances.length, 1, "same socket");
  const mine = collector();
  c.collection("notes").subscribe(mine.handlers);
  await waitFor(() => mine.subscribed.length === 1, { message: "private subscription" });

  await c.auth.signOut();
  await waitFor(() => spy.instances.length === 2 && c.realtime.state === "open", { message: "anonymous socket" });
  await waitFor(() => mine.errors.length === 1, { message: "private subscription refused" });
  assert.equal(mine.errors[0].code, "rule_denied");
  assert.equal(spy.instances[1].sentHere.some((m) => m.type === "auth"), false);
});
