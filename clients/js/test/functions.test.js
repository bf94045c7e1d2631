import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { createClient, PlinthError } from "../src/index.js";
import { TestServer, email, PASSWORD } from "../test-support/helpers.js";

let server;
let tenant;

const MANIFEST = `[[http]]
name = "echo"
function = "echo"

[[http]]
name = "teapot"
function = "teapot"

[[http]]
name = "whoami"
function = "whoami"

[[http]]
name = "broken"
function = "broken"
`;

before(async () => {
  server = await TestServer.start();
  tenant = await server.tenant("fnapp");
  await server.deploy(tenant, {
    "plinth.toml": MANIFEST,
    "functions/echo.js": "export default (req) => ({ status: 201, body: { got: req.json } })",
    "functions/teapot.js":
      "export default (req) => ({ status: 418, headers: { 'x-kind': 'teapot' }, body: req.method + ' ' + req.path + ' ' + req.query.q + ' ' + req.body })",
    "functions/whoami.js": "export default (req) => ({ auth: req.auth, service: req.service, header: req.headers['x-custom'] || null })",
    "functions/broken.js": "export default () => { throw new Error('boom') }",
  });
});

after(async () => {
  await server?.close();
});

test("a JSON body goes in as JSON; the function's status and JSON body come back", async () => {
  const c = createClient({ url: server.url, tenant });
  const r = await c.fn("echo", { body: { hello: "world", n: [1, 2] } });
  assert.equal(r.status, 201);
  assert.equal(r.ok, true);
  assert.deepEqual(r.body, { got: { hello: "world", n: [1, 2] } });
  assert.match(r.headers["content-type"], /^application\/json/);
  assert.equal(typeof r.invocation, "string");
  const empty = await c.fn("echo", { method: "PUT" });
  assert.deepEqual(empty.body, { got: null });
});

test("any status, headers and text bodies from the function are returned, not thrown", async () => {
  const c = createClient({ url: server.url, tenant });
  const r = await c.fn("teapot/sub/path", { method: "patch", query: { q: "a b&c" }, body: "plain text" });
  assert.equal(r.status, 418);
  assert.equal(r.ok, false);
  assert.equal(r.headers["x-kind"], "teapot");
  assert.equal(r.body, "PATCH /sub/path a b&c plain text");
});

test("the caller's credentials reach the function", async () => {
  const c = createClient({ url: server.url, tenant });
  const anon = await c.fn("whoami", { headers: { "X-Custom": "yes" } });
  assert.deepEqual(anon.body, { auth: null, service: false, header: "yes" });
  const s = await c.auth.signUp({ email: email(), password: PASSWORD });
  const signedIn = await c.fn("whoami");
  assert.equal(signedIn.body.auth.uid, s.user.id);
  const svc = createClient({ url: server.url, tenant, serviceKey: await server.serviceKey(tenant) });
  assert.equal((await svc.fn("whoami")).body.service, true);
});

test("platform errors are thrown as PlinthErrors", async () => {
  const c = createClient({ url: server.url, tenant });
  await assert.rejects(c.fn("nope"), (e) => e instanceof PlinthError && e.status === 404 && e.code === "function_not_found");
  await assert.rejects(c.fn("broken"), (e) => {
    assert.equal(e.status, 500);
    assert.equal(e.code, "function_error");
    assert.equal(typeof e.problem.invocation, "string");
    return true;
  });
});
