// The console's one client of the Plinth HTTP API: the admin API (/admin/v1) and, for
// the data browser, the tenant API (/v1/t/{slug}), like any other client.
//
// Authentication lives in `session` alone: the console signs in with the admin session
// cookie (`POST /admin/v1/auth/session`: HttpOnly, SameSite=Strict, so no script can read
// it) and keeps only the answer's CSRF token, in memory; every changing request carries
// it as `X-CSRF-Token`. A reloaded page asks `GET /admin/v1/auth/session` who it is and
// gets the CSRF token again. Every request goes through `call`, which asks `session` for
// credentials and tells it when the server answers 401 (expired or revoked), so pages
// never handle either.

const KEYS_KEY = "plinth.console.keys";

/** A failed request: `status` (0 when the server did not answer), the problem's `code`,
 *  `detail`, and `fields` (input field -> what is wrong with it). */
export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(problem.detail || problem.title || `request failed (${status})`);
    this.status = status;
    this.code = problem.code || (status ? `http_${status}` : "network");
    this.fields = problem.fields || null;
    this.problem = problem;
  }
}

const listeners = new Set();
const store = globalThis.sessionStorage;
const SAFE = new Set(["GET", "HEAD"]);

export const session = {
  /** The session's CSRF token; null when signed out. */
  csrf: null,
  id: null,
  email: null,
  role: null,
  /** A tenant admin's tenants (slugs); empty for every other role. */
  tenants: [],
  /** Whether the server was asked for the session this page may already have. */
  checked: false,
  /** Set when the server refused our credentials; the app asks to sign in again. */
  expired: false,

  get active() {
    return this.csrf !== null;
  },

  get signedIn() {
    return this.active && !this.expired;
  },

  /** Adds this session's credentials to a request's init: the cookie, and the CSRF
   *  token on every request that may change something. */
  authorize(init) {
    init.credentials = "same-origin";
    if (this.csrf && !SAFE.has(init.method)) init.headers["x-csrf-token"] = this.csrf;
  },

  /** Picks up the session of a reloaded page, if the cookie still holds one. */
  async restore() {
    try {
      const r = await call("GET", "/admin/v1/auth/session", { anonymous: true });
      if (r && r.via === "session" && r.csrf_token) this.adopt(r.csrf_token, r.admin);
    } catch {
      // No session (401) or no server: the sign-in page says what to do.
    }
    this.checked = true;
    notify();
  },

  async login(email, password) {
    const r = await call("POST", "/admin/v1/auth/session", { body: { email, password }, anonymous: true });
    this.adopt(r.csrf_token, r.admin);
  },

  /** Accepts an admin invitation (the mailed link's token): sets the password and signs in. */
  async acceptInvite(token, password) {
    const r = await call("POST", "/admin/v1/auth/invite", { body: { token, password }, anonymous: true });
    this.adopt(r.csrf_token, r.admin);
  },

  adopt(csrf, who) {
    this.csrf = csrf;
    this.id = who?.id ?? null;
    this.email = who?.email ?? null;
    this.role = who?.role ?? null;
    this.tenants = who?.tenants ?? [];
    this.expired = false;
    notify();
  },

  /**
   * Whether the signed-in admin's role allows `what`, so the console hides what the
   * server would refuse anyway (the server checks every request; this is only manners):
   * "write" (any change: not a viewer), "platform" (create, delete, suspend tenants:
   * owners and admins), "owner" (managing admins).
   */
  can(what) {
    const r = this.role;
    if (what === "owner") return r === "owner";
    if (what === "platform") return r === "owner" || r === "admin";
    if (what === "write") return r !== null && r !== "viewer";
    return false;
  },

  /** Asks the server who we are again: a role changed meanwhile shows at once. */
  async refresh() {
    try {
      const r = await call("GET", "/admin/v1/auth/session", { anonymous: true });
      if (r && r.via === "session" && r.csrf_token && this.active) this.adopt(r.csrf_token, r.admin);
    } catch {
      // The next request says whether the session still holds.
    }
  },

  async logout() {
    // The service keys this tab made for the data browser go with the session.
    const keys = serviceKeys();
    await Promise.allSettled(
      Object.entries(keys).map(([slug, k]) => call("DELETE", `/admin/v1/tenants/${enc(slug)}/keys/${enc(k.id)}`)),
    );
    await call("DELETE", "/admin/v1/auth/session").catch(() => {});
    this.forget();
  },

  forget() {
    this.csrf = null;
    this.id = null;
    this.email = null;
    this.role = null;
    this.tenants = [];
    this.expired = false;
    store.removeItem(KEYS_KEY);
    readTokens.clear();
    notify();
  },

  /** The server answered 401 to our credentials. */
  refused() {
    if (this.active && !this.expired) {
      this.expired = true;
      notify();
    }
  },

  onChange(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};

function notify() {
  for (const fn of listeners) fn();
}

export const enc = encodeURIComponent;

function withQuery(path, query) {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function problemOf(res) {
  let problem = {};
  try {
    problem = await res.json();
  } catch {
    problem = { detail: `${res.status} ${res.statusText}` };
  }
  return new ApiError(res.status, problem);
}

/**
 * One request. `body` is sent as JSON unless a string with `contentType`; `bearer`
 * replaces the session's credentials (the tenant API's service key); `anonymous` sends
 * none. With `full`, answers {data, status, headers}.
 */
export async function call(method, path, { body, query, headers = {}, contentType, anonymous, bearer, full } = {}) {
  const init = { method, headers: { accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["content-type"] = contentType || "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  if (bearer) init.headers.authorization = `Bearer ${bearer}`;
  else if (!anonymous) session.authorize(init);
  let res;
  try {
    res = await fetch(withQuery(path, query), init);
  } catch (e) {
    throw new ApiError(0, { detail: `the server did not answer (${e.message})` });
  }
  if (!res.ok) {
    const err = await problemOf(res);
    if (res.status === 401 && !anonymous && !bearer) session.refused();
    // Refused for the role the page believed we had: the role may have changed.
    if (res.status === 403 && err.code === "insufficient_role" && !bearer) session.refresh();
    throw err;
  }
  const type = res.headers.get("content-type") || "";
  const data = res.status === 204 ? null : type.includes("json") ? await res.json() : await res.text();
  return full ? { data, status: res.status, headers: res.headers } : data;
}

// ---- the admin API ----------------------------------------------------------------------

const t = (slug) => `/admin/v1/tenants/${enc(slug)}`;

export const admin = {
  setup: (token, email, password) =>
    call("POST", "/admin/v1/setup", { body: { token, email, password }, anonymous: true }),
  server: () => call("GET", "/admin/v1/server"),
  tenants: () => call("GET", "/admin/v1/tenants"),
  tenant: (slug) => call("GET", t(slug)),
  createTenant: (slug, name) => call("POST", "/admin/v1/tenants", { body: { slug, name } }),
  updateTenant: (slug, patch) => call("PATCH", t(slug), { body: patch }),
  deleteTenant: (slug) => call("DELETE", t(slug)),
  suspend: (slug) => call("POST", `${t(slug)}/suspend`),
  resume: (slug) => call("POST", `${t(slug)}/resume`),
  /** Per day by default; `{ granularity: "hour", hours }` per hour. */
  usage: (slug, { granularity, days, hours } = {}) => call("GET", `${t(slug)}/usage`, { query: { granularity, days, hours } }),
  collections: (slug) => call("GET", `${t(slug)}/collections`),
  readToken: (slug) => call("POST", `${t(slug)}/read-token`),
  users: (slug, { search, cursor, limit } = {}) => call("GET", `${t(slug)}/users`, { query: { search, cursor, limit } }),
  user: (slug, id) => call("GET", `${t(slug)}/users/${enc(id)}`),
  /** `body`: {email, password?, verified?}; without a password the user has none. */
  createUser: (slug, body) => call("POST", `${t(slug)}/users`, { body }),
  disableUser: (slug, id) => call("POST", `${t(slug)}/users/${enc(id)}/disable`),
  enableUser: (slug, id) => call("POST", `${t(slug)}/users/${enc(id)}/enable`),
  verifyUser: (slug, id) => call("POST", `${t(slug)}/users/${enc(id)}/verify`),
  revokeSessions: (slug, id) => call("POST", `${t(slug)}/users/${enc(id)}/revoke-sessions`),
  deleteUser: (slug, id) => call("DELETE", `${t(slug)}/users/${enc(id)}`),
  createKey: (slug, name) => call("POST", `${t(slug)}/keys`, { body: { name } }),
  keys: (slug) => call("GET", `${t(slug)}/keys`),
  revokeKey: (slug, id) => call("DELETE", `${t(slug)}/keys/${enc(id)}`),
  secrets: (slug) => call("GET", `${t(slug)}/secrets`),
  putSecret: (slug, name, value) => call("PUT", `${t(slug)}/secrets/${enc(name)}`, { body: { value } }),
  deleteSecret: (slug, name) => call("DELETE", `${t(slug)}/secrets/${enc(name)}`),
  rules: (slug) => call("GET", `${t(slug)}/rules`),
  installRules: (slug, source) => call("PUT", `${t(slug)}/rules`, { body: source, contentType: "application/toml" }),
  validateRules: (slug, source) => call("POST", `${t(slug)}/rules/validate`, { body: source, contentType: "application/toml" }),
  ruleVersions: (slug) => call("GET", `${t(slug)}/rules/versions`),
  activateRules: (slug, version) => call("POST", `${t(slug)}/rules/versions/${enc(String(version))}/activate`),
  testRules: (slug, rules, cases) => call("POST", `${t(slug)}/rules/test`, { body: { rules, cases } }),
  explainRule: (slug, collection, id, { op, uid } = {}) =>
    call("GET", `${t(slug)}/collections/${enc(collection)}/docs/${enc(id)}/explain`, { query: { op, uid } }),
  deploys: (slug) => call("GET", `${t(slug)}/deploys`),
  deploy: (slug, files) => call("POST", `${t(slug)}/deploys`, { body: { files } }),
  activate: (slug, version) => call("POST", `${t(slug)}/deploys/${enc(version)}/activate`),
  invocations: (slug, { function: fn, cursor, limit } = {}) =>
    call("GET", `${t(slug)}/invocations`, { query: { function: fn, cursor, limit } }),
  jobs: (slug, { state, cursor, limit } = {}) => call("GET", `${t(slug)}/jobs`, { query: { state, cursor, limit } }),
  retryJob: (slug, id) => call("POST", `${t(slug)}/jobs/${enc(id)}/retry`),
  audit: ({ tenant, cursor, limit } = {}) => call("GET", "/admin/v1/audit", { query: { tenant, cursor, limit } }),
  admins: () => call("GET", "/admin/v1/admins"),
  addAdmin: (body) => call("POST", "/admin/v1/admins", { body }),
  /** `body`: {email, role, tenants}; the invitee gets a one-time link by mail. */
  invite: (body) => call("POST", "/admin/v1/admins/invite", { body }),
  invites: () => call("GET", "/admin/v1/admins/invite"),
  withdrawInvite: (id) => call("DELETE", `/admin/v1/admins/invite/${enc(id)}`),
  updateAdmin: (id, patch) => call("PATCH", `/admin/v1/admins/${enc(id)}`, { body: patch }),
  removeAdmin: (id) => call("DELETE", `/admin/v1/admins/${enc(id)}`),
  apiKeys: () => call("GET", "/admin/v1/api-keys"),
  createApiKey: (body) => call("POST", "/admin/v1/api-keys", { body }),
  revokeApiKey: (id) => call("DELETE", `/admin/v1/api-keys/${enc(id)}`),
};

// ---- the tenant API, through a service key or a read token ------------------------------
//
// Admin tokens are for /admin/v1 only, so the data browser reads and writes documents as
// the tenant's service caller, through a service key it makes for this tab (named after
// the admin, listed with the tenant's keys) and revokes at logout. A viewer makes no
// keys: their browser reads with a read token instead (POST .../read-token: minutes
// long, kept in memory only, refused for every write by the server).

function serviceKeys() {
  try {
    return JSON.parse(store.getItem(KEYS_KEY) || "{}");
  } catch {
    return {};
  }
}

async function serviceKey(slug, fresh = false) {
  const keys = serviceKeys();
  if (keys[slug] && !fresh) return keys[slug].key;
  const made = await admin.createKey(slug, `console: ${session.email || "admin"} ${new Date().toISOString()}`);
  keys[slug] = { id: made.id, key: made.key };
  store.setItem(KEYS_KEY, JSON.stringify(keys));
  return made.key;
}

const readTokens = new Map();

/** A read token for `slug` with at least a minute left (a fresh one when `fresh`). */
async function readToken(slug, fresh = false) {
  const held = readTokens.get(slug);
  if (held && !fresh && held.until > Date.now() + 60_000) return held.token;
  const r = await admin.readToken(slug);
  readTokens.set(slug, { token: r.token, until: Date.now() + r.expires_in * 1000 });
  return r.token;
}

/** The credential this admin uses on tenant `slug`'s API: a viewer's read token, or
 *  everyone else's service key. */
const credential = (slug, fresh = false) => (session.can("write") ? serviceKey(slug, fresh) : readToken(slug, fresh));

/** A request to tenant `slug`'s API (a revoked key or expired token is replaced once). */
async function tenantCall(slug, method, path, opts = {}) {
  const url = `/v1/t/${enc(slug)}${path}`;
  try {
    return await call(method, url, { ...opts, bearer: await credential(slug) });
  } catch (e) {
    if (e.status !== 401) throw e;
    return call(method, url, { ...opts, bearer: await credential(slug, true) });
  }
}

const docPath = (c, id) => `/collections/${enc(c)}/docs${id === undefined ? "" : `/${enc(id)}`}`;
const ifMatch = (version) => (version === undefined ? {} : { "if-match": `"${version}"` });

export const tenantApi = (slug) => ({
  list: (collection, { filter, order, cursor, limit } = {}) =>
    tenantCall(slug, "GET", docPath(collection), { query: { filter, order, cursor, limit } }),
  get: (collection, id) => tenantCall(slug, "GET", docPath(collection, id)),
  create: (collection, data) => tenantCall(slug, "POST", docPath(collection), { body: data }),
  put: (collection, id, data, version) =>
    tenantCall(slug, "PUT", docPath(collection, id), { body: data, headers: ifMatch(version) }),
  remove: (collection, id, version) => tenantCall(slug, "DELETE", docPath(collection, id), { headers: ifMatch(version) }),
  /** Asks the tenant to mail a password reset link to `email` (its public route). */
  requestReset: (email) =>
    call("POST", `/v1/t/${enc(slug)}/auth/reset/request`, { body: { email }, anonymous: true }),
  /** Asks the tenant to mail an email verification link to `email` (its public route,
   *  which answers alike whether or not the address is registered). */
  requestVerification: (email) =>
    call("POST", `/v1/t/${enc(slug)}/auth/verify/request`, { body: { email }, anonymous: true }),
  /** A realtime socket, authenticated with the service key or read token. A read
   *  token's subscriptions end when it expires (`token_expired`): connect again. */
  async realtime() {
    const key = await credential(slug);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/v1/t/${enc(slug)}/realtime`);
    ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", token: key })));
    return ws;
  },
});
