// Small helpers shared by the modules.

/** Lets a Node timer not keep the process alive; a no-op in browsers. */
export function unref(timer) {
  if (timer && typeof timer === "object" && typeof timer.unref === "function") timer.unref();
  return timer;
}

/** The claims of a JWT (no verification: the server does that), or null. */
export function decodeJwt(token) {
  try {
    const part = String(token).split(".")[1];
    if (!part) return null;
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** Appends a query object to a URL: arrays repeat the key, null/undefined are left out. */
export function withQuery(url, query) {
  if (!query) return url;
  const params = query instanceof URLSearchParams ? new URLSearchParams(query) : new URLSearchParams();
  if (!(query instanceof URLSearchParams)) {
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null) continue;
      if (Array.isArray(v)) for (const item of v) params.append(k, String(item));
      else params.append(k, String(v));
    }
  }
  const qs = params.toString();
  return qs ? `${url}${url.includes("?") ? "&" : "?"}${qs}` : url;
}

export function isJsonContentType(contentType) {
  const mime = (contentType || "").split(";")[0].trim().toLowerCase();
  return mime === "application/json" || (mime.startsWith("application/") && mime.endsWith("+json"));
}

/** Calls a listener, reporting (not propagating) what it throws. */
export function safeCall(fn, ...args) {
  try {
    const r = fn(...args);
    if (r && typeof r.then === "function") r.then(undefined, report);
  } catch (e) {
    report(e);
  }
}

function report(e) {
  // A listener's bug must not break the client's own state machine.
  console.error("plinth: a listener threw:", e);
}
