import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { createClient, PlinthError, memoryStorage, localStorageAdapter } from "../src/index.js";
import { TestServer, recordingFetch, waitFor, email, PASSWORD } from "../test-support/helpers.js";

const RULES = `
[notes]
read   = "auth != null && doc.owner == auth.uid"
create = "auth != null && new.owner == auth.uid"
update = "auth != null && doc.owner == auth.uid && new.owner == doc.owner"
delete = "auth != null && doc.owner == auth.uid"
indexes = [["owner"]]
`;

let server;
let tenant;

before(async () => {
  server = await TestServer.start();
  tenant = await server.tenant("authapp", RULES);
});

after(async () => {
  await server?.close();
});

function client(opts = {}) {
  return createClient({ url: server.url, tenant, ...opts });
}

async function rawRefresh(refreshToken) {
  const res = await fetch(`${server.url}/v1/t/${tenant}/auth/refresh`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  return { status: res.status, body: await res.json() };
}

test("signUp, me, signOut, signIn and onAuthChange", async () => {
  const c = client();
  const events = [];
  c.auth.onAuthChange((session, event) => events.push([event, session?.user?.email ?? null]));
  const addr = email("alice");
  const session = await c.auth.signUp({ email: addr, password: PASSWORD });
  assert.equal(session.user.email, addr);
  assert.match(session.accessToken, /^ey/);
  assert.ok(session.refreshToken);
  assert.ok(session.expiresAt > Date.now());
  assert.equal(c.auth.user.email, addr);

  const me = await c.auth.me();
  assert.equal(me.id, session.user.id);

  await c.auth.signOut();
  assert.equal(c.auth.session, null);
  await assert.rejects(c.auth.me(), (e) => e instanceof PlinthError && e.status === 401 && e.code === "auth_required");
  // signOut ended the session on the server too.
  const reuse = await rawRefresh(session.refreshToken);
  assert.equal(reuse.status, 401);

  const again = await c.auth.signIn({ email: addr.toUpperCase(), password: PASSWORD });
  assert.equal(again.user.id, session.user.id);
  assert.deepEqual(events.map((e) => e[0]), ["INITIAL_SESSION", "SIGNED_IN", "SIGNED_OUT", "SIGNED_IN"]);

  // Signing in again replaces the session and ends the old one on the server.
  const third = await c.auth.signIn({ email: addr, password: PASSWORD });
  assert.notEqual(third.refreshToken, again.refreshToken);
  await waitFor(
    async () => {
      const res = await fetch(`${server.url}/v1/t/${tenant}/auth/me`, { headers: { authorization: `Bearer ${again.accessToken}` } });
      return res.status === 401 && (await res.json()).code === "session_revoked";
    },
    { message: "the replaced session to end" },
  );
  await c.auth.me();
  assert.equal(events[0][1], null);
});

test("problem+json answers become PlinthErrors with status, code, detail, fields", async () => {
  const c = client();
  await assert.rejects(c.auth.signUp({ email: email(), password: "short" }), (e) => {
    assert.ok(e instanceof PlinthError);
    assert.ok(e instanceof Error);
    assert.equal(e.status, 400);
    assert.equal(e.code, "validation_failed");
    assert.equal(typeof e.fields.password, "string");
    assert.match(e.detail, /password/);
    assert.equal(e.message, e.detail);
    assert.equal(typeof e.requestId, "string");
    assert.equal(e.isNetworkError, false);
    return true;
  });
  const addr = email();
  await c.auth.signUp({ email: addr, password: PASSWORD });
  await assert.rejects(client().auth.signUp({ email: addr, password: PASSWORD }), (e) => {
    assert.equal(e.status, 409);
    assert.equal(e.code, "email_taken");
    assert.ok(e.fields.email);
    return true;
  });
  await assert.rejects(client().auth.signIn({ email: addr, password: "wrong-password" }), {
    status: 401,
    code: "invalid_credentials",
  });
  await assert.rejects(createClient({ url: server.url, tenant: "nosuchtenant" }).auth.signIn({ email: addr, password: PASSWORD }), {
    status: 404,
    code: "tenant_not_found",
  });
});

test("network errors are distinguishable", async () => {
  const c = createClient({ url: "http://127.0.0.1:9", tenant });
  await assert.rejects(c.auth.signIn({ email: email(), password: PASSWORD }), (e) => {
    assert.ok(e instanceof PlinthError);
    assert.equal(e.code, "network_error");
    assert.equal(e.status, 0);
    assert.equal(e.isNetworkError, true);
    assert.ok(e.cause);
    return true;
  });
});

test("refresh rotates the refresh token and stores the new one every time", async () => {
  const storage = memoryStorage();
  const c = client({ storage });
  const s1 = await c.auth.signUp({ email: email(), password: PASSWORD });
  const s2 = await c.auth.refresh();
  const s3 = await c.auth.refresh();
  assert.notEqual(s2.refreshToken, s1.refreshToken);
  assert.notEqual(s3.refreshToken, s2.refreshToken);
  // (The access token may repeat: within one second its claims are the same.)
  const stored = JSON.parse(storage.get(`plinth:${server.url}:${tenant}:session`));
  assert.equal(stored.refreshToken, s3.refreshToken);
  assert.equal(stored.accessToken, s3.accessToken);
  assert.equal((await c.auth.me()).id, s1.user.id);
});

test("concurrent refreshes share one request and do not revoke the session", async () => {
  const f = recordingFetch();
  const c = client({ fetch: f });
  await c.auth.signUp({ email: email(), password: PASSWORD });
  const results = await Promise.all([c.auth.refresh(), c.auth.refresh(), c.auth.refresh()]);
  assert.equal(new Set(results.map((s) => s.refreshToken)).size, 1);
  assert.equal(f.calls.filter((l) => l.includes("/auth/refresh")).length, 1);
  // The session is alive: the next refresh and a request both work.
  await c.auth.refresh();
  await c.auth.me();
  assert.deepEqual(
    f.calls.filter((l) => l.includes("/auth/refresh")),
    [`POST /v1/t/${tenant}/auth/refresh 200`, `POST /v1/t/${tenant}/auth/refresh 200`],
  );
});

test("a reused refresh token ends the session: the client signs out", async () => {
  const c = client();
  const events = [];
  c.auth.onAuthChange((_s, e) => events.push(e));
  const s1 = await c.auth.signUp({ email: email(), password: PASSWORD });
  await c.auth.refresh();
  // Someone presents the spent token: the server revokes the whole session.
  const stolen = await rawRefresh(s1.refreshToken);
  assert.equal(stolen.status, 401);
  assert.equal(stolen.body.code, "refresh_token_reused");
  await assert.rejects(c.auth.me(), { status: 401, code: "session_revoked" });
  assert.equal(c.auth.session, null);
  assert.equal(events.at(-1), "SIGNED_OUT");
});

test("a failed refresh of an ended session signs out", async () => {
  const c = client();
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  await rawRefresh(s.refreshToken); // rotated behind the client's back
  await assert.rejects(c.auth.refresh(), { status: 401, code: "refresh_token_reused" });
  assert.equal(c.auth.session, null);

  const d = client();
  const t = await d.auth.signUp({ email: email(), password: PASSWORD });
  await fetch(`${server.url}/v1/t/${tenant}/auth/logout`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: t.refreshToken }),
  });
  await assert.rejects(d.auth.refresh(), { status: 401, code: "invalid_refresh_token" });
  assert.equal(d.auth.session, null);
});

test("sessions persist in (async) storage; another client on the same storage adopts rotated tokens", async () => {
  const map = new Map();
  const storage = {
    get: async (k) => map.get(k) ?? null,
    set: async (k, v) => void map.set(k, v),
    remove: async (k) => void map.delete(k),
  };
  const f = recordingFetch();
  const tab1 = client({ storage, fetch: f });
  const s = await tab1.auth.signUp({ email: email(), password: PASSWORD });

  const tab2 = client({ storage });
  const restored = await tab2.auth.getSession();
  assert.equal(restored.user.id, s.user.id);
  assert.equal((await tab2.auth.me()).id, s.user.id);
  const rotated = await tab2.auth.refresh(); // tab1's refresh token is now spent

  // tab1 finds the newer session in storage instead of presenting its spent token.
  const adopted = await tab1.auth.refresh();
  assert.equal(adopted.refreshToken, rotated.refreshToken);
  assert.equal(f.calls.filter((l) => l.includes("/auth/refresh")).length, 0);
  assert.equal((await tab1.auth.me()).id, s.user.id);
  assert.equal((await tab2.auth.me()).id, s.user.id);

  await tab1.auth.signOut();
  assert.equal(map.size, 0);
});

test("tabs sharing storage refresh one at a time under a Web Lock", async (t) => {
  // A minimal navigator.locks (browsers have it; Node 20 does not): one holder per name.
  const queues = new Map();
  const fakeLocks = {
    request(name, fn) {
      const prev = queues.get(name) ?? Promise.resolve();
      const run = prev.then(() => fn());
      queues.set(name, run.catch(() => {}));
      return run;
    },
  };
  const had = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  Object.defineProperty(globalThis, "navigator", { value: { locks: fakeLocks }, configurable: true, writable: true });
  t.after(() => {
    if (had) Object.defineProperty(globalThis, "navigator", had);
    else delete globalThis.navigator;
  });
  const storage = memoryStorage();
  const f = recordingFetch();
  const tab1 = client({ storage, fetch: f });
  const s = await tab1.auth.signUp({ email: email(), password: PASSWORD });
  const tab2 = client({ storage, fetch: f });
  await tab2.auth.getSession();
  // Both tabs hold the same refresh token and refresh at once.
  const [a, b] = await Promise.all([tab1.auth.refresh(), tab2.auth.refresh()]);
  assert.equal(a.refreshToken, b.refreshToken);
  assert.equal(f.calls.filter((l) => l.includes("/auth/refresh")).length, 1);
  assert.equal((await tab1.auth.me()).id, s.user.id);
  assert.equal((await tab2.auth.me()).id, s.user.id);
});

test("localStorageAdapter keeps the session in a Web Storage object", async () => {
  const items = new Map();
  const fakeLocalStorage = {
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => items.set(k, String(v)),
    removeItem: (k) => items.delete(k),
  };
  const c = client({ storage: localStorageAdapter(fakeLocalStorage), storageKey: "my-app-session" });
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  assert.equal(JSON.parse(items.get("my-app-session")).refreshToken, s.refreshToken);
  const reloaded = client({ storage: localStorageAdapter(fakeLocalStorage), storageKey: "my-app-session" });
  assert.equal((await reloaded.auth.getSession()).user.id, s.user.id);
  await reloaded.auth.signOut();
  assert.equal(items.has("my-app-session"), false);
  assert.throws(() => localStorageAdapter(undefined), TypeError);
});

test("changePassword ends the user's other sessions", async () => {
  const addr = email();
  const a = client();
  await a.auth.signUp({ email: addr, password: PASSWORD });
  const b = client();
  await b.auth.signIn({ email: addr, password: PASSWORD });
  const r = await a.auth.changePassword({ currentPassword: PASSWORD, newPassword: "new-password-22" });
  assert.equal(r.revoked_sessions, 1);
  await assert.rejects(b.auth.me(), { code: "session_revoked" });
  assert.equal(b.auth.session, null);
  await a.auth.me();
  await assert.rejects(a.auth.changePassword({ currentPassword: "nope-nope-nope", newPassword: "x-password-3" }), {
    code: "invalid_credentials",
  });
  await client().auth.signIn({ email: addr, password: "new-password-22" });
});

test("a service key authenticates data calls; auth calls still need a user", async () => {
  const key = await server.serviceKey(tenant);
  const svc = client({ serviceKey: key });
  // The service key bypasses the rules: it may write a note for any owner.
  const doc = await svc.collection("notes").create({ owner: "someone-else", title: "by the service" });
  assert.equal(doc.version, 1);
  await assert.rejects(svc.auth.me(), { status: 401, code: "auth_required" });
  const bad = client({ serviceKey: "plk_0000000000_nope" });
  await assert.rejects(bad.collection("notes").get(doc.id), { status: 401, code: "invalid_token" });
});
