// End-user auth: sessions, rotating refresh tokens, and keeping the access token fresh.

import { PlinthError } from "./errors.js";
import { decodeJwt, safeCall, unref } from "./util.js";

const MAX_MARGIN_MS = 30_000;

/** How long before expiry a token counts as stale: 30 s, or a quarter of a short lifetime. */
function marginOf(s) {
  return Math.min(MAX_MARGIN_MS, Math.max(0, s.lifetime) / 4);
}

function isStale(s, now = Date.now()) {
  return now >= s.expiresAt - marginOf(s);
}

/** The client's session from a server Session answer (`expires_in` is clock-skew free). */
function fromDto(dto) {
  const claims = decodeJwt(dto.access_token);
  let lifetime;
  if (typeof dto.expires_in === "number") lifetime = dto.expires_in * 1000;
  else if (claims && typeof claims.exp === "number" && typeof claims.iat === "number") lifetime = (claims.exp - claims.iat) * 1000;
  else lifetime = 0;
  // The server truncates `iat` to the second, so the token may die up to a second
  // before `now + lifetime`: count that second as gone already.
  const slack = Math.min(1000, lifetime / 2);
  return {
    accessToken: dto.access_token,
    refreshToken: dto.refresh_token,
    user: dto.user ?? null,
    expiresAt: Date.now() + lifetime - slack,
    lifetime,
  };
}

function parseStored(raw) {
  if (raw === null || raw === undefined || raw === "") return null;
  try {
    const v = typeof raw === "string" ? JSON.parse(raw) : raw;
    if (v && typeof v.accessToken === "string" && typeof v.refreshToken === "string") {
      return {
        accessToken: v.accessToken,
        refreshToken: v.refreshToken,
        user: v.user ?? null,
        expiresAt: Number(v.expiresAt) || 0,
        lifetime: Number(v.lifetime) || 0,
      };
    }
  } catch {
    // unreadable: treat as signed out
  }
  return null;
}

function publicSession(s) {
  return s ? { user: s.user, accessToken: s.accessToken, refreshToken: s.refreshToken, expiresAt: s.expiresAt } : null;
}

/** Codes of a refresh answer that mean the session is over for good. */
const SESSION_OVER = new Set(["invalid_refresh_token", "refresh_token_reused", "session_revoked", "user_disabled"]);

export class Auth {
  constructor(client, { storage, storageKey, autoRefresh }) {
    this._client = client;
    this._storage = storage;
    this._key = storageKey;
    this._autoRefresh = autoRefresh;
    this._session = null;
    this._refreshing = null;
    this._listeners = new Set();
    this._internal = new Set();
    this._keepFresh = false;
    this._timer = null;
    this._loaded = Promise.resolve()
      .then(() => this._storage.get(this._key))
      .then(
        (raw) => {
          // A sign-in that finished before the storage answered wins.
          if (!this._session) this._session = parseStored(raw);
        },
        () => {},
      );
  }

  // ---- public API ----------------------------------------------------------------------

  /** The current session, or null; null until the storage has been read (see getSession). */
  get session() {
    return publicSession(this._session);
  }

  /** The signed-in user as last seen (signIn, signUp, refresh, me), or null. */
  get user() {
    return this._session ? this._session.user : null;
  }

  /** The current session once the storage has been read. */
  async getSession() {
    await this._loaded;
    return publicSession(this._session);
  }

  /** A valid access token (refreshed first when it is about to expire), or null when signed out. */
  async getAccessToken() {
    return this._userCredential();
  }

  async signUp({ email, password }) {
    const dto = await this._client._request("POST", "/auth/signup", { body: { email, password }, auth: false });
    return this._signedIn(dto);
  }

  async signIn({ email, password }) {
    const dto = await this._client._request("POST", "/auth/login", { body: { email, password }, auth: false });
    return this._signedIn(dto);
  }

  /**
   * Ends the session: locally at once (so it works offline), then on the server. Throws
   * only a network error (the local session is gone anyway).
   */
  async signOut() {
    await this._loaded;
    const s = this._session;
    if (!s) return;
    await this._clear("SIGNED_OUT");
    await this._logoutOnServer(s.refreshToken);
  }

  /**
   * Trades the refresh token for a new pair now. Concurrent calls share one request, so a
   * refresh token is never presented twice.
   */
  async refresh() {
    return publicSession(await this._refresh());
  }

  /** The signed-in user, read from the server (also updates `user`). */
  async me() {
    const user = await this._client._request("GET", "/auth/me", { auth: "user" });
    const s = this._session;
    if (s && s.user?.id === user.id && JSON.stringify(s.user) !== JSON.stringify(user)) {
      this._session = { ...this._session, user };
      await this._persist();
      this._emit("USER_UPDATED");
    }
    return user;
  }

  /** Changes the password; every other session of the user ends. */
  async changePassword({ currentPassword, newPassword }) {
    return this._client._request("POST", "/auth/password", {
      body: { current_password: currentPassword, new_password: newPassword },
      auth: "user",
    });
  }

  async requestVerification(email) {
    return this._client._request("POST", "/auth/verify/request", { body: { email }, auth: false });
  }

  async confirmVerification(token) {
    return this._client._request("POST", "/auth/verify/confirm", { body: { token }, auth: false });
  }

  async requestPasswordReset(email) {
    return this._client._request("POST", "/auth/reset/request", { body: { email }, auth: false });
  }

  async confirmPasswordReset({ token, password }) {
    await this._client._request("POST", "/auth/reset/confirm", { body: { token, password }, auth: false });
  }

  /**
   * Calls `callback(session, event)` on every change: `INITIAL_SESSION` once the storage is
   * read, then `SIGNED_IN`, `SIGNED_OUT`, `TOKEN_REFRESHED`, `USER_UPDATED`. Returns a
   * function that removes the listener.
   */
  onAuthChange(callback) {
    const entry = { callback };
    this._listeners.add(entry);
    this._loaded.then(() => {
      if (this._listeners.has(entry)) safeCall(callback, publicSession(this._session), "INITIAL_SESSION");
    });
    return () => {
      this._listeners.delete(entry);
    };
  }

  // ---- internals used by the client and realtime ------------------------------------

  /** Listener for the client's own modules, called before the public ones. */
  _onInternal(fn) {
    this._internal.add(fn);
    return () => this._internal.delete(fn);
  }

  /** While true (an open realtime socket), the token is refreshed ahead of expiry by a timer. */
  _setKeepFresh(on) {
    this._keepFresh = on;
    this._schedule();
  }

  /** The user's access token, refreshed if stale; null when signed out. */
  async _userCredential() {
    await this._loaded;
    const s = this._session;
    if (!s) return null;
    if (this._autoRefresh && isStale(s)) {
      try {
        const fresh = await this._refresh();
        return fresh.accessToken;
      } catch (e) {
        // Offline: the old token may still be accepted (the server allows a little
        // leeway); if not, the request fails and says why.
        if (e instanceof PlinthError && e.isNetworkError && this._session?.refreshToken === s.refreshToken) return s.accessToken;
        throw e;
      }
    }
    return s.accessToken;
  }

  /** After a 401 token_expired for `usedToken`: a newer token, refreshing unless someone already did. */
  async _afterExpired(usedToken) {
    await this._loaded;
    const s = this._session;
    if (!s) return null;
    if (s.accessToken !== usedToken) return s.accessToken;
    const fresh = await this._refresh();
    return fresh.accessToken;
  }

  /** After a 401 session_revoked for `usedToken`: the session is over. */
  async _afterRevoked(usedToken) {
    if (this._session && this._session.accessToken === usedToken) await this._clear("SIGNED_OUT");
  }

  _refresh() {
    if (this._refreshing) return this._refreshing;
    // Browsers: tabs sharing the storage take turns (Web Locks), and each re-reads the
    // storage inside the lock, so two tabs never present the same refresh token.
    const locks = globalThis.navigator?.locks;
    const run =
      locks && typeof locks.request === "function"
        ? () => locks.request(`plinth-refresh:${this._key}`, () => this._doRefresh())
        : () => this._doRefresh();
    const p = run().finally(() => {
      if (this._refreshing === p) this._refreshing = null;
    });
    this._refreshing = p;
    return p;
  }

  async _doRefresh() {
    await this._loaded;
    // Another tab (sharing localStorage) may have rotated the token already: adopt its
    // session rather than present a spent refresh token (which would end the session).
    let stored = null;
    try {
      stored = parseStored(await this._storage.get(this._key));
    } catch {
      // unreadable storage: go on with the session in memory
    }
    if (stored && this._session && stored.refreshToken !== this._session.refreshToken) {
      this._session = stored;
      if (!isStale(stored)) {
        this._emit("TOKEN_REFRESHED");
        this._schedule();
        return this._session;
      }
    }
    const s = this._session;
    if (!s) throw new PlinthError({ status: 401, code: "auth_required", detail: "not signed in" });
    let dto;
    try {
      dto = await this._client._request("POST", "/auth/refresh", { body: { refresh_token: s.refreshToken }, auth: false });
    } catch (e) {
      if (e instanceof PlinthError && SESSION_OVER.has(e.code) && this._session?.refreshToken === s.refreshToken) {
        await this._clear("SIGNED_OUT");
      }
      throw e;
    }
    if (this._session?.refreshToken !== s.refreshToken) {
      // Signed out, or signed in again, while the refresh was in flight: the new tokens
      // belong to a session nobody uses now; end it on the server.
      this._logoutOnServer(dto.refresh_token).catch(() => {});
      if (!this._session) throw new PlinthError({ status: 401, code: "auth_required", detail: "signed out during refresh" });
      return this._session;
    }
    await this._setSession(fromDto(dto), "TOKEN_REFRESHED");
    return this._session;
  }

  async _logoutOnServer(refreshToken) {
    try {
      await this._client._request("POST", "/auth/logout", { body: { refresh_token: refreshToken }, auth: false });
    } catch (e) {
      // An already ended session is what we wanted.
      if (!(e instanceof PlinthError) || e.isNetworkError) throw e;
    }
  }

  async _signedIn(dto) {
    await this._loaded;
    const previous = this._session;
    await this._setSession(fromDto(dto), "SIGNED_IN");
    // The session this one replaces would otherwise live on, unused, on the server.
    if (previous) this._logoutOnServer(previous.refreshToken).catch(() => {});
    return publicSession(this._session);
  }

  async _setSession(session, event) {
    this._session = session;
    await this._persist();
    this._emit(event);
    this._schedule();
  }

  async _clear(event) {
    this._session = null;
    this._schedule();
    try {
      await this._storage.remove(this._key);
    } catch {
      // storage failures must not block signing out
    }
    this._emit(event);
  }

  async _persist() {
    const s = this._session;
    if (!s) return;
    await this._storage.set(this._key, JSON.stringify(s));
  }

  _emit(event) {
    const pub = publicSession(this._session);
    for (const fn of this._internal) safeCall(fn, pub, event);
    for (const { callback } of [...this._listeners]) safeCall(callback, pub, event);
  }

  /** (Re)arms the proactive refresh timer. */
  _schedule(retryDelay) {
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    const s = this._session;
    if (!this._keepFresh || !this._autoRefresh || !s) return;
    const delay = retryDelay ?? Math.max(0, s.expiresAt - marginOf(s) - Date.now());
    this._timer = unref(
      setTimeout(() => {
        this._timer = null;
        this._refresh().then(
          () => this._schedule(),
          (e) => {
            // Offline: try again soon; a session that is over stays signed out.
            if (e instanceof PlinthError && e.isNetworkError) this._schedule(Math.min(5000, Math.max(250, marginOf(s) / 2)));
          },
        );
      }, delay),
    );
  }

  _close() {
    this._setKeepFresh(false);
  }
}
