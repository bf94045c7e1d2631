// Browser tests of the admin console at /_/: a fresh `plinth serve` (no admin yet), its
// pages driven in Debian's headless Chromium (playwright-core), on SQLite and, when
// TEST_POSTGRES_URL is set (scripts/test.sh sets it), on PostgreSQL. Each page's main
// path and an error path; user-supplied text holding markup must show as text with no
// script run; axe-core finds no serious or critical violation on any page; no page is
// wider than a phone. The first load's bytes and time are printed, not asserted.
//
//   cargo build --bin plinth && (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)
//   PLINTH_BIN=$CARGO_TARGET_DIR/debug/plinth node --test tests/browser/
//
// CHROMIUM: the browser (default /usr/bin/chromium).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import nodePath from "node:path";
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";

import { chromium } from "playwright-core";

import { PASSWORD, TestServer, waitFor } from "../../clients/js/test-support/helpers.js";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const ADMIN = "owner@example.test";
const ADMIN_PASSWORD = "owner-password-1";
// Markup in user-supplied text: if any of it ran, window.__xss would be set.
const XSS = (n) => `<img src=x onerror="window.__xss=${n}">`;

/** A fresh database on the PostgreSQL of TEST_POSTGRES_URL (made with psql), or null. */
function postgresUrl() {
  const base = process.env.TEST_POSTGRES_URL;
  if (!base) return null;
  const dirs = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql").sort().reverse() : [];
  const psql = dirs.map((v) => `/usr/lib/postgresql/${v}/bin/psql`).find(existsSync) || "psql";
  const db = `console_${process.pid}_${Date.now()}`;
  execFileSync(psql, [base, "-q", "-c", `CREATE DATABASE ${db}`], { stdio: "pipe" });
  const url = new URL(base);
  url.pathname = `/${db}`;
  return url.toString();
}

const backends = [{ name: "sqlite", args: [] }];
if (process.env.TEST_POSTGRES_URL) backends.push({ name: "postgres", args: null });
else if (process.env.CI === "true") throw new Error("CI=true and TEST_POSTGRES_URL unset: the console's PostgreSQL run needs it");
else console.log("# console on PostgreSQL skipped: TEST_POSTGRES_URL is unset (scripts/test.sh sets it)");

for (const backend of backends) {
  describe(`the admin console (${backend.name})`, () => {
    let server;
    let setupToken;
    let browser;
    let page;
    const pageErrors = [];
    const byTestId = (id) => page.locator(`[data-testid="${id}"]`);
    const heading = (name) => page.getByRole("heading", { name, level: 1 });

    /** The console's own path (client-side routing: no reload). */
    const path = () => page.evaluate(() => location.pathname);

    async function axeCheck(what) {
      await page.evaluate(axeSource);
      const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations);
      const bad = violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
      assert.deepEqual(bad, [], `axe on ${what}`);
    }

    async function fitsAPhone(what) {
      await page.setViewportSize({ width: 360, height: 780 });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await page.setViewportSize({ width: 1100, height: 900 });
      assert.ok(overflow <= 0, `${what} is ${overflow}px wider than a 360px screen`);
    }

    /** With PLINTH_CONSOLE_SCREENSHOTS=DIR (and on SQLite), saves the page as DIR/NAME.png. */
    async function shot(name) {
      const dir = process.env.PLINTH_CONSOLE_SCREENSHOTS;
      if (!dir || backend.name !== "sqlite") return;
      mkdirSync(dir, { recursive: true });
      await page.waitForTimeout(300);
      await page.screenshot({ path: nodePath.join(dir, `${name}.png`) });
    }

    function noScriptRan() {
      return page.evaluate(() => window.__xss);
    }

    before(async () => {
      assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
      const args = backend.args || ["--database-url", postgresUrl()];
      ({ server, setupToken } = await TestServer.startWithoutAdmin({ args }));
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--disable-gpu", "--disable-dev-shm-usage"] });
      const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      page = await context.newPage();
      page.on("pageerror", (e) => pageErrors.push(String(e && e.stack ? e.stack : e)));
      // The CSP allows no inline script or style: a violation is a console error.
      page.on("console", (m) => {
        if (m.type() === "error" && /Content Security Policy/i.test(m.text())) pageErrors.push(`CSP: ${m.text()}`);
      });
    });

    after(async () => {
      if (browser) await browser.close();
      if (server) {
        if (process.exitCode && server.stderr) console.error(`server log (tail):\n${server.stderr.slice(-4000)}`);
        await server.close();
      }
    });

    test("is served with its security headers, and unknown paths load the page", async () => {
      const res = await fetch(`${server.url}/_/tenants/anything/data`);
      assert.equal(res.status, 200);
      const csp = res.headers.get("content-security-policy");
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("referrer-policy"), "no-referrer");
      assert.match(await res.text(), /<script type="module" src="\/_\/js\/main.js">/);
      const etag = res.headers.get("etag");
      assert.ok(etag, "an ETag");
      assert.equal((await fetch(`${server.url}/_/`, { headers: { "if-none-match": etag } })).status, 304);
      assert.equal((await fetch(`${server.url}/_/js/missing.js`)).status, 404);
      assert.equal((await fetch(`${server.url}/_/vendor/preact.mjs`)).headers.get("content-type"), "text/javascript; charset=utf-8");
    });

    test("first run: a wrong setup token is refused, the right one makes the first admin", async () => {
      // First load, measured: bytes (as sent, and gzipped as a compressing proxy would)
      // and the time until the sign-in form can be used.
      const bodies = [];
      const onResponse = (r) => bodies.push(r.body().then((b) => b, () => Buffer.alloc(0)));
      page.on("response", onResponse);
      const started = Date.now();
      await page.goto(`${server.url}/_/`);
      await page.getByRole("button", { name: "Sign in" }).waitFor();
      const interactive = Date.now() - started;
      page.off("response", onResponse);
      const all = await Promise.all(bodies);
      const raw = all.reduce((n, b) => n + b.length, 0);
      const gz = all.reduce((n, b) => n + gzipSync(b).length, 0);
      console.log(`# console first load (${backend.name}): ${all.length} files, ${raw} bytes, ${gz} bytes gzipped, interactive in ${interactive} ms`);

      await heading("Sign in").waitFor();
      await page.getByRole("link", { name: /Create the first admin/ }).click();
      await heading("First run").waitFor();
      await page.getByLabel("Setup token").fill("not-the-token");
      await page.getByLabel("Email").fill(ADMIN);
      await page.getByLabel("Password").fill(ADMIN_PASSWORD);
      await page.getByRole("button", { name: "Create the first admin" }).click();
      await page.getByText("This token is wrong or was already used.").waitFor();
      await shot("first-run");
      await axeCheck("the first-run page");

      await page.getByLabel("Setup token").fill(setupToken);
      await page.getByRole("button", { name: "Create the first admin" }).click();
      await heading("Overview").waitFor();
      assert.equal(await path(), "/_/");
      await server.signIn(ADMIN, ADMIN_PASSWORD);
      assert.deepEqual(pageErrors, []);
    });

    test("login: a wrong password is refused, the right one signs in", async () => {
      await page.getByRole("button", { name: "Log out" }).click();
      await heading("Sign in").waitFor();
      await page.getByLabel("Email").fill(ADMIN);
      await page.getByLabel("Password").fill("wrong-password-1");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByText("Wrong email or password.").waitFor();
      await shot("sign-in");
      await axeCheck("the sign-in page");
      await fitsAPhone("the sign-in page");
      await page.getByLabel("Password").fill(ADMIN_PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
      await heading("Overview").waitFor();
    });

    test("overview: the server, and the empty state pointing at tenants", async () => {
      const facts = await byTestId("server").textContent();
      assert.match(facts, new RegExp(backend.name === "postgres" ? "PostgreSQL" : "SQLite"));
      assert.match(facts, /Version/);
      await page.getByText("No tenants yet.").waitFor();
      await axeCheck("the overview");
      await fitsAPhone("the overview");
    });

    test("tenants: slug checked as typed, create, rename, CORS, suspend, resume, delete", async () => {
      await page.getByRole("link", { name: "Create the first tenant" }).click();
      await heading("Tenants").waitFor();
      await page.getByText("No tenants yet: create one above").waitFor();
      const slug = page.getByLabel("Slug");
      const create = page.getByRole("button", { name: "Create tenant" });
      await slug.fill("Bad Slug");
      await page.getByText(/3 to 40 characters/).waitFor();
      assert.equal(await create.isDisabled(), true);
      await slug.fill("admin");
      await page.getByText("This word is reserved.").waitFor();
      await slug.fill("acme");
      await page.getByText("Available.").waitFor();
      await page.getByLabel("Name", { exact: true }).fill("Acme Inc");
      await create.click();
      const acme = byTestId("tenant-acme");
      await acme.waitFor();
      assert.match(await acme.textContent(), /Acme Inc/);
      await slug.fill("acme");
      await page.getByText("A tenant with this slug exists.").waitFor();
      assert.equal(await create.isDisabled(), true);
      await slug.fill("");

      // Rename, to a name holding markup: shown as text.
      await acme.getByRole("button", { name: "Rename" }).click();
      await acme.getByLabel("New name").fill(`Acme ${XSS(1)}`);
      await acme.getByRole("button", { name: "Save name" }).click();
      await waitFor(async () => (await acme.locator(".tenant-name").textContent()) === `Acme ${XSS(1)}`, { message: "the new name" });
      assert.equal((await server.admin("GET", "/admin/v1/tenants/acme")).name, `Acme ${XSS(1)}`);

      // CORS: a bad origin is the server's field error; good ones are stored.
      await acme.getByRole("button", { name: "CORS" }).click();
      await acme.getByLabel("Allowed origins").fill("ftp://nope");
      await acme.getByRole("button", { name: "Save origins" }).click();
      await acme.getByText(/must start with http/).waitFor();
      await acme.getByLabel("Allowed origins").fill("https://app.example.com\nhttp://localhost:3000");
      await acme.getByRole("button", { name: "Save origins" }).click();
      await waitFor(async () => (await acme.getByLabel("Allowed origins").count()) === 0, { message: "the CORS form closed" });
      assert.deepEqual((await server.admin("GET", "/admin/v1/tenants/acme")).cors_origins, ["https://app.example.com", "http://localhost:3000"]);

      await acme.getByRole("button", { name: "Suspend" }).click();
      await acme.getByText("suspended").waitFor();
      assert.equal((await server.admin("GET", "/admin/v1/tenants/acme")).suspended, true);
      await acme.getByRole("button", { name: "Resume" }).click();
      await acme.getByRole("button", { name: "Suspend" }).waitFor();
      assert.equal((await server.admin("GET", "/admin/v1/tenants/acme")).suspended, false);

      // Delete: the button waits for the slug typed exactly.
      await server.admin("POST", "/admin/v1/tenants", { slug: "doomed" });
      await page.reload();
      const doomed = byTestId("tenant-doomed");
      await doomed.getByRole("button", { name: "Delete" }).click();
      const confirm = doomed.getByRole("button", { name: "Delete tenant" });
      await doomed.getByLabel("Type doomed to confirm").fill("doome");
      assert.equal(await confirm.isDisabled(), true);
      await doomed.getByLabel("Type doomed to confirm").fill("doomed");
      await shot("tenants");
      await axeCheck("the tenants page");
      await confirm.click();
      await waitFor(async () => (await doomed.count()) === 0, { message: "doomed gone" });
      const res = await fetch(`${server.url}/admin/v1/tenants/doomed`, { headers: { authorization: `Bearer ${server.adminToken}` } });
      assert.equal(res.status, 404);
      await fitsAPhone("the tenants page");
      assert.equal(await noScriptRan(), undefined);
      assert.deepEqual(pageErrors, []);
    });

    test("users: create (bad password refused), search, page, disable, enable, revoke, delete", async () => {
      await byTestId("tenant-acme").getByRole("link", { name: "Users" }).click();
      await page.getByRole("heading", { name: /Users/, level: 1 }).waitFor();
      await page.getByText("No users yet.").waitFor();
      await axeCheck("the users page (empty)");

      await page.getByRole("button", { name: "Create a user" }).click();
      await page.getByLabel("Email", { exact: true }).fill("ann@example.test");
      await page.getByLabel("Password").fill("short");
      await page.getByRole("button", { name: "Create user" }).click();
      await page.locator(".field-error").first().waitFor();
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Create user" }).click();
      await page.getByText("ann@example.test").waitFor();
      // The admin API made her: she signs in herself, nobody was signed in for her.
      const annLogin = await fetch(`${server.url}/v1/t/acme/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: "ann@example.test", password: PASSWORD }),
      });
      assert.equal(annLogin.status, 200, await annLogin.text());

      // The same email again: the server's email_taken, shown at the field.
      await page.getByRole("button", { name: "Create a user" }).click();
      const form = byTestId("create-user");
      await form.getByLabel("Email", { exact: true }).fill("ANN@example.test");
      await form.getByRole("button", { name: "Create user" }).click();
      await form.getByText("A user with this email exists.").waitFor();
      assert.equal(await form.getByLabel("Email", { exact: true }).getAttribute("aria-invalid"), "true");
      await axeCheck("the users page (a refused user)");
      // No password, already verified: listed as verified; no password signs in yet.
      await form.getByLabel("Email", { exact: true }).fill("nopass@example.test");
      await form.getByLabel("Email already verified").check();
      await form.getByRole("button", { name: "Create user" }).click();
      const nopass = byTestId("user-row").filter({ hasText: "nopass@example.test" });
      await nopass.getByText("verified", { exact: true }).waitFor();
      const nopassLogin = await fetch(`${server.url}/v1/t/acme/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: "nopass@example.test", password: PASSWORD }),
      });
      assert.equal(nopassLogin.status, 401, "a user made without a password has none");
      const nopassId = (await server.admin("GET", "/admin/v1/tenants/acme/users?search=nopass")).items[0].id;
      await server.admin("DELETE", `/admin/v1/tenants/acme/users/${nopassId}`);

      // Thirty more through the API: two pages of 25.
      for (let i = 0; i < 30; i++) {
        const r = await fetch(`${server.url}/v1/t/acme/auth/signup`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ email: `bulk${String(i).padStart(2, "0")}@example.test`, password: PASSWORD }),
        });
        assert.equal(r.status, 201, await r.text());
      }
      await page.reload();
      await waitFor(async () => (await byTestId("user-row").count()) === 25, { message: "a page of 25 users" });
      await shot("users");
      await page.getByRole("button", { name: "Next page" }).click();
      await waitFor(async () => (await byTestId("user-row").count()) === 6, { message: "the second page" });
      await page.getByRole("button", { name: "Previous page" }).click();
      await waitFor(async () => (await byTestId("user-row").count()) === 25, { message: "back to the first page" });

      // An email holding markup (a quoted local part is a valid address) shows as text.
      const markup = '"<img src=x onerror=window.__xss=7>"@example.test';
      const signup = await fetch(`${server.url}/v1/t/acme/auth/signup`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: markup, password: PASSWORD }),
      });
      assert.equal(signup.status, 201, await signup.text());
      await page.getByLabel("Search by email").fill("onerror");
      await waitFor(async () => (await byTestId("user-row").count()) === 1, { message: "the markup user found" });
      assert.equal(await byTestId("user-row").locator(".email").textContent(), markup);
      assert.equal(await noScriptRan(), undefined);

      await page.getByLabel("Search by email").fill("ann@");
      await waitFor(
        async () => (await byTestId("user-row").count()) === 1 && (await byTestId("user-row").locator(".email").textContent()) === "ann@example.test",
        { message: "ann found, alone" },
      );
      const ann = byTestId("user-row");
      await ann.getByRole("button", { name: "Disable" }).click();
      await ann.getByText("disabled").waitFor();
      const login = () =>
        fetch(`${server.url}/v1/t/acme/auth/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ email: "ann@example.test", password: PASSWORD }),
        }).then((r) => r.status);
      assert.notEqual(await login(), 200, "a disabled user cannot sign in");
      await ann.getByRole("button", { name: "Enable" }).click();
      await ann.getByRole("button", { name: "Disable" }).waitFor();
      assert.equal(await login(), 200);
      await ann.getByRole("button", { name: "Revoke sessions" }).click();
      await ann.getByText("Sessions revoked.").waitFor();
      await page.getByRole("button", { name: "Details of ann@example.test" }).click();
      const detail = byTestId("user-detail");
      assert.match(await detail.textContent(), /Email verifiedno/);
      await detail.getByRole("button", { name: "Send password reset mail" }).click();
      await detail.getByText(/Password reset mail requested/).waitFor();
      await detail.getByRole("button", { name: "Send verification mail" }).click();
      await detail.getByText(/Verification mail requested/).waitFor();
      await detail.getByRole("button", { name: "Mark email verified" }).click();
      await waitFor(async () => /Email verifiedyes/.test(await detail.textContent()), { message: "marked verified" });
      await ann.getByText("verified", { exact: true }).waitFor();
      assert.equal(await detail.getByRole("button", { name: /Mark email verified|Send verification mail/ }).count(), 0);
      await axeCheck("the users page");
      await fitsAPhone("the users page");
      await ann.getByRole("button", { name: "Delete" }).click();
      await ann.getByRole("button", { name: "Yes, delete" }).click();
      await waitFor(async () => (await byTestId("user-row").count()) === 0, { message: "ann deleted" });
      await page.getByLabel("Search by email").fill("nobody-here");
      await page.getByText(/No user's email contains/).waitFor();
      assert.deepEqual(pageErrors, []);
    });

    test("users: an unknown tenant is an error, not an empty list", async () => {
      await page.goto(`${server.url}/_/tenants/no-such-tenant/users`);
      await page.getByText("Could not find this tenant.").waitFor();
    });

    test("data: collections, filter errors at line:column, paging, edit, conflict, live, create, delete", async () => {
      const key = await server.serviceKey("acme");
      const api = async (method, p, body, headers = {}) => {
        const r = await fetch(`${server.url}/v1/t/acme${p}`, {
          method,
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return { status: r.status, body: await r.json().catch(() => null) };
      };
      const writes = [];
      for (let i = 0; i < 60; i++) writes.push({ op: "put", collection: "items", id: `item-${String(i).padStart(3, "0")}`, data: { n: i, tag: i % 2 ? "odd" : "even" } });
      writes.push({ op: "put", collection: "notes", id: "xss", data: { html: XSS(3) } });
      assert.equal((await api("POST", "/batch", { writes })).status, 200);

      await page.goto(`${server.url}/_/tenants/acme/data`);
      await page.getByText("Pick a collection").waitFor();
      const cols = page.getByRole("navigation", { name: "Collections" });
      await cols.getByRole("link", { name: /items/ }).waitFor();
      assert.match(await cols.textContent(), /items\s*60/);
      await axeCheck("the data page (collections)");

      // A document holding markup shows as text.
      await cols.getByRole("link", { name: /notes/ }).click();
      await byTestId("doc-row").first().waitFor();
      assert.match(await byTestId("doc-row").first().textContent(), /<img src=x onerror=/);
      await page.getByRole("button", { name: "Open document xss" }).click();
      assert.match(await byTestId("json").inputValue(), /onerror/);
      assert.equal(await noScriptRan(), undefined);

      await cols.getByRole("link", { name: /items/ }).click();
      await waitFor(async () => (await byTestId("doc-row").count()) === 50, { message: "a page of 50" });
      await byTestId("live").and(page.locator('[data-state="live"]')).waitFor();
      await page.getByRole("button", { name: "Next page" }).click();
      await waitFor(async () => (await byTestId("doc-row").count()) === 10, { message: "the last 10" });
      await page.getByRole("button", { name: "Previous page" }).click();
      await waitFor(async () => (await byTestId("doc-row").count()) === 50, { message: "back to 50" });

      // A bad filter: the server's error with its position; a good one filters.
      await byTestId("filter").fill("doc.n >");
      await page.getByRole("button", { name: "Apply" }).click();
      await page.getByText(/line 1 column \d+/).waitFor();
      assert.equal(await byTestId("filter").getAttribute("aria-invalid"), "true");
      await byTestId("filter").fill("doc.tag == 'odd' && doc.n < 10");
      await page.getByRole("button", { name: "Apply" }).click();
      await waitFor(async () => (await byTestId("doc-row").count()) === 5, { message: "5 odd items below 10" });
      await byTestId("live").and(page.locator('[data-state="live"]')).waitFor();

      // Live: a change elsewhere shows in the visible page without a reload.
      await page.evaluate(() => (window.__mark = "same page"));
      assert.equal((await api("PATCH", "/collections/items/docs/item-003", { n: 3, note: "from elsewhere" }, { "content-type": "application/merge-patch+json" })).status, 200);
      const row3 = byTestId("doc-row").filter({ hasText: "item-003" });
      await waitFor(async () => /from elsewhere/.test(await row3.textContent()), { message: "the live update", timeout: 20_000 });
      assert.equal((await api("DELETE", "/collections/items/docs/item-005")).status, 204);
      await waitFor(async () => (await byTestId("doc-row").count()) === 4, { message: "the live delete", timeout: 20_000 });
      assert.equal(await page.evaluate(() => window.__mark), "same page");

      // Edit: bad JSON is caught before saving; a save bumps the version.
      await page.getByRole("button", { name: "Open document item-001" }).click();
      const editor = byTestId("editor");
      await byTestId("json").fill("{ not json");
      await editor.getByText(/Not valid JSON/).waitFor();
      assert.equal(await editor.getByRole("button", { name: "Save" }).isDisabled(), true);
      await byTestId("json").fill(JSON.stringify({ n: 1, tag: "odd", edited: true }));
      await editor.getByRole("button", { name: "Save" }).click();
      await editor.getByText(/^version 2/).waitFor();
      assert.equal((await api("GET", "/collections/items/docs/item-001")).body.data.edited, true);
      await axeCheck("the data page (editor)");

      // Conflict: saved elsewhere meanwhile; shown with the newer version, then overwritten.
      await byTestId("json").fill(JSON.stringify({ n: 1, mine: true }));
      assert.equal((await api("PUT", "/collections/items/docs/item-001", { n: 1, theirs: true })).status, 200);
      await editor.getByRole("button", { name: "Save" }).click();
      const conflict = byTestId("conflict");
      await conflict.waitFor();
      assert.match(await conflict.textContent(), /version 3/);
      assert.match(await conflict.textContent(), /"theirs": true/);
      await conflict.getByRole("button", { name: "Overwrite it with mine" }).click();
      await editor.getByText(/^version 4/).waitFor();
      await shot("data");
      assert.equal((await api("GET", "/collections/items/docs/item-001")).body.data.mine, true);

      // Delete from the editor; create a new one.
      await editor.getByRole("button", { name: "Delete" }).click();
      await editor.getByRole("button", { name: "Yes, delete" }).click();
      await waitFor(async () => (await byTestId("editor").count()) === 0, { message: "the editor closed" });
      assert.equal((await api("GET", "/collections/items/docs/item-001")).status, 404);
      await page.getByRole("button", { name: "New document" }).click();
      await page.getByLabel("Id (optional)").fill("made-here");
      await byTestId("json").fill(JSON.stringify({ n: 1000, tag: "odd", text: XSS(4) }));
      await byTestId("editor").getByRole("button", { name: "Create" }).click();
      await byTestId("editor").getByText(/^version 1/).waitFor();
      assert.equal((await api("GET", "/collections/items/docs/made-here")).body.data.n, 1000);
      await fitsAPhone("the data page");
      assert.equal(await noScriptRan(), undefined);
      assert.deepEqual(pageErrors, []);
    });

    test("rules: errors listed at line:column and the old set kept, then installed", async () => {
      await page.goto(`${server.url}/_/tenants/acme/rules`);
      await page.getByText("No rule set installed yet").waitFor();
      const source = byTestId("rules-source");
      await source.fill('[notes]\nread = "auth != null"\ncreate = "auth != null &&"\n');
      await page.getByRole("button", { name: "Install" }).click();
      const errors = byTestId("rules-errors");
      await errors.waitFor();
      assert.match(await errors.textContent(), /\[notes\] create, line 3 column \d+/);
      assert.equal(await source.getAttribute("aria-invalid"), "true");
      await shot("rules");
      await errors.getByRole("button").first().click();
      assert.equal(await page.evaluate(() => document.activeElement.id), "rules-source");
      const active = await fetch(`${server.url}/admin/v1/tenants/acme/rules`, { headers: { authorization: `Bearer ${server.adminToken}` } });
      assert.equal((await active.json()).version, 0, "nothing installed");
      await axeCheck("the rules page (errors)");

      await source.fill('[notes]\nread = "auth != null"\ncreate = "auth != null && new.owner == auth.uid"\n');
      await page.getByRole("button", { name: "Install" }).click();
      await byTestId("rules-installed").getByText(/Installed version 1/).waitFor();
      await page.getByText("Active: version 1.").waitFor();
      // The changes against the active version, line by line.
      await source.fill('[notes]\nread = "auth != null"\ncreate = "auth != null"\n');
      await page.getByRole("button", { name: "Show changes" }).click();
      const diff = await byTestId("rules-diff").textContent();
      assert.match(diff, /- create = "auth != null && new.owner == auth.uid"/);
      assert.match(diff, /\+ create = "auth != null"/);
      assert.match(diff, /  read = "auth != null"/);
      await page.getByRole("button", { name: "Revert to the active version" }).click();
      assert.equal(await byTestId("rules-diff").count(), 0);

      // Test cases run against the text being edited: a rule letting anyone create
      // fails the case, the corrected rule passes it; nothing installed by either.
      await page.getByLabel("Test cases (TOML)").fill(
        '[[case]]\nname = "alice creates her note"\ncollection = "notes"\noperation = "create"\nauth = { uid = "alice" }\nnew = { owner = "alice" }\nexpect = "allow"\n\n' +
          '[[case]]\nname = "bob cannot create a note for alice"\ncollection = "notes"\noperation = "create"\nauth = { uid = "bob" }\nnew = { owner = "alice" }\nexpect = "deny"\n',
      );
      await source.fill('[notes]\nread = "auth != null"\ncreate = "auth != null"\n');
      await page.getByRole("button", { name: "Run tests" }).click();
      const report = byTestId("rules-test-report");
      await waitFor(async () => (await report.getAttribute("data-passed")) === "false", { message: "a failing test" });
      assert.match(await report.textContent(), /1 of 2 cases failed/);
      const rows = byTestId("rules-test-case");
      assert.equal(await rows.nth(0).getAttribute("data-passed"), "true");
      assert.equal(await rows.nth(1).getAttribute("data-passed"), "false");
      assert.match(await rows.nth(1).textContent(), /bob cannot create a note for alice.*decided by.*9denyallowFAIL/s);
      await axeCheck("the rules page (a failing test)");
      await source.fill('[notes]\nread = "auth != null"\ncreate = "auth != null && new.owner == auth.uid"\n');
      await page.getByRole("button", { name: "Run tests" }).click();
      await waitFor(async () => (await report.getAttribute("data-passed")) === "true", { message: "the tests passing" });
      assert.match(await report.textContent(), /All 2 cases passed/);
      // A set that does not compile runs no case; cases that are not cases are an error.
      await source.fill('[notes]\nread = "auth != null &&"\n');
      await page.getByRole("button", { name: "Run tests" }).click();
      await waitFor(async () => /no case ran/.test(await report.textContent()), { message: "the invalid set reported" });
      await page.getByRole("button", { name: "Revert to the active version" }).click();
      await page.getByLabel("Test cases (TOML)").fill("[[case]\n");
      await page.getByRole("button", { name: "Run tests" }).click();
      await page.getByText("Could not run the tests.").waitFor();
      const still = await fetch(`${server.url}/admin/v1/tenants/acme/rules`, { headers: { authorization: `Bearer ${server.adminToken}` } });
      assert.equal((await still.json()).version, 1, "testing installs nothing");
      await fitsAPhone("the rules page");
      assert.deepEqual(pageErrors, []);
    });

    test("rules: the history lists each install and rolls back to one", async () => {
      const v1 = '[notes]\nread = "auth != null"\ncreate = "auth != null && new.owner == auth.uid"\n';
      await page.goto(`${server.url}/_/tenants/acme/rules`);
      await page.getByText("Active: version 1.").waitFor();
      const rows = byTestId("rules-version-row");
      await waitFor(async () => (await rows.count()) === 1, { message: "version 1 listed" });
      assert.match(await rows.first().textContent(), /1.*admin:.*active/);
      const source = byTestId("rules-source");
      await source.fill('[notes]\nread = "true"\ncreate = "auth != null && new.owner == auth.uid"\n');
      await page.getByRole("button", { name: "Install" }).click();
      await page.getByText("Active: version 2.").waitFor();
      await waitFor(async () => (await rows.count()) === 2, { message: "version 2 listed" });
      assert.match(await rows.first().textContent(), /^2.*active/);
      // Roll back to version 1, confirmed; it comes back as version 3, in the editor too.
      await page.getByRole("button", { name: "Roll back to this (version 1)" }).click();
      await page.getByText("Install version 1 again as the active set?").waitFor();
      await axeCheck("the rules page (history)");
      await page.getByRole("button", { name: "Yes, roll back" }).click();
      await byTestId("rules-rolled-back").getByText("Version 1 installed again as version 3.").waitFor();
      await page.getByText("Active: version 3.").waitFor();
      await waitFor(async () => (await rows.count()) === 3, { message: "version 3 listed" });
      assert.equal(await source.inputValue(), v1);
      const active = await server.admin("GET", "/admin/v1/tenants/acme/rules");
      assert.deepEqual([active.version, active.source], [3, v1]);
      await fitsAPhone("the rules page (history)");
      assert.deepEqual(pageErrors, []);
    });

    test("rules: checked as typed (line:column), and explained for a document and a user", async () => {
      await page.goto(`${server.url}/_/tenants/acme/rules`);
      await page.getByText("Active: version 3.").waitFor();
      const source = byTestId("rules-source");
      const check = byTestId("rules-check");
      await waitFor(async () => (await check.getAttribute("data-valid")) === "true", { message: "the active set checked valid" });
      assert.match(await check.textContent(), /Valid.*notes/);
      // A mistake on line 3 is listed while typing, nothing installed; its button moves
      // the cursor there, and the cursor's line and column show under the editor.
      await source.fill('[notes]\nread = "auth != null"\ncreate = "auth != null &&"\n');
      await waitFor(async () => (await check.getAttribute("data-valid")) === "false", { message: "the error listed as typed" });
      assert.match(await check.textContent(), /\[notes\] create, line 3 column (\d+)/);
      const column = Number(/line 3 column (\d+)/.exec(await check.textContent())[1]);
      assert.equal(await source.getAttribute("aria-invalid"), "true");
      await check.getByRole("button").first().click();
      assert.equal(await page.evaluate(() => document.activeElement.id), "rules-source");
      assert.equal(await byTestId("rules-cursor").textContent(), `Line 3, column ${column}`);
      await axeCheck("the rules page (checked as typed)");
      const active = await fetch(`${server.url}/admin/v1/tenants/acme/rules`, { headers: { authorization: `Bearer ${server.adminToken}` } });
      assert.equal((await active.json()).version, 3, "checking installs nothing");
      await source.fill('[notes]\nread = "auth != null"\ncreate = "auth != null"\n');
      await waitFor(async () => (await check.getAttribute("data-valid")) === "true", { message: "valid again" });
      assert.equal(await source.getAttribute("aria-invalid"), null);

      // Explain: a note read anonymously (denied) and by a user (allowed).
      const key = await server.serviceKey("acme");
      const put = await fetch(`${server.url}/v1/t/acme/collections/notes/docs/explained`, {
        method: "PUT",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ owner: "someone" }),
      });
      assert.ok(put.ok, await put.text());
      const users = await server.admin("GET", "/admin/v1/tenants/acme/users?limit=1");
      const uid = users.items[0].id;
      await page.getByLabel("Collection").fill("notes");
      await page.getByLabel("Document id").fill("explained");
      await page.getByRole("button", { name: "Explain" }).click();
      const why = byTestId("explanation");
      await why.getByText("Denied").waitFor();
      assert.match(await why.textContent(), /auth != null/);
      await page.getByLabel("User id (optional)").fill(uid);
      await page.getByRole("button", { name: "Explain" }).click();
      await why.getByText("Allowed").waitFor();
      await page.getByLabel("User id (optional)").fill("no-such-user");
      await page.getByRole("button", { name: "Explain" }).click();
      await page.locator(".field-error").filter({ hasText: /user/i }).waitFor();
      await page.getByLabel("Collection").fill("Bad Name");
      await page.getByLabel("User id (optional)").fill("");
      await page.getByRole("button", { name: "Explain" }).click();
      await page.getByText("Could not explain.").waitFor();
      await axeCheck("the rules page (explain)");
      await fitsAPhone("the rules page (explain)");
      // The overview counts documents: the note goes again.
      const del = await fetch(`${server.url}/v1/t/acme/collections/notes/docs/explained`, { method: "DELETE", headers: { authorization: `Bearer ${key}` } });
      assert.equal(del.status, 204);
      assert.deepEqual(pageErrors, []);
    });

    test("rules editor: an error marked at its line while typing, gone when fixed, then installed", async () => {
      const fixed = '# who may do what\n[notes]\nread = "auth != null"\ncreate = "auth != null && new.owner == auth.uid"\n';
      await page.goto(`${server.url}/_/tenants/acme/rules`);
      await page.getByText("Active: version 3.").waitFor();
      const source = byTestId("rules-source");
      const editor = byTestId("rules-editor");
      const check = byTestId("rules-check");
      const markers = editor.locator('[data-mark="error"]');
      /** The live check has answered for the text as it is now. */
      const settled = async (valid) =>
        (await check.getAttribute("data-valid")) === String(valid) && !/\bstale\b/.test(await editor.getAttribute("class"));
      await waitFor(() => settled(true), { message: "the active set checked valid" });
      assert.equal(await markers.count(), 0);

      // Typed key by key, as a person would: the mistake is on line 4.
      await source.focus();
      await page.keyboard.press("Control+A");
      await page.keyboard.press("Delete");
      await page.keyboard.type('# who may do what\n[notes]\nread = "auth != null"\ncreate = "auth != null &&"\n');
      await waitFor(() => settled(false), { message: "the error checked as typed" });
      assert.equal(await markers.count(), 1);
      assert.equal(await markers.first().getAttribute("data-line"), "4");
      assert.equal(await markers.first().textContent(), "4");
      const column = Number(/line 4 column (\d+)/.exec(await check.textContent())[1]);
      const lines = editor.locator(".cm-line");
      assert.equal(await lines.count(), 5);
      assert.equal(await lines.nth(3).locator(".cm-mark").count(), 1, "the column underlined on line 4");
      assert.match(await lines.nth(3).locator(".cm-msg").textContent(), /^\[notes\] create: ./);
      assert.equal(await editor.locator(".cm-line.err").count(), 1);
      // Highlighted: the comment, the table, the keys, and the CEL inside the strings (the
      // underlined character may split a token in two: compare the texts joined).
      const joined = async (cls) => (await editor.locator(cls).allTextContents()).join(" ");
      assert.equal(await joined(".t-c"), "# who may do what");
      assert.equal(await joined(".t-h"), "[notes]");
      assert.equal(await joined(".t-k"), "read create");
      assert.equal(await joined(".cm-line:nth-child(3) .t-cv"), "auth");
      assert.equal(await joined(".cm-line:nth-child(3) .t-co"), "!=");
      assert.equal(await joined(".cm-line:nth-child(3) .t-ck"), "null");
      assert.equal(await joined(".cm-line:nth-child(3) .t-s"), '" "');

      // The gutter's marker puts the caret at the error; the message shows under the editor.
      await markers.first().click();
      assert.equal(await page.evaluate(() => document.activeElement.id), "rules-source");
      assert.equal(await byTestId("rules-cursor").textContent(), `Line 4, column ${column}`);
      assert.match(await byTestId("rules-here").textContent(), /^Line 4: \[notes\] create: ./);
      // Tab indents with spaces, Ctrl+Z undoes it; Escape then Tab leaves the editor.
      await page.keyboard.press("Home");
      await page.keyboard.press("Tab");
      assert.match(await source.inputValue(), /\n {2}create = "auth != null &&"\n/);
      await page.keyboard.press("Control+Z");
      assert.match(await source.inputValue(), /\ncreate = "auth != null &&"\n/);
      await page.keyboard.press("Escape");
      await page.keyboard.press("Tab");
      assert.notEqual(await page.evaluate(() => document.activeElement.id), "rules-source", "no keyboard trap");
      await axeCheck("the rules editor (an error marked)");

      // Fixed, the marker goes; installed.
      await source.focus();
      await page.keyboard.press("Control+A");
      await page.keyboard.type(fixed);
      await waitFor(() => settled(true), { message: "valid once fixed" });
      assert.equal(await markers.count(), 0);
      assert.equal(await editor.locator(".cm-mark, .cm-msg").count(), 0);
      assert.equal(await source.getAttribute("aria-invalid"), null);
      assert.equal(await source.inputValue(), fixed);
      await page.getByRole("button", { name: "Install" }).click();
      await byTestId("rules-installed").getByText(/Installed version 4/).waitFor();
      await page.getByText("Active: version 4.").waitFor();
      const active = await server.admin("GET", "/admin/v1/tenants/acme/rules");
      assert.deepEqual([active.version, active.source], [4, fixed]);

      // Markup in a rule's strings (and so in the server's messages) shows as text.
      await source.fill(`[notes]\nread = "doc.title != '<script>window.__xss = 1</script>'"\ncreate = "<img src=x onerror=window.__xss=2> &&"\n`);
      await waitFor(() => settled(false), { message: "the markup's error checked" });
      assert.equal(await markers.first().getAttribute("data-line"), "3");
      assert.match(await editor.locator("pre").textContent(), /<script>window.__xss = 1<\/script>/);
      assert.match(await editor.locator("pre").textContent(), /<img src=x onerror=window.__xss=2> &&/);
      assert.equal(await page.locator("main script, main img").count(), 0);
      assert.equal(await noScriptRan(), undefined);
      await fitsAPhone("the rules editor");
      await page.getByRole("button", { name: "Revert to the active version" }).click();
      assert.equal(await source.inputValue(), fixed);
      await waitFor(() => settled(true), { message: "the reverted text checked valid" });
      assert.equal(await markers.count(), 0);
      assert.deepEqual(pageErrors, []);
    });

    test("keys and secrets: a key shown once that works, revoked; secrets by name only", async () => {
      await page.goto(`${server.url}/_/tenants/acme/keys`);
      await page.getByRole("heading", { name: "Service keys" }).waitFor();
      await waitFor(async () => (await byTestId("key-row").count()) >= 2, { message: "the tests' key and the console's" });
      assert.match(await page.locator("table").first().textContent(), /console: owner@example.test/);
      await page.getByLabel("Key name").fill("ci");
      await page.getByRole("button", { name: "Create key" }).click();
      const key = await byTestId("key-value").textContent();
      const docs = (k) => fetch(`${server.url}/v1/t/acme/collections/items/docs?limit=1`, { headers: { authorization: `Bearer ${k}` } }).then((r) => r.status);
      assert.equal(await docs(key), 200);
      await page.getByRole("button", { name: "Done" }).click();
      assert.equal(await byTestId("key-value").count(), 0, "never shown again");
      await page.getByRole("button", { name: "Revoke key ci" }).click();
      await waitFor(async () => (await page.getByRole("button", { name: "Revoke key ci" }).count()) === 0, { message: "ci revoked" });
      assert.equal(await docs(key), 401);

      await page.getByRole("heading", { name: "Secrets", exact: true }).waitFor();
      await page.getByText("No secrets.").waitFor();
      await page.getByLabel("Name", { exact: true }).fill("bad-name");
      await page.getByLabel("Value").fill("hunter2-value");
      await page.getByRole("button", { name: "Set secret" }).click();
      await page.getByText(/must match/).waitFor();
      await page.getByLabel("Name", { exact: true }).fill("API_TOKEN");
      await page.getByRole("button", { name: "Set secret" }).click();
      await byTestId("secret-row").filter({ hasText: "API_TOKEN" }).waitFor();
      assert.doesNotMatch(await page.content(), /hunter2-value/, "the value is not on the page");
      await shot("keys-and-secrets");
      await axeCheck("the keys and secrets page");
      await fitsAPhone("the keys and secrets page");
      await page.getByRole("button", { name: "Delete API_TOKEN" }).click();
      await page.getByText("No secrets.").waitFor();
      assert.deepEqual(pageErrors, []);
    });

    test("audit log: admin actions, by tenant; a failed load can be retried", async () => {
      await page.route("**/admin/v1/audit?*", (route) =>
        route.fulfill({ status: 503, contentType: "application/problem+json", body: JSON.stringify({ status: 503, code: "unavailable", detail: "the database does not answer" }) }),
        { times: 1 },
      );
      await page.goto(`${server.url}/_/audit`);
      await page.getByText("Could not load the audit log.").waitFor();
      await page.getByRole("button", { name: "Try again" }).click();
      await byTestId("audit-row").first().waitFor();
      await shot("audit");
      const actions = () => byTestId("audit-row").locator("code").allTextContents();
      assert.ok((await actions()).includes("admin.setup"), "the first admin's setup");
      await page.getByLabel("Tenant").selectOption("acme");
      await waitFor(async () => !(await actions()).includes("admin.setup"), { message: "only acme's entries" });
      const acts = await actions();
      for (const a of ["tenant.create", "tenant.update", "key.create", "key.revoke", "secret.set", "user.delete"]) assert.ok(acts.includes(a), `${a} in ${acts}`);
      await axeCheck("the audit log");
      await fitsAPhone("the audit log");
      assert.deepEqual(pageErrors, []);
    });

    test("functions: upload bundles (a bad one refused), roll back, invocation log", async () => {
      const dirs = [];
      const bundle = (name, source) => {
        const dir = mkdtempSync(nodePath.join(tmpdir(), "plinth-bundle-"));
        dirs.push(dir);
        const root = nodePath.join(dir, name);
        mkdirSync(nodePath.join(root, "functions"), { recursive: true });
        writeFileSync(nodePath.join(root, "plinth.toml"), '[[http]]\nname = "hello"\nfunction = "hello"\n');
        writeFileSync(nodePath.join(root, "functions/hello.js"), source);
        return root;
      };
      const call = () => fetch(`${server.url}/v1/t/acme/fn/hello`).then(async (r) => ({ status: r.status, body: await r.text() }));
      try {
        await page.goto(`${server.url}/_/tenants/acme/functions`);
        await page.getByText("Nothing deployed yet").waitFor();
        await page.getByText("No invocations yet").waitFor();
        await page.getByText("No dead letters").waitFor();

        await byTestId("bundle").setInputFiles(bundle("broken", "export default async (req, ctx) => ({ body: "));
        await page.getByRole("button", { name: "Deploy", exact: true }).click();
        await byTestId("bundle-errors").waitFor();
        assert.match(await byTestId("bundle-errors").textContent(), /hello/);
        await axeCheck("the functions page (bundle errors)");

        await byTestId("bundle").setInputFiles(bundle("v1", "export default async (req, ctx) => ({ body: { v: 1 } });"));
        await page.getByText(/2 files: /).waitFor();
        await page.getByRole("button", { name: "Deploy", exact: true }).click();
        await waitFor(async () => (await byTestId("deploy-row").count()) === 1, { message: "version 1 listed" });
        assert.equal((await call()).body, '{"v":1}');
        await byTestId("bundle").setInputFiles(
          bundle("v2", `export default async (req, ctx) => { ctx.log.info(${JSON.stringify(XSS(5))}); throw new Error(${JSON.stringify(XSS(6))}); };`),
        );
        await page.getByRole("button", { name: "Deploy", exact: true }).click();
        await waitFor(async () => (await byTestId("deploy-row").count()) === 2, { message: "version 2 listed" });
        assert.notEqual((await call()).status, 200);

        // Roll back to version 1, confirmed.
        await page.getByRole("button", { name: "Activate version 1" }).click();
        await page.getByText("Roll back to version 1?").waitFor();
        await page.getByRole("button", { name: "Yes, activate" }).click();
        await waitFor(async () => /active/.test(await byTestId("deploy-row").filter({ hasText: "admin:" }).last().textContent()), { message: "version 1 active" });
        await waitFor(async () => (await call()).body === '{"v":1}', { message: "version 1 answers", timeout: 10_000 });

        // The log: both outcomes, the failing one's log line and error as text.
        // The log is written in batches: refresh until it holds the three calls.
        await waitFor(
          async () => {
            await page.getByRole("button", { name: "Refresh" }).click();
            await page.waitForTimeout(300);
            return (await byTestId("invocation-row").count()) >= 3;
          },
          { message: "three invocations", timeout: 20_000, interval: 500 },
        );
        const failed = byTestId("invocation-row").filter({ hasText: "error" }).first();
        await failed.getByText(/log line/).click();
        assert.match(await failed.textContent(), /<img src=x onerror="window.__xss=5">/);
        assert.match(await failed.textContent(), /window.__xss=6/);
      await shot("functions");
        await page.getByLabel("Function", { exact: true }).fill("nothing-like-this");
        await page.getByText("No invocations of nothing-like-this yet").waitFor();
        await axeCheck("the functions page");
        await fitsAPhone("the functions page");
        assert.equal(await noScriptRan(), undefined);
        assert.deepEqual(pageErrors, []);
      } finally {
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      }
    });

    test("usage: totals and a chart per metric; a failed load can be retried", async () => {
      await page.route("**/admin/v1/tenants/acme/usage?*", (route) =>
        route.fulfill({ status: 503, contentType: "application/problem+json", body: JSON.stringify({ status: 503, code: "unavailable", detail: "try later" }) }),
        { times: 1 },
      );
      await page.goto(`${server.url}/_/tenants/acme/usage`);
      await page.getByText("Could not load the usage.").waitFor();
      await page.getByRole("button", { name: "Try again" }).click();
      await byTestId("usage-total").waitFor();
      // Usage is counted in memory and flushed now and then: reload until it shows.
      await waitFor(
        async () => {
          const text = await byTestId("usage-total").textContent();
          if (/Requests0/.test(text.replace(/\s/g, ""))) {
            await page.reload();
            await byTestId("usage-total").waitFor();
            return false;
          }
          return true;
        },
        { message: "some requests counted", timeout: 30_000, interval: 1000 },
      );
      for (const key of ["requests", "doc_writes", "invocations", "cpu_ms"]) {
        await byTestId(`chart-${key}`).locator("canvas").waitFor();
      }
      await shot("usage");
      await page.getByText("The same as a table").click();
      await page.getByRole("table").waitFor();
      await page.getByLabel("Period").selectOption("7");
      await byTestId("chart-requests").locator("canvas").waitFor();
      await axeCheck("the usage page");
      await fitsAPhone("the usage page");
      assert.deepEqual(pageErrors, []);
    });

    test("usage: the per-hour toggle, with realtime connections; a failed load can be retried", async () => {
      await page.goto(`${server.url}/_/tenants/acme/usage`);
      await byTestId("usage-total").waitFor();
      // A realtime connection from the page: it shows in this hour's figures.
      await page.evaluate(
        () =>
          new Promise((resolve, reject) => {
            const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/t/acme/realtime`);
            ws.onopen = () => {
              window.__usageSocket = ws;
              resolve();
            };
            ws.onerror = () => reject(new Error("the socket did not open"));
          }),
      );
      await page.route("**/admin/v1/tenants/acme/usage?*granularity=hour*", (route) =>
        route.fulfill({ status: 503, contentType: "application/problem+json", body: JSON.stringify({ status: 503, code: "unavailable", detail: "try later" }) }),
        { times: 1 },
      );
      const asked = page.waitForRequest((r) => /granularity=hour/.test(r.url()) && /hours=48/.test(r.url()));
      await page.getByRole("radio", { name: "Hour" }).check();
      await asked;
      await page.getByText("Could not load the usage.").waitFor();
      await page.getByRole("button", { name: "Try again" }).click();
      await waitFor(
        async () => {
          const text = (await byTestId("usage-total").textContent()).replace(/\s/g, "");
          return /Realtimeconnections[1-9]/.test(text) && /Mostopenatonce[1-9]/.test(text);
        },
        { message: "this hour's realtime connection", timeout: 10_000, interval: 250 },
      );
      assert.equal(await page.getByLabel("Period").inputValue(), "48");
      for (const key of ["requests", "errors", "doc_writes", "invocations", "cpu_ms", "realtime_connections", "realtime_peak"]) {
        await byTestId(`chart-${key}`).locator("canvas").waitFor();
      }
      await page.getByText("Realtime connections opened per hour").waitFor();
      await page.getByText("The same as a table").click();
      await page.getByRole("columnheader", { name: "Hour (UTC)" }).waitFor();
      const firstHour = await page.getByRole("table").locator("tbody th").first().textContent();
      assert.match(firstHour, /^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
      const longest = page.waitForRequest((r) => /granularity=hour/.test(r.url()) && /hours=336/.test(r.url()));
      await page.getByLabel("Period").selectOption("336");
      await longest;
      await byTestId("chart-realtime_connections").locator("canvas").waitFor();
      await axeCheck("the usage page per hour");
      await fitsAPhone("the usage page per hour");
      // Back per day: its own period is kept.
      const daily = page.waitForRequest((r) => /granularity=day/.test(r.url()) && /days=30/.test(r.url()));
      await page.getByRole("radio", { name: "Day" }).check();
      await daily;
      assert.equal(await page.getByLabel("Period").inputValue(), "30");
      await byTestId("chart-realtime_connections").locator("canvas").waitFor();
      await page.getByText("Realtime connections opened per day").waitFor();
      await page.getByText("The same as a table").click();
      await page.getByRole("columnheader", { name: "Day (UTC)" }).waitFor();
      await page.evaluate(() => window.__usageSocket.close());
      assert.deepEqual(pageErrors, []);
    });

    // 100,000 documents, paged deep: each page should take as long as the first (keyset
    // paging). Slow to set up, so only with PLINTH_CONSOLE_BIG=1; the times are printed.
    test("data: paging deep into 100,000 documents", { skip: !process.env.PLINTH_CONSOLE_BIG && "set PLINTH_CONSOLE_BIG=1" }, async () => {
      const key = await server.serviceKey("acme");
      const started = Date.now();
      for (let b = 0; b < 200; b++) {
        const writes = [];
        for (let i = 0; i < 500; i++) writes.push({ op: "put", collection: "big", id: `d${String(b * 500 + i).padStart(6, "0")}`, data: { n: b * 500 + i } });
        const r = await fetch(`${server.url}/v1/t/acme/batch`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({ writes }),
        });
        assert.equal(r.status, 200, await r.text());
      }
      const loaded = Date.now() - started;
      await page.goto(`${server.url}/_/tenants/acme/data/big`);
      await waitFor(async () => (await byTestId("doc-row").count()) === 50, { message: "the first page" });
      const times = [];
      for (let p = 0; p < 20; p++) {
        const first = await byTestId("doc-row").first().textContent();
        const t0 = Date.now();
        await page.getByRole("button", { name: "Next page" }).click();
        await waitFor(async () => (await byTestId("doc-row").first().textContent()) !== first, { message: `page ${p + 2}` });
        times.push(Date.now() - t0);
      }
      await byTestId("filter").fill("doc.n >= 99000");
      await page.getByRole("button", { name: "Apply" }).click();
      await waitFor(async () => /d099000/.test(await byTestId("doc-row").first().textContent()), { message: "the filtered page" });
      const sorted = [...times].sort((a, b) => a - b);
      console.log(`# console paging 100,000 documents (${backend.name}): inserted in ${loaded} ms; next page median ${sorted[10]} ms, worst ${sorted.at(-1)} ms, first ${times[0]} ms, 20th ${times[19]} ms`);
      const cols = page.getByRole("navigation", { name: "Collections" });
      assert.match(await cols.textContent(), /big\s*100,000/);
    });

    test("an ended session asks to sign in again over the page, keeping the edit", async () => {
      await page.goto(`${server.url}/_/tenants`);
      const acme = byTestId("tenant-acme");
      await acme.getByRole("button", { name: "Rename" }).click();
      await acme.getByLabel("New name").fill("Kept while signing in");
      // The server refuses the session once (as for an expired token).
      await page.route("**/admin/v1/tenants/acme", (route) =>
        route.fulfill({ status: 401, contentType: "application/problem+json", body: JSON.stringify({ status: 401, code: "token_expired", detail: "token expired" }) }),
        { times: 1 },
      );
      await acme.getByRole("button", { name: "Save name" }).click();
      const dialog = page.getByRole("dialog");
      await dialog.getByRole("heading", { name: "Your session ended" }).waitFor();
      await axeCheck("the sign-in dialog");
      assert.equal(await page.evaluate(() => document.activeElement.id), "relogin-password", "the dialog has the focus");
      await dialog.getByLabel("Password").fill(ADMIN_PASSWORD);
      await dialog.getByRole("button", { name: "Sign in" }).click();
      await waitFor(async () => (await page.getByRole("dialog").count()) === 0, { message: "the dialog closed" });
      assert.equal(await acme.getByLabel("New name").inputValue(), "Kept while signing in");
      await acme.getByRole("button", { name: "Save name" }).click();
      await waitFor(async () => (await acme.locator(".tenant-name").textContent()) === "Kept while signing in", { message: "renamed" });
      assert.deepEqual(pageErrors, []);
    });

    test("overview: tenants with their documents and today's use", async () => {
      await page.goto(`${server.url}/_/`);
      const row = page.getByRole("row", { name: /Kept while signing in/ });
      await row.waitFor();
      // 60 items, less the 2 deleted, plus made-here; and the note (and the big collection).
      assert.equal(await row.getByRole("cell").nth(1).textContent(), process.env.PLINTH_CONSOLE_BIG ? "100,060" : "60");
      // This hour's requests and errors are figures (the hour may have just begun: not asserted above 0).
      assert.match(await row.locator('[data-testid="hour-requests"]').textContent(), /^[\d,]+$/);
      assert.match(await row.locator('[data-testid="hour-errors"]').textContent(), /^[\d,]+$/);
      await shot("overview");
      await axeCheck("the overview (tenants)");
      assert.equal(await noScriptRan(), undefined);
    });
  });
}
