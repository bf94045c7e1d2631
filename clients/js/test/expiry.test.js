// Access tokens that live 2 seconds: proactive refresh, retry on 401 token_expired, and
// the live token swap on the realtime socket.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { createClient } from "../src/index.js";
import { TestServer, recordingFetch, spyWebSocket, waitFor, email, PASSWORD } from "../test-support/helpers.js";

const RULES = `
[notes]
read   = "auth != null && doc.owner == auth.uid"
create = "auth != null && new.owner == auth.uid"
indexes = [["owner"]]
`;

let server;
let tenant;
const clients = [];

before(async () => {
  server = await TestServer.start({ args: ["--access-ttl-secs", "2"] });
  tenant = await server.tenant("expiring", RULES);
});

after(async () => {
  for (const c of clients) c.close();
  await server?.close();
});

function client(opts = {}) {
  const c = createClient({ url: server.url, tenant, ...opts });
  clients.push(c);
  return c;
}

/** Waits until the server itself refuses `token` as expired (2 s lifetime + its leeway). */
async function untilServerRejects(token) {
  await waitFor(
    async () => {
      const res = await fetch(`${server.url}/v1/t/${tenant}/auth/me`, { headers: { authorization: `Bearer ${token}` } });
      return res.status === 401 && (await res.json()).code === "token_expired";
    },
    { timeout: 20_000, interval: 250, message: "the server to refuse the token as expired" },
  );
}

test("a token about to expire is refreshed before the request (no 401 round trip)", async () => {
  const f = recordingFetch();
  const c = client({ fetch: f });
  const events = [];
  c.auth.onAuthChange((_s, e) => events.push(e));
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  assert.ok(s.expiresAt - Date.now() <= 2000);
  await waitFor(() => Date.now() >= s.expiresAt, { timeout: 5000, message: "the token's expiry" });
  f.calls.length = 0;
  const me = await c.auth.me();
  assert.equal(me.id, s.user.id);
  assert.deepEqual(f.calls, [`POST /v1/t/${tenant}/auth/refresh 200`, `GET /v1/t/${tenant}/auth/me 200`]);
  assert.notEqual(c.auth.session.accessToken, s.accessToken);
  assert.ok(events.includes("TOKEN_REFRESHED"));
});

test("a request refused with 401 token_expired is retried once after a refresh", async () => {
  const f = recordingFetch();
  const c = client({ fetch: f, autoRefresh: false });
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  await untilServerRejects(s.accessToken);
  f.calls.length = 0;
  const [a, b, d] = await Promise.all([c.auth.me(), c.auth.me(), c.collection("notes").list()]);
  assert.equal(a.id, s.user.id);
  assert.equal(b.id, s.user.id);
  assert.deepEqual(d.items, []);
  const refreshes = f.calls.filter((l) => l.includes("/auth/refresh"));
  assert.deepEqual(refreshes, [`POST /v1/t/${tenant}/auth/refresh 200`], "one shared refresh");
  assert.equal(f.calls.filter((l) => l.endsWith(" 401")).length, 3);
  assert.equal(f.calls.filter((l) => l.endsWith(" 200")).length, 4);
});

test("the socket gets each refreshed token in place: the subscription lives on", async () => {
  const spy = spyWebSocket();
  const c = client({ WebSocket: spy.WebSocket });
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  const changes = [];
  const errors = [];
  c.collection("notes").subscribe({ change: (e) => changes.push(e), error: (e) => errors.push(e) });
  // Three tokens on the socket: the first and two swaps.
  await waitFor(() => spy.receivedOf("authenticated").length >= 3, { timeout: 15_000, message: "two token swaps" });
  await untilServerRejects(s.accessToken); // long past the first token's expiry
  const doc = await c.collection("notes").create({ owner: s.user.id, n: 1 });
  await waitFor(() => changes.some((e) => e.doc.id === doc.id), { message: "the change" });
  assert.deepEqual(errors, []);
  assert.equal(spy.instances.length, 1, "same socket");
  assert.equal(spy.sentOf("subscribe").length, 1, "never resubscribed");
  assert.equal(spy.received.filter((m) => m.type === "error").length, 0);
  const tokens = spy.sentOf("auth").map((m) => m.token);
  assert.equal(new Set(tokens).size, tokens.length, "each swap sends a new token");
});

test("without the swap, a subscription ended by expiry is resumed after a refresh", async () => {
  const spy = spyWebSocket();
  const c = client({ WebSocket: spy.WebSocket, autoRefresh: false });
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  const writer = client();
  await writer.auth.signIn({ email: s.user.email, password: PASSWORD });
  const changes = [];
  const errors = [];
  c.collection("notes").subscribe({ change: (e) => changes.push(e), error: (e) => errors.push(e) });
  await waitFor(() => spy.receivedOf("subscribed").length === 1, { message: "subscribed" });
  // The server ends the subscription when the token expires; the client refreshes and
  // subscribes again from the last seq it saw.
  await waitFor(() => spy.receivedOf("error").some((m) => m.error.code === "token_expired"), {
    timeout: 15_000,
    message: "token_expired on the socket",
  });
  const doc = await writer.collection("notes").create({ owner: s.user.id, n: 2 });
  await waitFor(() => changes.some((e) => e.doc.id === doc.id), { message: "the change after expiry" });
  assert.deepEqual(errors, []);
  const subs = spy.sentOf("subscribe");
  assert.equal(subs.length, 2);
  assert.ok(Number.isInteger(subs[1].since), "resumed with since");
  assert.equal(new Set(changes.map((e) => e.seq)).size, changes.length);
});
