// Test support: runs the real `plinth` binary on a temporary data directory, creates the
// first admin, tenants, rules, service keys and deploys through the admin API. (It lives
// outside test/ because Node's runner runs every .js file under a test/ folder.)

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../..");
export const BIN = process.env.PLINTH_BIN || path.join(repoRoot, "target/debug/plinth");

const ADMIN_EMAIL = "admin@example.test";
const ADMIN_PASSWORD = "admin-password-1";

/** Polls `check` until it returns a truthy value (returned), or fails after `timeout` ms. */
export async function waitFor(check, { timeout = 10_000, interval = 20, message = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${lastError.message})` : "";
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${why}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

const live = new Set();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export class TestServer {
  constructor({ env, args }) {
    this.env = env;
    this.args = args;
    this.dataDir = mkdtempSync(path.join(tmpdir(), "plinth-js-"));
    this.port = 0;
    this.child = null;
    this.url = null;
    this.adminToken = null;
    this.stderr = "";
  }

  /** Starts a fresh server and creates its first admin. */
  static async start({ env = {}, args = [] } = {}) {
    if (!existsSync(BIN)) throw new Error(`no plinth binary at ${BIN}: run 'cargo build' first (or set PLINTH_BIN)`);
    const server = new TestServer({ env, args });
    const { setupToken } = await server._spawn(true);
    const setup = await server.admin("POST", "/admin/v1/setup", {
      token: setupToken,
      email: ADMIN_EMAIL,
      password: ADMIN_PASSWORD,
    }, { auth: false });
    server.adminToken = setup.access_token;
    return server;
  }

  /** Starts a fresh server without creating an admin: answers {server, setupToken}. */
  static async startWithoutAdmin({ env = {}, args = [] } = {}) {
    if (!existsSync(BIN)) throw new Error(`no plinth binary at ${BIN}: run 'cargo build' first (or set PLINTH_BIN)`);
    const server = new TestServer({ env, args });
    const { setupToken } = await server._spawn(true);
    return { server, setupToken };
  }

  /** Signs in as the first admin that a test made itself (startWithoutAdmin). */
  async signIn(email, password) {
    const r = await this.admin("POST", "/admin/v1/auth/login", { email, password }, { auth: false });
    this.adminToken = r.access_token;
  }

  async _spawn(expectToken) {
    const env = { ...process.env, ...this.env };
    delete env.PLINTH_DATABASE_URL;
    delete env.PLINTH_DATA_DIR;
    delete env.PLINTH_SECRETS_KEY;
    delete env.PLINTH_LISTEN;
    const child = spawn(
      BIN,
      [
        "--data-dir", this.dataDir,
        "serve",
        "--listen", `127.0.0.1:${this.port}`,
        "--login-per-ip-per-minute", "10000",
        "--login-free-failures", "10000",
        "--login-failures-per-account-per-hour", "10000",
        ...this.args,
      ],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child = child;
    live.add(child);
    child.once("exit", () => live.delete(child));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d) => {
      this.stderr = (this.stderr + d).slice(-20_000);
    });
    child.stdout.setEncoding("utf8");
    let buffered = "";
    let addr = null;
    let setupToken = null;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`plinth did not start within 30 s\nstdout: ${buffered}\nstderr: ${this.stderr}`));
      }, 30_000);
      const onExit = (code) => {
        clearTimeout(timer);
        reject(new Error(`plinth exited with ${code} while starting\nstderr: ${this.stderr}`));
      };
      child.once("exit", onExit);
      child.stdout.on("data", (chunk) => {
        buffered += chunk;
        for (const line of buffered.split("\n")) {
          const m = line.match(/^plinth listening on http:\/\/(\S+)/);
          if (m) addr = m[1];
          const t = line.match(/"token":"([^"]+)"/);
          if (t) setupToken = t[1];
        }
        if (addr && (setupToken || !expectToken)) {
          clearTimeout(timer);
          child.off("exit", onExit);
          resolve();
        }
      });
    });
    this.url = `http://${addr}`;
    this.port = Number(addr.split(":").pop());
    return { setupToken };
  }

  /** Stops the server (SIGTERM: sockets are closed with 1001), SIGKILL after 10 s. */
  async stop() {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops and starts the server again on the same data directory and port. */
  async restart() {
    await this.stop();
    await waitFor(async () => {
      try {
        await this._spawn(false);
        return true;
      } catch (e) {
        // The port may linger for a moment; try again until the deadline.
        if (this.child) await this.stop();
        throw e;
      }
    }, { timeout: 20_000, interval: 200, message: "the server to restart" });
  }

  async close() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** An admin API call; resolves to the JSON answer, throws on an error status. */
  async admin(method, urlPath, body, { auth = true, contentType = "application/json" } = {}) {
    const headers = {};
    if (auth) headers.authorization = `Bearer ${this.adminToken}`;
    let payload;
    if (body !== undefined) {
      headers["content-type"] = contentType;
      payload = typeof body === "string" ? body : JSON.stringify(body);
    }
    const res = await fetch(this.url + urlPath, { method, headers, body: payload });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** Creates a tenant and installs its rules (TOML); returns the slug. */
  async tenant(slug, rules) {
    await this.admin("POST", "/admin/v1/tenants", { slug });
    if (rules) await this.admin("PUT", `/admin/v1/tenants/${slug}/rules`, rules, { contentType: "application/toml" });
    return slug;
  }

  async serviceKey(slug) {
    const created = await this.admin("POST", `/admin/v1/tenants/${slug}/keys`, { name: "tests" });
    return created.key;
  }

  async deploy(slug, files) {
    return this.admin("POST", `/admin/v1/tenants/${slug}/deploys`, { files });
  }
}

/** A fetch that records `${method} ${path} ${status}` of every call. */
export function recordingFetch() {
  const calls = [];
  const f = async (url, init = {}) => {
    const res = await fetch(url, init);
    calls.push(`${init.method || "GET"} ${new URL(url).pathname} ${res.status}`);
    return res;
  };
  f.calls = calls;
  return f;
}

/**
 * A WebSocket class that records what the client sends and receives, and lets a test
 * refuse new connections or swallow pongs.
 */
export function spyWebSocket() {
  const Base = globalThis.WebSocket;
  if (typeof Base !== "function") throw new Error("no global WebSocket: run node with --experimental-websocket");
  const spy = { instances: [], sent: [], received: [], dropPongs: false, refuse: false, refused: 0 };
  class SpyWebSocket extends Base {
    constructor(...args) {
      if (spy.refuse) {
        spy.refused++;
        throw new Error("connection refused by the test");
      }
      super(...args);
      this.sentHere = [];
      spy.instances.push(this);
      let handler = null;
      super.onmessage = (ev) => {
        let msg = null;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          // not ours to judge
        }
        if (msg && msg.type === "pong" && spy.dropPongs) return;
        if (msg) spy.received.push(msg);
        if (handler) handler.call(this, ev);
      };
      Object.defineProperty(this, "onmessage", {
        get: () => handler,
        set: (h) => {
          handler = h;
        },
      });
    }

    send(data) {
      const msg = JSON.parse(data);
      spy.sent.push(msg);
      this.sentHere.push(msg);
      super.send(data);
    }
  }
  spy.WebSocket = SpyWebSocket;
  spy.last = () => spy.instances[spy.instances.length - 1];
  spy.sentOf = (type) => spy.sent.filter((m) => m.type === type);
  spy.receivedOf = (type) => spy.received.filter((m) => m.type === type);
  return spy;
}

let counter = 0;
/** A unique email for this process. */
export function email(prefix = "user") {
  counter++;
  return `${prefix}-${process.pid}-${counter}-${Date.now()}@example.test`;
}

export const PASSWORD = "correct-horse-1";
