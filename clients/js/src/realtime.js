// One multiplexed WebSocket per client: opened on the first subscription, closed after the
// last one ends. Reconnects with backoff and resumes every subscription after the last
// seq it delivered, so nothing is lost or repeated; swaps refreshed tokens in place.

import { PlinthError } from "./errors.js";
import { safeCall, unref } from "./util.js";

const OPEN = 1;

const DEFAULTS = {
  pingInterval: 25_000, // client ping (the server closes sockets silent for 60 s)
  pongTimeout: 10_000, // no answer this long after a ping: the connection is dead
  connectTimeout: 10_000, // a handshake taking longer is abandoned
  minReconnectDelay: 250,
  maxReconnectDelay: 10_000,
};

function wsError(code, message) {
  return new PlinthError({ status: 0, code, detail: message });
}

export class Realtime {
  constructor(client, opts = {}) {
    this._client = client;
    this._WS = opts.WebSocket;
    this._opts = {
      pingInterval: opts.pingInterval ?? DEFAULTS.pingInterval,
      pongTimeout: opts.pongTimeout ?? DEFAULTS.pongTimeout,
      connectTimeout: opts.connectTimeout ?? DEFAULTS.connectTimeout,
      minReconnectDelay: opts.minReconnectDelay ?? DEFAULTS.minReconnectDelay,
      maxReconnectDelay: opts.maxReconnectDelay ?? DEFAULTS.maxReconnectDelay,
    };
    this._subs = new Map(); // id -> subscription
    this._nextId = 1;
    this._ws = null;
    this._gen = 0; // bumped whenever a connection attempt is abandoned
    this._phase = "idle"; // idle | connecting | authenticating | ready
    this._socketToken = null; // the token the socket speaks with (null: anonymous)
    this._authRetried = false;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._state = "closed"; // what listeners see: connecting | open | reconnecting | closed
    this._stateListeners = new Set();
    this._unlistenAuth = client.auth._onInternal((session, event) => this._onAuth(session, event));
  }

  /** The connection state: "connecting", "open", "reconnecting" or "closed". */
  get state() {
    return this._state;
  }

  /** Calls `callback(state)` when the connection state changes; returns the remover. */
  onStateChange(callback) {
    this._stateListeners.add(callback);
    return () => this._stateListeners.delete(callback);
  }

  subscribe(spec, handlers = {}) {
    if (!spec || typeof spec.collection !== "string" || !spec.collection) {
      throw new TypeError("subscribe: spec.collection is required");
    }
    if (typeof handlers === "function") handlers = { change: handlers };
    const id = `s${this._nextId++}`;
    const sub = {
      id,
      collection: spec.collection,
      doc: spec.doc ?? null,
      filter: spec.filter ?? null,
      snapshot: !!spec.snapshot,
      lastSeq: Number.isInteger(spec.since) ? spec.since : null,
      handlers,
      sent: false, // a subscribe message for it is on this socket
    };
    this._subs.set(id, sub);
    if (this._phase === "ready") this._sendSubscribe(sub);
    else this._ensureConnected();
    return () => this._unsubscribe(id);
  }

  /** Closes the socket and ends every subscription. */
  close() {
    this._subs.clear();
    this._shutdown();
  }

  // ---- connection ------------------------------------------------------------------------

  _ensureConnected() {
    if (this._phase !== "idle" || this._reconnectTimer) return;
    this._connect();
  }

  async _connect() {
    const gen = ++this._gen;
    this._phase = "connecting";
    this._setState(this._attempt > 0 ? "reconnecting" : "connecting");
    try {
      // Refreshes a stale access token first (the socket then reads the session).
      await this._token();
    } catch {
      // The session could not be refreshed (and is cleared if it is over): connect
      // anonymously; subscriptions the rules refuse report rule_denied.
    }
    if (gen !== this._gen || this._phase !== "connecting") return; // abandoned meanwhile
    if (this._subs.size === 0) {
      this._phase = "idle";
      this._setState("closed");
      return;
    }
    const WS = this._WS ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      this._phase = "idle";
      this._setState("closed");
      const err = wsError("websocket_unavailable", "no WebSocket implementation: pass options.WebSocket (Node 20: run with --experimental-websocket)");
      for (const sub of [...this._subs.values()]) this._fail(sub, err);
      return;
    }
    let ws;
    try {
      ws = new WS(this._client._wsUrl());
    } catch {
      this._phase = "idle";
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._socketToken = null;
    this._authRetried = false;
    for (const sub of this._subs.values()) sub.sent = false;
    ws.onopen = () => {
      if (ws !== this._ws) return;
      this._clearConnectTimer();
      this._startPing();
      // The session may have been refreshed, started or ended while connecting.
      const token = this._client.serviceKey || this._client.auth._session?.accessToken || null;
      if (token) {
        this._phase = "authenticating";
        this._socketToken = token;
        this._send({ type: "auth", token });
      } else {
        this._ready();
      }
    };
    ws.onmessage = (ev) => {
      if (ws !== this._ws) return;
      this._activity();
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data));
      } catch {
        return;
      }
      this._onMessage(msg);
    };
    ws.onclose = () => {
      if (ws !== this._ws) return;
      this._dropSocket();
      this._scheduleReconnect();
    };
    ws.onerror = () => {
      // An open socket gets a close event next; a handshake that failed may not (undici
      // in Node 20 fires only `error`), so that one is given up here.
      if (ws !== this._ws || ws.readyState === OPEN) return;
      this._dropSocket();
      this._scheduleReconnect();
    };
    // A handshake that hangs (a black-holed network) is given up too.
    this._connectTimer = unref(
      setTimeout(() => {
        if (ws !== this._ws || ws.readyState === OPEN) return;
        this._dropSocket();
        this._scheduleReconnect();
      }, this._opts.connectTimeout),
    );
  }

  /** The credential for the socket: the service key, or the user's fresh access token. */
  async _token() {
    if (this._client.serviceKey) return this._client.serviceKey;
    return this._client.auth._userCredential();
  }

  _ready() {
    this._phase = "ready";
    this._attempt = 0;
    this._setState("open");
    this._client.auth._setKeepFresh(!this._client.serviceKey && !!this._socketToken);
    for (const sub of this._subs.values()) if (!sub.sent) this._sendSubscribe(sub);
  }

  _dropSocket() {
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    this._clearConnectTimer();
    this._phase = "idle";
    this._socketToken = null;
    this._stopPing();
    this._client.auth._setKeepFresh(false);
    for (const sub of this._subs.values()) sub.sent = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
  }

  _clearConnectTimer() {
    if (this._connectTimer) clearTimeout(this._connectTimer);
    this._connectTimer = null;
  }

  _scheduleReconnect() {
    if (this._subs.size === 0) {
      this._setState("closed");
      return;
    }
    if (this._reconnectTimer) return;
    const { minReconnectDelay: min, maxReconnectDelay: max } = this._opts;
    const base = Math.min(max, min * 2 ** this._attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this._attempt++;
    this._setState("reconnecting");
    // Not unref'd: while subscriptions wait for the server, a Node process stays up
    // (close() or the last unsubscribe ends that).
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._phase === "idle" && this._subs.size > 0) this._connect();
    }, delay);
  }

  /** Drops the socket for good (no reconnect). */
  _shutdown() {
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._attempt = 0;
    this._dropSocket();
    this._setState("closed");
  }

  /** Reconnects at once (e.g. after sign-out, to drop the user's identity). */
  _reconnectNow() {
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._dropSocket();
    this._attempt = 0;
    if (this._subs.size > 0) this._connect();
    else this._setState("closed");
  }

  _send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    for (const cb of [...this._stateListeners]) safeCall(cb, state);
  }

  // ---- keepalive ------------------------------------------------------------------------

  _startPing() {
    this._stopPing();
    this._pingTimer = unref(
      setInterval(() => {
        if (this._pongTimer) return;
        if (!this._send({ type: "ping" })) return;
        this._pongTimer = unref(
          setTimeout(() => {
            // No answer: the connection is dead even if no close event came.
            this._pongTimer = null;
            this._dropSocket();
            this._scheduleReconnect();
          }, this._opts.pongTimeout),
        );
      }, this._opts.pingInterval),
    );
  }

  _activity() {
    if (this._pongTimer) clearTimeout(this._pongTimer);
    this._pongTimer = null;
  }

  _stopPing() {
    if (this._pingTimer) clearInterval(this._pingTimer);
    if (this._pongTimer) clearTimeout(this._pongTimer);
    this._pingTimer = this._pongTimer = null;
  }

  // ---- auth on the socket ---------------------------------------------------------------

  _onAuth(session, event) {
    if (this._client.serviceKey || !this._ws) return;
    if (event === "SIGNED_OUT") {
      // The socket still speaks for the user: start over anonymously.
      this._reconnectNow();
      return;
    }
    if ((event === "TOKEN_REFRESHED" || event === "SIGNED_IN") && session && session.accessToken !== this._socketToken) {
      if (this._phase === "ready" || this._phase === "authenticating") {
        // Live token swap: the server re-checks subscriptions with the new token.
        this._socketToken = session.accessToken;
        this._send({ type: "auth", token: session.accessToken });
        this._client.auth._setKeepFresh(true);
      }
    }
  }

  async _onAuthError(code) {
    const gen = this._gen;
    const used = this._socketToken;
    if (code === "token_expired" && used && !this._authRetried) {
      this._authRetried = true;
      try {
        const fresh = await this._client.auth._afterExpired(used);
        if (gen === this._gen && fresh) {
          this._socketToken = fresh;
          this._send({ type: "auth", token: fresh });
          return;
        }
      } catch {
        // fall through: anonymous
      }
    } else if (code === "session_revoked" && used) {
      // Signs out if this is the current session; SIGNED_OUT then reconnects anonymously.
      await this._client.auth._afterRevoked(used);
    }
    if (gen !== this._gen) return; // the socket was replaced meanwhile
    if (this._phase === "authenticating") {
      this._socketToken = null;
      this._ready();
    }
  }

  // ---- subscriptions --------------------------------------------------------------------

  _sendSubscribe(sub) {
    const msg = { type: "subscribe", id: sub.id, collection: sub.collection };
    if (sub.doc !== null) msg.doc = sub.doc;
    if (sub.filter !== null) msg.filter = sub.filter;
    if (sub.lastSeq !== null) msg.since = sub.lastSeq;
    else if (sub.snapshot) msg.snapshot = true;
    sub.sent = this._send(msg);
  }

  _unsubscribe(id) {
    const sub = this._subs.get(id);
    if (!sub) return;
    this._subs.delete(id);
    if (sub.sent && this._phase === "ready") this._send({ type: "unsubscribe", id });
    if (this._subs.size === 0) this._shutdown();
  }

  /** Ends a subscription with an error (the server no longer serves it). */
  _fail(sub, err) {
    this._subs.delete(sub.id);
    if (sub.handlers.error) safeCall(sub.handlers.error, err);
    else console.warn(`plinth: subscription to '${sub.collection}' ended: ${err.code}: ${err.message}`);
    if (this._subs.size === 0) this._shutdown();
  }

  _onMessage(msg) {
    const sub = typeof msg.id === "string" ? this._subs.get(msg.id) : undefined;
    switch (msg.type) {
      case "authenticated":
        if (this._phase === "authenticating") this._ready();
        return;
      case "pong":
        return;
      case "subscribed":
        if (!sub) return;
        if (Number.isInteger(msg.seq) && (sub.lastSeq === null || msg.seq > sub.lastSeq)) sub.lastSeq = msg.seq;
        if (sub.handlers.subscribed) safeCall(sub.handlers.subscribed, { seq: msg.seq });
        return;
      case "snapshot":
        if (!sub) return;
        if (Number.isInteger(msg.seq) && (sub.lastSeq === null || msg.seq > sub.lastSeq)) sub.lastSeq = msg.seq;
        if (sub.handlers.snapshot) safeCall(sub.handlers.snapshot, { docs: msg.docs, seq: msg.seq, truncated: !!msg.truncated });
        return;
      case "change":
        if (!sub) return;
        if (sub.lastSeq !== null && msg.seq <= sub.lastSeq) return; // already delivered
        sub.lastSeq = msg.seq;
        if (sub.handlers.change) safeCall(sub.handlers.change, { op: msg.op, doc: msg.doc, seq: msg.seq });
        return;
      case "resync":
        if (!sub) return;
        // The log cannot resume it: start it over (with a fresh snapshot if asked for one).
        sub.lastSeq = null;
        sub.sent = false;
        if (sub.handlers.resync) safeCall(sub.handlers.resync, { reason: msg.reason });
        if (msg.reason !== "slow_consumer" && this._phase === "ready") this._sendSubscribe(sub);
        return;
      case "error": {
        const code = msg.error && msg.error.code;
        const message = (msg.error && msg.error.message) || code;
        if (msg.id === undefined || msg.id === null) {
          if (code === "invalid_token" || code === "token_expired" || code === "session_revoked") this._onAuthError(code);
          return;
        }
        if (!sub) return;
        if (code === "token_expired") {
          // The token it depended on expired on the server before we swapped it: refresh,
          // then pick up where it left off.
          sub.sent = false;
          this._resubscribeAfterExpiry(sub);
          return;
        }
        this._fail(sub, wsError(code || "unknown", message));
        return;
      }
      default:
        return;
    }
  }

  async _resubscribeAfterExpiry(sub) {
    try {
      const used = this._socketToken;
      const fresh = used ? await this._client.auth._afterExpired(used) : null;
      if (!fresh) throw wsError("token_expired", "signed out: the subscription needed the user's token");
      if (fresh !== this._socketToken && this._ws) {
        this._socketToken = fresh;
        this._send({ type: "auth", token: fresh });
      }
      if (this._subs.get(sub.id) === sub && this._phase === "ready" && !sub.sent) this._sendSubscribe(sub);
    } catch (e) {
      if (this._subs.get(sub.id) === sub) this._fail(sub, e instanceof PlinthError ? e : wsError("token_expired", String(e)));
    }
  }
}
