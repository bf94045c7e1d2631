// Browser tests of the admin console's roles: the Admins and API keys page (owners add,
// invite by mail, change and remove admins; the last owner stays; API keys shown once,
// listed, revoked), the invitation's page
// and the role-aware pages: each hidden control is checked together with the server
// refusing the same change when this session makes it directly (the server is the
// truth; the console only leaves out what it would refuse). Headless Debian Chromium
// through playwright-core, on SQLite and, when TEST_POSTGRES_URL is set, on PostgreSQL.
//
//   cargo build --bin plinth && (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)
//   PLINTH_BIN=$CARGO_TARGET_DIR/debug/plinth node --test tests/browser/console-roles.test.js

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import nodePath from "node:path";

import { chromium } from "playwright-core";

import { PASSWORD, TestServer, waitFor } from "../../clients/js/test-support/helpers.js";
import { axeCheck, fitsAPhone, postgresUrl } from "./console-support.js";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const OWNER = "owner@example.test";
const TENANT_ADMIN = "ta@example.test";
const VIEWER = "viewer@example.test";
const ADMIN = "admin@example.test";
const PW = "a long passphrase 1";

const backends = [{ name: "sqlite", args: [] }];
if (process.env.TEST_POSTGRES_URL) backends.push({ name: "postgres", args: null });
else if (process.env.CI === "true") throw new Error("CI=true and TEST_POSTGRES_URL unset: the console's PostgreSQL run needs it");
else console.log("# console roles on PostgreSQL skipped: TEST_POSTGRES_URL is unset (scripts/test.sh sets it)");

for (const backend of backends) {
  describe(`the admin console's roles (${backend.name})`, () => {
    let server;
    let browser;
    const pageErrors = [];
    const pages = {};

    /** A browser context of its own (its own cookie) signed in as `email`. */
    async function signIn(email, password = PW) {
      const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      const page = await context.newPage();
      page.on("pageerror", (e) => pageErrors.push(`${email}: ${e && e.stack ? e.stack : e}`));
      page.on("console", (m) => {
        if (m.type() === "error" && /Content Security Policy/i.test(m.text())) pageErrors.push(`CSP: ${m.text()}`);
      });
      await page.goto(`${server.url}/_/login`);
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill(password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
      return page;
    }

    /**
     * A request made from the page with its session cookie and its CSRF token, as a
     * script on the page could: what the server answers this session, whatever the
     * console shows. Answers {status, type, body}.
     */
    function direct(page, method, path, body) {
      return page.evaluate(
        async ([method, path, body]) => {
          const who = await (await fetch("/admin/v1/auth/session")).json();
          const headers = { "x-csrf-token": who.csrf_token };
          if (body !== undefined) headers["content-type"] = "application/json";
          const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
          const text = await r.text();
          let parsed = null;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          return { status: r.status, type: r.headers.get("content-type"), body: parsed };
        },
        [method, path, body],
      );
    }

    async function refused(page, method, path, body, status, code) {
      const r = await direct(page, method, path, body);
      assert.equal(r.status, status, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.match(r.type || "", /application\/problem\+json/, `${method} ${path} is problem+json`);
      assert.equal(r.body.code, code, `${method} ${path}`);
    }

    async function shot(page, name) {
      const dir = process.env.PLINTH_CONSOLE_SCREENSHOTS;
      if (!dir || backend.name !== "sqlite") return;
      mkdirSync(dir, { recursive: true });
      await page.waitForTimeout(300);
      await page.screenshot({ path: nodePath.join(dir, `${name}.png`) });
    }

    const byTestId = (page, id) => page.locator(`[data-testid="${id}"]`);
    const adminRow = (page, email) => page.locator(`[data-testid="admin-row"][data-email="${email}"]`);

    before(async () => {
      assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
      const args = backend.args || ["--database-url", postgresUrl("console_roles")];
      const started = await TestServer.startWithoutAdmin({ args });
      server = started.server;
      const setup = await server.admin("POST", "/admin/v1/setup", { token: started.setupToken, email: OWNER, password: PW }, { auth: false });
      server.adminToken = setup.access_token;
      await server.tenant("acme");
      await server.tenant("beta");
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--disable-gpu", "--disable-dev-shm-usage"] });
      pages.owner = await signIn(OWNER);
    });

    after(async () => {
      if (browser) await browser.close();
      if (server) {
        if (process.exitCode && server.stderr) console.error(`server log (tail):\n${server.stderr.slice(-4000)}`);
        await server.close();
      }
    });

    test("admins: an owner adds, changes and removes admins; the last owner stays", async () => {
      const page = pages.owner;
      assert.equal(await byTestId(page, "role").textContent(), "owner");
      await page.getByRole("link", { name: "Admins and API keys" }).click();
      await page.getByRole("heading", { name: "Admins and API keys", level: 1 }).waitFor();
      await page.getByText("You are the only admin.").waitFor();
      await axeCheck(page, "the admins page (only admin)");

      // A tenant admin of acme and beta; a weak password and a taken email are refused.
      await page.getByRole("button", { name: "Add an admin" }).click();
      const form = page.locator("form", { has: page.getByRole("heading", { name: "Add an admin" }) });
      await form.getByLabel("Email").fill(TENANT_ADMIN);
      await form.getByLabel("Password").fill("short");
      await form.getByLabel("Role").selectOption("tenant_admin");
      await form.getByLabel("acme").check();
      await form.getByLabel("beta").check();
      await form.getByRole("button", { name: "Add admin" }).click();
      await form.locator(".field-error").first().waitFor();
      await form.getByLabel("Password").fill(PW);
      await form.getByRole("button", { name: "Add admin" }).click();
      await adminRow(page, TENANT_ADMIN).waitFor();
      assert.match(await adminRow(page, TENANT_ADMIN).textContent(), /Tenant admin\s*acme, beta/);

      await page.getByRole("button", { name: "Add an admin" }).click();
      await form.getByLabel("Email").fill(TENANT_ADMIN);
      await form.getByLabel("Password").fill(PW);
      await form.getByLabel("Role").selectOption("viewer");
      await form.getByRole("button", { name: "Add admin" }).click();
      await form.getByText("An admin with this email exists.").waitFor();
      await form.getByLabel("Email").fill(VIEWER);
      await form.getByRole("button", { name: "Add admin" }).click();
      await adminRow(page, VIEWER).waitFor();
      for (const [email, role] of [[ADMIN, "admin"], ["gone@example.test", "viewer"]]) {
        await page.getByRole("button", { name: "Add an admin" }).click();
        await form.getByLabel("Email").fill(email);
        await form.getByLabel("Password").fill(PW);
        await form.getByLabel("Role").selectOption(role);
        await form.getByRole("button", { name: "Add admin" }).click();
        await adminRow(page, email).waitFor();
      }
      assert.match(await adminRow(page, VIEWER).textContent(), /Viewer\s*all/);

      // The tenant admin keeps acme only.
      const ta = adminRow(page, TENANT_ADMIN);
      await ta.getByRole("button", { name: "Change role" }).click();
      await ta.getByLabel("beta").uncheck();
      await ta.getByRole("button", { name: "Save" }).click();
      await waitFor(async () => (await ta.locator("td").nth(1).textContent()) === "acme", { message: "acme only" });
      const listed = (await server.admin("GET", "/admin/v1/admins")).items;
      assert.deepEqual(listed.find((a) => a.email === TENANT_ADMIN).tenants, ["acme"]);

      // The last owner can neither be demoted nor removed: the server's answer is shown.
      const me = adminRow(page, OWNER);
      assert.match(await me.textContent(), /you/);
      await me.getByRole("button", { name: "Change role" }).click();
      await me.getByLabel("Role").selectOption("admin");
      await me.getByRole("button", { name: "Save" }).click();
      await me.getByRole("alert").getByText("last_owner").waitFor();
      await shot(page, "admins");
      await axeCheck(page, "the admins page (last owner refused)");
      await me.getByRole("button", { name: "Cancel" }).click();
      await me.getByRole("button", { name: "Remove" }).click();
      await me.getByRole("button", { name: "Yes, remove" }).click();
      await me.getByRole("alert").getByText("last_owner").waitFor();
      assert.equal((await server.admin("GET", "/admin/v1/admins")).items.find((a) => a.email === OWNER).role, "owner");

      const gone = adminRow(page, "gone@example.test");
      await gone.getByRole("button", { name: "Remove" }).click();
      await gone.getByRole("button", { name: "Yes, remove" }).click();
      await waitFor(async () => (await gone.count()) === 0, { message: "gone removed" });
      assert.ok(!(await server.admin("GET", "/admin/v1/admins")).items.some((a) => a.email === "gone@example.test"));
      await fitsAPhone(page, "the admins page");
      assert.deepEqual(pageErrors, []);
    });

    test("API keys: shown once with a copy button, scoped, listed with last use, revoked", async () => {
      const page = pages.owner;
      await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
      const form = page.locator("form", { has: page.getByRole("heading", { name: "Make an API key" }) });
      await page.getByText("No API keys.").waitFor();
      // An expiry in the past is the server's field error.
      await form.getByLabel("Key name").fill("deploy from CI");
      await form.getByLabel("Role").selectOption("tenant_admin");
      await form.getByLabel("acme").check();
      await form.getByLabel("Expires on (optional)").fill("2020-01-01");
      await form.getByRole("button", { name: "Make key" }).click();
      await form.getByText("must be in the future").waitFor();
      const year = new Date().getUTCFullYear() + 1;
      await form.getByLabel("Expires on (optional)").fill(`${year}-06-30`);
      await form.getByRole("button", { name: "Make key" }).click();
      const key = await byTestId(page, "key-value").textContent();
      assert.match(key, /^pak_[0-9a-f]{10}_/);
      await byTestId(page, "new-key").getByRole("button", { name: "Copy" }).click();
      await byTestId(page, "new-key").getByRole("button", { name: "Copied" }).waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
      await axeCheck(page, "the admins page (new key)");

      // The key works as a bearer token, within its scope only.
      const asKey = (path) => fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
      const tenants = await (await asKey("/admin/v1/tenants")).json();
      assert.deepEqual(tenants.items.map((t) => t.slug), ["acme"]);
      assert.equal((await asKey("/admin/v1/tenants/beta")).status, 404);

      await page.getByRole("button", { name: "Done" }).click();
      assert.equal(await byTestId(page, "key-value").count(), 0, "never shown again");
      const row = byTestId(page, "api-key-row").filter({ hasText: "deploy from CI" });
      await waitFor(
        async () => {
          await page.reload();
          await row.waitFor();
          return !/never/.test(await row.locator("td").nth(3).textContent());
        },
        { message: "the last use listed", timeout: 15_000, interval: 500 },
      );
      const text = await row.textContent();
      assert.ok(text.includes(key.slice(0, 10)), `the prefix of ${key} in ${text}`);
      assert.match(text, /Tenant admin\s*acme/);
      assert.match(text, new RegExp(String(year)));
      assert.doesNotMatch(await page.content(), new RegExp(key.slice(16)), "the key is not on the page any more");

      await page.getByRole("button", { name: "Revoke API key deploy from CI" }).click();
      await page.getByText("No API keys (1 revoked).").waitFor();
      assert.equal((await asKey("/admin/v1/tenants")).status, 401);
      await fitsAPhone(page, "the admins page");
      assert.deepEqual(pageErrors, []);
    });

    test("invitations: an owner invites by mail; the invitee sets a password on the link's page", async () => {
      const page = pages.owner;
      const INVITEE = "invitee@example.test";
      await page.goto(`${server.url}/_/admins`);
      await page.getByRole("heading", { name: "Admins and API keys", level: 1 }).waitFor();
      await page.getByRole("button", { name: "Invite by mail" }).click();
      const form = page.locator("form", { has: page.getByRole("heading", { name: "Invite an admin by mail" }) });
      // An admin's email is refused at the field.
      await form.getByLabel("Email").fill(VIEWER);
      await form.getByRole("button", { name: "Send invitation" }).click();
      await form.getByText("An admin with this email exists.").waitFor();
      await form.getByLabel("Email").fill(INVITEE);
      await form.getByLabel("Role").selectOption("tenant_admin");
      await form.getByLabel("beta").check();
      await form.getByRole("button", { name: "Send invitation" }).click();
      const pending = page.locator(`[data-testid="invite-row"][data-email="${INVITEE}"]`);
      await pending.waitFor();
      assert.match(await pending.textContent(), /Tenant admin\s*beta/);
      await axeCheck(page, "the admins page (an invitation pending)");

      // Without PLINTH_SMTP_URL the server logs the mail it would send: read the link there.
      const token = await waitFor(
        async () => {
          const all = [...server.stderr.matchAll(/\/_\/invite#token=([A-Za-z0-9_-]+)/g)];
          return all.length ? all[all.length - 1][1] : null;
        },
        { message: "the invitation mail in the server's log" },
      );

      const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      const invitee = await context.newPage();
      invitee.on("pageerror", (e) => pageErrors.push(`invitee: ${e && e.stack ? e.stack : e}`));
      await invitee.goto(`${server.url}/_/invite#token=${token}`);
      await invitee.getByRole("heading", { name: "Accept an invitation", level: 1 }).waitFor();
      assert.ok(!invitee.url().includes(token), "the token leaves the address bar");
      await axeCheck(invitee, "the invitation page");
      await shot(invitee, "invite");
      // Two different passwords, then a weak one: refused, the link still usable.
      await invitee.getByLabel("Password", { exact: true }).fill(PW);
      await invitee.getByLabel("Password again").fill(`${PW}x`);
      await invitee.getByRole("button", { name: "Set password and sign in" }).click();
      await invitee.getByText("The two passwords differ.").waitFor();
      await invitee.getByLabel("Password", { exact: true }).fill("short");
      await invitee.getByLabel("Password again").fill("short");
      await invitee.getByRole("button", { name: "Set password and sign in" }).click();
      await invitee.locator(".field-error").first().waitFor();
      await invitee.getByLabel("Password", { exact: true }).fill(PW);
      await invitee.getByLabel("Password again").fill(PW);
      await invitee.getByRole("button", { name: "Set password and sign in" }).click();
      await invitee.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
      assert.equal(await byTestId(invitee, "role").textContent(), "tenant admin");
      const mine = await direct(invitee, "GET", "/admin/v1/tenants");
      assert.deepEqual(mine.body.items.map((t) => t.slug), ["beta"]);
      await context.close();

      // The link works once: opened again, the page says so.
      const again = await browser.newContext();
      const second = await again.newPage();
      await second.goto(`${server.url}/_/invite#token=${token}`);
      await second.getByLabel("Password", { exact: true }).fill(PW);
      await second.getByLabel("Password again").fill(PW);
      await second.getByRole("button", { name: "Set password and sign in" }).click();
      await byTestId(second, "invite-spent").waitFor();
      await second.goto(`${server.url}/_/invite`);
      await second.getByText("This address holds no invitation.").waitFor();
      await again.close();

      // The owner's page: an admin now, no longer pending.
      await page.reload();
      await adminRow(page, INVITEE).waitFor();
      assert.equal(await pending.count(), 0);
      await fitsAPhone(page, "the admins page (after an invitation)");
      assert.deepEqual(pageErrors, []);
    });

    test("a viewer sees no changing control, and the server refuses each change", async () => {
      // Things to look at, made by the owner.
      await server.admin("PUT", "/admin/v1/tenants/acme/secrets/API_TOKEN", { value: "hunter2-secret-value" });
      await server.admin("POST", "/admin/v1/tenants/acme/keys", { name: "backend" });
      const signup = await fetch(`${server.url}/v1/t/acme/auth/signup`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: "ann@example.test", password: PASSWORD }),
      });
      const ann = (await signup.json()).user;

      const page = (pages.viewer = await signIn(VIEWER));
      assert.equal(await byTestId(page, "role").textContent(), "viewer");
      assert.equal(await page.getByRole("link", { name: /API keys/ }).count(), 0, "no keys page in the navigation");

      await page.goto(`${server.url}/_/tenants`);
      await byTestId(page, "tenant-acme").waitFor();
      assert.equal(await page.getByRole("button", { name: "Create tenant" }).count(), 0);
      for (const name of ["Rename", "CORS", "Suspend", "Delete"])
        assert.equal(await byTestId(page, "tenant-acme").getByRole("button", { name }).count(), 0, name);
      await axeCheck(page, "the tenants page (viewer)");
      await refused(page, "POST", "/admin/v1/tenants", { slug: "sneaky" }, 403, "insufficient_role");
      await refused(page, "PATCH", "/admin/v1/tenants/acme", { name: "Renamed" }, 403, "insufficient_role");

      await page.goto(`${server.url}/_/tenants/acme/keys`);
      await byTestId(page, "secret-row").filter({ hasText: "API_TOKEN" }).waitFor();
      await byTestId(page, "key-row").filter({ hasText: "backend" }).waitFor();
      for (const name of ["Create key", "Set secret", "Delete API_TOKEN", "Replace API_TOKEN", "Revoke key backend"])
        assert.equal(await page.getByRole("button", { name }).count(), 0, name);
      assert.doesNotMatch(await page.content(), /hunter2/, "no secret value on the page");
      await axeCheck(page, "the keys and secrets page (viewer)");
      await refused(page, "PUT", "/admin/v1/tenants/acme/secrets/API_TOKEN", { value: "x" }, 403, "insufficient_role");
      await refused(page, "POST", "/admin/v1/tenants/acme/keys", { name: "mine" }, 403, "insufficient_role");
      const secrets = await direct(page, "GET", "/admin/v1/tenants/acme/secrets");
      assert.equal(secrets.status, 200);
      assert.doesNotMatch(JSON.stringify(secrets.body), /hunter2/, "the API never returns a value either");

      await page.goto(`${server.url}/_/tenants/acme/users`);
      await page.getByText("ann@example.test").waitFor();
      for (const name of ["Create a user", "Disable", "Revoke sessions", "Delete", "Mark email verified", "Send verification mail"])
        assert.equal(await page.getByRole("button", { name, exact: true }).count(), 0, name);
      await axeCheck(page, "the users page (viewer)");
      await refused(page, "POST", `/admin/v1/tenants/acme/users/${ann.id}/disable`, undefined, 403, "insufficient_role");
      await refused(page, "POST", `/admin/v1/tenants/acme/users/${ann.id}/verify`, undefined, 403, "insufficient_role");

      await page.goto(`${server.url}/_/tenants/acme/rules`);
      await page.getByText("installing them is for an admin.").waitFor();
      assert.equal(await page.getByRole("button", { name: "Install" }).count(), 0);
      // A draft is checked as typed and its cases run (both change nothing)...
      await page.getByLabel("Rule set (TOML)").fill('[notes]\nread = "auth != null &&"\n');
      await waitFor(async () => (await byTestId(page, "rules-check").getAttribute("data-valid")) === "false", { message: "the draft checked" });
      await page.getByLabel("Rule set (TOML)").fill('[notes]\nread = "auth != null"\n');
      await page.getByLabel("Test cases (TOML)").fill(
        '[[case]]\nname = "anonymous reads"\ncollection = "notes"\noperation = "read"\ndoc = { owner = "alice" }\nexpect = "deny"\n',
      );
      await page.getByRole("button", { name: "Run tests" }).click();
      await waitFor(async () => (await byTestId(page, "rules-test-report").getAttribute("data-passed")) === "true", { message: "the viewer's test run" });
      const rules = await page.evaluate(async () => {
        const who = await (await fetch("/admin/v1/auth/session")).json();
        const r = await fetch("/admin/v1/tenants/acme/rules", {
          method: "PUT",
          headers: { "x-csrf-token": who.csrf_token, "content-type": "application/toml" },
          body: '[notes]\nread = "true"\n',
        });
        return { status: r.status, body: await r.json() };
      });
      assert.deepEqual([rules.status, rules.body.code], [403, "insufficient_role"]);
      // ...and installs nothing. The history is shown, with nothing to act on.
      assert.equal((await server.admin("GET", "/admin/v1/tenants/acme/rules")).version, 0, "nothing installed");
      await page.getByRole("heading", { name: "History" }).waitFor();
      assert.equal(await page.getByRole("button", { name: /Roll back/ }).count(), 0);
      await axeCheck(page, "the rules page (viewer)");
      const tested = await direct(page, "POST", "/admin/v1/tenants/acme/rules/test", { rules: "", cases: "" });
      assert.equal(tested.status, 200, JSON.stringify(tested.body));
      await refused(page, "POST", "/admin/v1/tenants/acme/rules/versions/1/activate", undefined, 403, "insufficient_role");

      await page.goto(`${server.url}/_/tenants/acme/functions`);
      await page.getByText("Nothing deployed yet. An admin deploys").waitFor();
      assert.equal(await page.getByRole("button", { name: "Deploy", exact: true }).count(), 0);
      await refused(page, "POST", "/admin/v1/tenants/acme/deploys", { files: { "plinth.toml": "" } }, 403, "insufficient_role");

      // The data browser: the documents, read-only and live, through a read token.
      const key = await server.serviceKey("acme");
      const putDoc = (id, data) =>
        fetch(`${server.url}/v1/t/acme/collections/notes/docs/${id}`, {
          method: "PUT",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify(data),
        }).then((r) => r.status);
      assert.equal(await putDoc("n1", { title: "first" }), 201);
      assert.equal(await putDoc("n2", { title: "second" }), 201);
      await page.goto(`${server.url}/_/tenants/acme/data/notes`);
      await waitFor(async () => (await byTestId(page, "doc-row").count()) === 2, { message: "the viewer sees the documents" });
      await byTestId(page, "live").and(page.locator('[data-state="live"]')).waitFor();
      assert.equal(await page.getByRole("button", { name: "New document" }).count(), 0);
      await page.getByRole("button", { name: "Open document n1" }).click();
      const editor = byTestId(page, "editor");
      await editor.getByText('"first"').waitFor();
      assert.equal(await editor.getByRole("button", { name: /Save|Delete|Create/ }).count(), 0);
      assert.equal(await editor.locator("textarea").count(), 0, "nothing to edit");
      // A change made elsewhere arrives live.
      assert.equal(await putDoc("n1", { title: "changed elsewhere" }), 200);
      await waitFor(async () => /changed elsewhere/.test(await byTestId(page, "doc-row").filter({ hasText: "n1" }).textContent()), {
        message: "the change shown live",
      });
      await axeCheck(page, "the data page (viewer)");
      await fitsAPhone(page, "the data page (viewer)");
      // The server refuses writes made with the viewer's read token, whatever the page shows.
      const minted = await direct(page, "POST", "/admin/v1/tenants/acme/read-token");
      assert.equal(minted.status, 200, JSON.stringify(minted.body));
      const write = await page.evaluate(async (token) => {
        const r = await fetch("/v1/t/acme/collections/notes/docs/n1", {
          method: "PUT",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ title: "by a viewer" }),
        });
        return { status: r.status, code: (await r.json()).code };
      }, minted.body.token);
      assert.deepEqual([write.status, write.code], [403, "read_only"]);
      await refused(page, "POST", "/admin/v1/tenants/acme/keys", { name: "browse" }, 403, "insufficient_role");

      // The admins page by its address: nothing to act on, and the API agrees.
      await page.goto(`${server.url}/_/admins`);
      await page.getByText("Only an owner sees and manages admins.").waitFor();
      await page.getByText("A viewer makes no API keys.").waitFor();
      assert.equal(await page.getByRole("button", { name: /Add an admin|Invite by mail|Make key/ }).count(), 0);
      await axeCheck(page, "the admins page (viewer)");
      await refused(page, "GET", "/admin/v1/admins", undefined, 403, "insufficient_role");
      await refused(page, "POST", "/admin/v1/admins/invite", { email: "x@example.test", role: "viewer" }, 403, "insufficient_role");
      await refused(page, "POST", "/admin/v1/api-keys", { name: "mine", role: "viewer" }, 403, "insufficient_role");
      assert.deepEqual(pageErrors, []);
    });

    test("a tenant admin sees only their tenants, and the others do not exist for the server", async () => {
      const page = (pages.ta = await signIn(TENANT_ADMIN));
      assert.equal(await byTestId(page, "role").textContent(), "tenant admin");
      await page.getByRole("row", { name: /acme/ }).waitFor();
      assert.equal(await page.getByRole("row", { name: /beta/ }).count(), 0, "beta is not on the overview");

      await page.goto(`${server.url}/_/tenants`);
      await page.getByRole("heading", { name: "Your tenants" }).waitFor();
      const acme = byTestId(page, "tenant-acme");
      await acme.waitFor();
      assert.equal(await byTestId(page, "tenant-beta").count(), 0);
      assert.equal(await page.getByRole("button", { name: "Create tenant" }).count(), 0);
      assert.equal(await acme.getByRole("button", { name: "Rename" }).count(), 1, "a tenant admin renames their tenant");
      for (const name of ["Suspend", "Delete"]) assert.equal(await acme.getByRole("button", { name }).count(), 0, name);
      await axeCheck(page, "the tenants page (tenant admin)");
      await refused(page, "POST", "/admin/v1/tenants", { slug: "sneaky" }, 403, "insufficient_role");
      await refused(page, "POST", "/admin/v1/tenants/acme/suspend", undefined, 403, "insufficient_role");
      await refused(page, "GET", "/admin/v1/tenants/beta", undefined, 404, "tenant_not_found");
      await refused(page, "GET", "/admin/v1/tenants/beta/users", undefined, 404, "tenant_not_found");

      // Another tenant's page by its address: as if it did not exist.
      await page.goto(`${server.url}/_/tenants/beta/users`);
      await page.getByText("Could not find this tenant.").waitFor();

      await page.goto(`${server.url}/_/audit`);
      await page.getByLabel("Tenant").waitFor();
      await waitFor(async () => (await page.getByLabel("Tenant").locator("option").allTextContents()).some((o) => /acme/.test(o)), { message: "acme in the filter" });
      assert.ok(!(await page.getByLabel("Tenant").locator("option").allTextContents()).some((o) => /beta/.test(o)), "no beta in the audit filter");

      // Keys: only tenant_admin keys on their own tenants; the server agrees.
      await page.getByRole("link", { name: "API keys" }).click();
      await page.getByText("Only an owner sees and manages admins.").waitFor();
      const role = page.getByLabel("Role");
      assert.deepEqual(await role.locator("option").allTextContents(), ["Tenant admin"]);
      await page.locator(".tenant-picker label").first().waitFor();
      assert.deepEqual((await page.locator(".tenant-picker label").allTextContents()).map((t) => t.trim()), ["acme"]);
      await axeCheck(page, "the API keys page (tenant admin)");
      await refused(page, "GET", "/admin/v1/admins", undefined, 403, "insufficient_role");
      await refused(page, "POST", "/admin/v1/api-keys", { name: "wide", role: "admin" }, 403, "insufficient_role");
      await page.getByLabel("Key name").fill("acme deploys");
      await page.getByLabel("acme").check();
      await page.getByRole("button", { name: "Make key" }).click();
      await byTestId(page, "key-value").waitFor();
      await page.getByRole("button", { name: "Done" }).click();
      await byTestId(page, "api-key-row").filter({ hasText: "acme deploys" }).waitFor();
      await fitsAPhone(page, "the API keys page");
      assert.deepEqual(pageErrors, []);
    });

    test("an admin manages tenants but not admins", async () => {
      const page = await signIn(ADMIN);
      await page.getByRole("link", { name: "API keys", exact: true }).click();
      await page.getByText("Only an owner sees and manages admins.").waitFor();
      assert.equal(await page.getByRole("button", { name: "Add an admin" }).count(), 0);
      assert.ok(!(await page.getByLabel("Role").locator("option").allTextContents()).includes("Owner"), "no owner keys");
      // The tenant admin's key is theirs: not listed for another admin.
      await page.getByText("No API keys.").waitFor();
      await refused(page, "POST", "/admin/v1/admins", { email: "x@example.test", password: PW, role: "viewer" }, 403, "insufficient_role");
      await refused(page, "POST", "/admin/v1/api-keys", { name: "wide", role: "owner" }, 403, "insufficient_role");
      await page.goto(`${server.url}/_/tenants`);
      await byTestId(page, "tenant-beta").getByRole("button", { name: "Suspend" }).waitFor();
      await page.getByRole("button", { name: "Create tenant" }).waitFor();

      // The owner's page lists every key, the tenant admin's too.
      await pages.owner.reload();
      await byTestId(pages.owner, "api-key-row").filter({ hasText: "acme deploys" }).waitFor();
      assert.deepEqual(pageErrors, []);
    });

    test("a role changed meanwhile: the server refuses, the page follows", async () => {
      // The owner makes the viewer an admin; the viewer's page shows the change once it
      // asks the server again (here: a reload).
      const viewer = (await server.admin("GET", "/admin/v1/admins")).items.find((a) => a.email === VIEWER);
      await server.admin("PATCH", `/admin/v1/admins/${viewer.id}`, { role: "admin" });
      const page = pages.viewer;
      await page.goto(`${server.url}/_/tenants`);
      await byTestId(page, "tenant-acme").getByRole("button", { name: "Rename" }).waitFor();
      assert.equal(await byTestId(page, "role").textContent(), "admin");
      // And back: the open page still shows Rename; the server refuses, the page updates.
      await server.admin("PATCH", `/admin/v1/admins/${viewer.id}`, { role: "viewer" });
      const acme = byTestId(page, "tenant-acme");
      await acme.getByRole("button", { name: "Rename" }).click();
      await acme.getByLabel("New name").fill("Not allowed");
      await acme.getByRole("button", { name: "Save name" }).click();
      await acme.getByRole("alert").getByText("insufficient_role").waitFor();
      await waitFor(async () => (await byTestId(page, "role").textContent()) === "viewer", { message: "the role follows" });
      assert.equal((await server.admin("GET", "/admin/v1/tenants/acme")).name, "acme");
      assert.deepEqual(pageErrors, []);
    });
  });
}
