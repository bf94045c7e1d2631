// The client: configuration, the HTTP plumbing (auth headers, token refresh and retry,
// problem+json errors), and the entry points to auth, documents, realtime and functions.

import { Auth } from "./auth.js";
import { Collection, batchWrite } from "./documents.js";
import { PlinthError, errorFromResponse, networkError } from "./errors.js";
import { Realtime } from "./realtime.js";
import { memoryStorage } from "./storage.js";
import { isJsonContentType, withQuery } from "./util.js";

export class PlinthClient {
  constructor(options = {}) {
    const { url, tenant, storage, fetch, WebSocket, serviceKey, autoRefresh = true, storageKey, realtime = {} } = options;
    if (typeof url !== "string" || !/^https?:\/\//i.test(url)) throw new TypeError("createClient: url must be an http(s) URL");
    if (typeof tenant !== "string" || !tenant) throw new TypeError("createClient: tenant (the tenant's slug) is required");
    this.url = url.replace(/\/+$/, "");
    this.tenant = tenant;
    this.serviceKey = serviceKey ?? null;
    const f = fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("createClient: no fetch available; pass options.fetch");
    // Called unbound: browsers refuse `fetch` invoked on another object.
    this._fetchImpl = fetch ? fetch : (input, init) => globalThis.fetch(input, init);
    this.auth = new Auth(this, {
      storage: storage ?? memoryStorage(),
      storageKey: storageKey ?? `plinth:${this.url}:${tenant}:session`,
      autoRefresh,
    });
    this.realtime = new Realtime(this, { WebSocket: WebSocket ?? null, ...realtime });
  }

  /** A collection of documents. */
  collection(name) {
    return new Collection(this, name);
  }

  /**
   * Up to 500 writes, all or nothing. Each write is `{op: "create"|"put"|"patch"|"delete",
   * collection, id?, data?, patch?, ifMatch?}`. Resolves to the per-write results
   * (`{op, collection, id, version, seq, doc}`); a failed write rejects with a PlinthError
   * whose `problem.index` names it.
   */
  async batch(writes, opts = {}) {
    if (!Array.isArray(writes)) throw new TypeError("batch: writes must be an array");
    const res = await this._request("POST", "/batch", { body: { writes: writes.map(batchWrite) }, signal: opts.signal });
    return res.results;
  }

  /**
   * Calls the HTTP function `name` (`name/sub/path` for a sub-path). Resolves to
   * `{status, ok, headers, body, invocation}` whatever status the function chose; rejects
   * with a PlinthError when the platform answers instead of the function
   * (function_not_found, function_error, function_timeout, auth errors, ...).
   */
  async fn(name, opts = {}) {
    if (typeof name !== "string" || !name) throw new TypeError("fn: name is required");
    const path = "/fn/" + name.split("/").map(encodeURIComponent).join("/");
    const method = (opts.method ?? (opts.body === undefined ? "GET" : "POST")).toUpperCase();
    const headers = { ...lowerKeys(opts.headers) };
    let body = opts.body;
    let json = false;
    if (body !== undefined && body !== null && !isRawBody(body)) {
      if (typeof body === "string") {
        if (!headers["content-type"]) headers["content-type"] = "text/plain; charset=utf-8";
      } else {
        json = true;
      }
    }
    const res = await this._send(method, path, { query: opts.query, headers, body, json, signal: opts.signal });
    const invocation = res.headers.get("x-plinth-invocation");
    const contentType = res.headers.get("content-type") || "";
    // Platform answers (no function ran, or it failed) carry no invocation header and are
    // problem documents; a function's own answers, whatever their status, are returned.
    if (!res.ok && !invocation && /^application\/problem\+json/i.test(contentType)) throw await errorFromResponse(res);
    const text = await res.text();
    let parsed = text === "" ? null : text;
    if (text !== "" && isJsonContentType(contentType)) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    const outHeaders = {};
    res.headers.forEach((v, k) => {
      outHeaders[k] = v;
    });
    return { status: res.status, ok: res.ok, headers: outHeaders, body: parsed, invocation };
  }

  /**
   * Live changes over the client's WebSocket. `spec`: `{collection, doc?, filter?,
   * snapshot?, since?}`; `handlers`: `{change, snapshot, error, resync, subscribed}`.
   * Returns the function that ends the subscription.
   */
  subscribe(spec, handlers) {
    return this.realtime.subscribe(spec, handlers);
  }

  /** Closes the realtime socket and stops timers; HTTP calls keep working. */
  close() {
    this.realtime.close();
    this.auth._close();
  }

  // ---- HTTP plumbing ---------------------------------------------------------------------

  /** Sends a request and decodes the answer: JSON body, undefined for 204, PlinthError otherwise. */
  async _request(method, path, opts = {}) {
    const res = await this._send(method, path, { ...opts, json: opts.body !== undefined });
    if (!res.ok) throw await errorFromResponse(res);
    if (res.status === 204) return undefined;
    const text = await res.text();
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new PlinthError({ status: res.status, code: "invalid_response", detail: "the answer is not JSON", cause: e });
    }
  }

  /**
   * Sends a request with the right credentials; on 401 `token_expired` refreshes and retries
   * once; on 401 `session_revoked` ends the local session. Returns the Response.
   * opts.auth: "default" (service key, else the user), "user" (the user only), false (none).
   */
  async _send(method, path, opts = {}) {
    const url = withQuery(`${this.url}/v1/t/${encodeURIComponent(this.tenant)}${path}`, opts.query);
    const headers = { ...(opts.headers || {}) };
    let body = opts.body;
    if (opts.json) {
      body = JSON.stringify(body);
      if (!headers["content-type"]) headers["content-type"] = opts.contentType || "application/json";
    }
    const mode = opts.auth === undefined ? "default" : opts.auth;
    let userToken = null;
    if (headers.authorization) {
      // The caller's own Authorization header (fn) is sent as it is.
    } else if (mode === "default" && this.serviceKey) {
      headers.authorization = `Bearer ${this.serviceKey}`;
    } else if (mode) {
      userToken = await this.auth._userCredential();
      if (userToken) headers.authorization = `Bearer ${userToken}`;
    }
    const init = { method, headers, body, signal: opts.signal };
    let res = await this._fetch(url, init);
    if (res.status === 401 && userToken) {
      const code = await problemCode(res);
      if (code === "token_expired") {
        const fresh = await this.auth._afterExpired(userToken);
        if (fresh) {
          headers.authorization = `Bearer ${fresh}`;
          res = await this._fetch(url, init);
        }
      } else if (code === "session_revoked") {
        await this.auth._afterRevoked(userToken);
      }
    }
    return res;
  }

  async _fetch(url, init) {
    try {
      return await this._fetchImpl(url, init);
    } catch (e) {
      if (e && (e.name === "AbortError" || e.name === "TimeoutError")) throw e;
      throw networkError(e);
    }
  }

  _wsUrl() {
    return `${this.url.replace(/^http/i, "ws")}/v1/t/${encodeURIComponent(this.tenant)}/realtime`;
  }
}

async function problemCode(res) {
  try {
    const p = await res.clone().json();
    return p && typeof p.code === "string" ? p.code : null;
  } catch {
    return null;
  }
}

function lowerKeys(h) {
  const out = {};
  if (!h) return out;
  const entries = typeof h.forEach === "function" && !Array.isArray(h) && typeof h.entries === "function" ? [...h.entries()] : Object.entries(h);
  for (const [k, v] of entries) out[String(k).toLowerCase()] = String(v);
  return out;
}

function isRawBody(b) {
  return (
    (typeof FormData !== "undefined" && b instanceof FormData) ||
    (typeof URLSearchParams !== "undefined" && b instanceof URLSearchParams) ||
    (typeof Blob !== "undefined" && b instanceof Blob) ||
    b instanceof ArrayBuffer ||
    ArrayBuffer.isView(b) ||
    (typeof ReadableStream !== "undefined" && b instanceof ReadableStream)
  );
}

/** Creates a client for one tenant of a Plinth server. */
export function createClient(options) {
  return new PlinthClient(options);
}
