import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { createClient, PlinthError } from "../src/index.js";
import { TestServer, recordingFetch, email, PASSWORD } from "../test-support/helpers.js";

const RULES = `
[notes]
read   = "auth != null && doc.owner == auth.uid"
create = "auth != null && new.owner == auth.uid"
update = "auth != null && doc.owner == auth.uid && new.owner == doc.owner"
delete = "auth != null && doc.owner == auth.uid"
indexes = [["owner"]]

[items]
read   = "auth != null && doc.owner == auth.uid"
create = "auth != null && new.owner == auth.uid"
update = "auth != null && doc.owner == auth.uid"
delete = "auth != null && doc.owner == auth.uid"
indexes = [["owner"]]
`;

let server;
let tenant;
let alice;
let uid;
let svc; // a service-key client: bypasses rules, so a missing document is a 404 for it

before(async () => {
  server = await TestServer.start();
  tenant = await server.tenant("docsapp", RULES);
  alice = createClient({ url: server.url, tenant });
  uid = (await alice.auth.signUp({ email: email("alice"), password: PASSWORD })).user.id;
  svc = createClient({ url: server.url, tenant, serviceKey: await server.serviceKey(tenant) });
});

after(async () => {
  await server?.close();
});

test("create, get, put, patch (merge, JSON Patch, increment), delete", async () => {
  const notes = alice.collection("notes");
  const created = await notes.create({ owner: uid, title: "Groceries", tags: ["home"] });
  assert.match(created.id, /^[0-9a-f-]{36}$/);
  assert.equal(created.collection, "notes");
  assert.equal(created.version, 1);
  assert.deepEqual(created.data, { owner: uid, title: "Groceries", tags: ["home"] });
  assert.deepEqual(await notes.get(created.id), created);

  const put1 = await notes.put("fixed-id", { owner: uid, title: "first" });
  assert.equal(put1.version, 1);
  const put2 = await notes.put("fixed-id", { owner: uid, title: "second" });
  assert.equal(put2.version, 2);
  assert.equal(put2.data.title, "second");

  const merged = await notes.patch("fixed-id", { title: "merged", done: false, extra: { a: 1 } });
  assert.deepEqual(merged.data, { owner: uid, title: "merged", done: false, extra: { a: 1 } });
  const removed = await notes.patch("fixed-id", { extra: null });
  assert.equal("extra" in removed.data, false);

  const patched = await notes.patch("fixed-id", [
    { op: "replace", path: "/title", value: "json-patched" },
    { op: "increment", path: "/counts/views", value: 2 },
  ]);
  assert.equal(patched.data.title, "json-patched");
  assert.deepEqual(patched.data.counts, { views: 2 });
  const inc = await notes.patch("fixed-id", [{ op: "increment", path: "/counts/views", value: 3 }]);
  assert.equal(inc.data.counts.views, 5);
  assert.equal(inc.version, 6);

  // A JSON Patch whose test fails applies nothing.
  await assert.rejects(
    notes.patch("fixed-id", [
      { op: "increment", path: "/counts/views", value: 100 },
      { op: "test", path: "/title", value: "something else" },
    ]),
    { status: 409, code: "patch_test_failed" },
  );
  assert.equal((await notes.get("fixed-id")).data.counts.views, 5);

  await notes.delete("fixed-id");
  // For alice a missing note is 403 (her read rule needs the document to decide, and
  // must not reveal which ids exist); the service key sees the 404.
  await assert.rejects(notes.get("fixed-id"), { status: 403, code: "rule_denied" });
  await assert.rejects(svc.collection("notes").get("fixed-id"), { status: 404, code: "document_not_found" });
  await assert.rejects(svc.collection("notes").patch("fixed-id", { a: 1 }), { status: 404, code: "document_not_found" });
  assert.throws(() => notes.patch("fixed-id", "nope"), TypeError);
});

test("conditional writes: If-Match and If-None-Match", async () => {
  const notes = alice.collection("notes");
  const v1 = await notes.put("cond", { owner: uid, n: 1 }, { ifNoneMatch: "*" });
  assert.equal(v1.version, 1);
  await assert.rejects(notes.put("cond", { owner: uid, n: 2 }, { ifNoneMatch: "*" }), (e) => {
    assert.ok(e instanceof PlinthError);
    assert.equal(e.status, 412);
    assert.equal(e.code, "precondition_failed");
    return true;
  });
  const v2 = await notes.put("cond", { owner: uid, n: 2 }, { ifMatch: 1 });
  assert.equal(v2.version, 2);
  await assert.rejects(notes.put("cond", { owner: uid, n: 3 }, { ifMatch: 1 }), { status: 412, code: "precondition_failed" });
  // A document works as ifMatch (its version), as does "*" (it must exist).
  const v3 = await notes.patch("cond", { n: 3 }, { ifMatch: v2 });
  assert.equal(v3.version, 3);
  const v4 = await notes.patch("cond", [{ op: "increment", path: "/n", value: 1 }], { ifMatch: "*" });
  assert.equal(v4.data.n, 4);
  await assert.rejects(notes.patch("missing", { n: 1 }, { ifMatch: "*" }), { status: 412 });
  await assert.rejects(notes.delete("cond", { ifMatch: v3 }), { status: 412, code: "precondition_failed" });
  await notes.delete("cond", { ifMatch: v4 });
  await assert.rejects(svc.collection("notes").get("cond"), { code: "document_not_found" });
  assert.throws(() => notes.put("x", {}, { ifMatch: {} }), TypeError);
});

test("list: filter, order, limit and cursor paging; pages() and iterate()", async () => {
  const items = alice.collection("items");
  for (let n = 0; n < 7; n++) await items.put(`i${n}`, { owner: uid, n, parity: n % 2 ? "odd" : "even" });

  const first = await items.list({ filter: "doc.n >= 2", order: "-n", limit: 2 });
  assert.deepEqual(first.items.map((d) => d.data.n), [6, 5]);
  assert.equal(typeof first.nextCursor, "string");
  const second = await items.list({ filter: "doc.n >= 2", order: "-n", limit: 2, cursor: first.nextCursor });
  assert.deepEqual(second.items.map((d) => d.data.n), [4, 3]);
  const third = await items.list({ filter: "doc.n >= 2", order: "-n", limit: 2, cursor: second.nextCursor });
  assert.deepEqual(third.items.map((d) => d.data.n), [2]);
  assert.equal(third.nextCursor, null);

  const pages = [];
  for await (const page of items.pages({ filter: "doc.parity == 'even'", order: ["-n"], limit: 1 })) {
    pages.push(page.items.map((d) => d.data.n));
  }
  assert.deepEqual(pages, [[6], [4], [2], [0]]);

  const all = [];
  for await (const doc of items.iterate({ order: "n", limit: 3 })) all.push(doc.data.n);
  assert.deepEqual(all, [0, 1, 2, 3, 4, 5, 6]);

  const viaIterator = [];
  for await (const doc of items) viaIterator.push(doc.id);
  assert.equal(viaIterator.length, 7);

  // The read rule filters lists: another user sees none of alice's items.
  const bob = createClient({ url: server.url, tenant });
  await bob.auth.signUp({ email: email("bob"), password: PASSWORD });
  assert.deepEqual((await bob.collection("items").list()).items, []);

  await assert.rejects(items.list({ filter: "doc.n >=" }), { status: 400, code: "invalid_filter" });
  await assert.rejects(items.list({ order: "a,b,c,d,e" }), { status: 400, code: "invalid_order" });
  await assert.rejects(items.list({ cursor: "forged" }), { status: 400, code: "invalid_cursor" });
});

test("batch: all or nothing, with per-write results and the failing index", async () => {
  const results = await alice.batch([
    { op: "create", collection: "notes", data: { owner: uid, title: "a" } },
    { op: "put", collection: "notes", id: "b1", data: { owner: uid, title: "b" } },
    { op: "patch", collection: "notes", id: "b1", patch: { title: "b2" }, ifMatch: 1 },
    { op: "patch", collection: "notes", id: "b1", patch: [{ op: "increment", path: "/n", value: 1 }] },
    { op: "delete", collection: "notes", id: "b1" },
  ]);
  assert.deepEqual(results.map((r) => r.op), ["create", "create", "update", "update", "delete"]);
  for (let i = 1; i < results.length; i++) assert.ok(results[i].seq > results[i - 1].seq);
  assert.equal(results[3].doc.data.n, 1);
  assert.equal(results[4].doc, null);

  await assert.rejects(
    alice.batch([
      { op: "put", collection: "notes", id: "never", data: { owner: uid } },
      { op: "patch", collection: "notes", id: "never", patch: { owner: "someone-else" } },
    ]),
    (e) => {
      assert.equal(e.status, 403);
      assert.equal(e.code, "rule_denied");
      assert.equal(e.problem.index, 1);
      assert.match(e.detail, /^write 1:/);
      return true;
    },
  );
  await assert.rejects(svc.collection("notes").get("never"), { code: "document_not_found" });
});

test("rules and validation errors map to PlinthError codes", async () => {
  const anon = createClient({ url: server.url, tenant });
  await assert.rejects(anon.collection("notes").create({ owner: "x" }), { status: 403, code: "rule_denied" });
  await assert.rejects(alice.collection("notes").create({ owner: "someone-else" }), { status: 403, code: "rule_denied" });
  await assert.rejects(alice.collection("Bad-Name").list(), (e) => e.status === 400 && e.code === "validation_failed" && !!e.fields);
  await assert.rejects(alice.collection("nope").get("x"), { status: 403, code: "rule_denied" });
  assert.throws(() => alice.collection(""), TypeError);
});

test("requests go out with the user's token and JSON content types", async () => {
  const f = recordingFetch();
  const seen = [];
  const c = createClient({
    url: server.url,
    tenant,
    fetch: (url, init) => {
      seen.push({ url, headers: init.headers });
      return f(url, init);
    },
  });
  await c.auth.signUp({ email: email(), password: PASSWORD });
  const me = c.auth.user.id;
  await c.collection("notes").put("ct", { owner: me });
  await c.collection("notes").patch("ct", { a: 1 });
  await c.collection("notes").patch("ct", [{ op: "add", path: "/b", value: 2 }]);
  const types = seen.slice(1).map((s) => s.headers["content-type"]);
  assert.deepEqual(types, ["application/json", "application/merge-patch+json", "application/json-patch+json"]);
  assert.ok(seen.slice(1).every((s) => s.headers.authorization.startsWith("Bearer ey")));
  assert.equal(seen[0].headers.authorization, undefined); // signup sends no token
});
