// Evaluated once per sandbox context. It receives the two host bridges and returns the
// invoker; user code reaches the host only through the `ctx` the invoker builds.
// Host answers are JSON envelopes: {"v": value} or {"e": {code, status, message}}.
export default function (host, hostSync) {
  const unwrap = (text) => {
    const r = JSON.parse(text);
    if (r.e) {
      const err = new Error(r.e.message);
      err.name = 'PlinthError';
      err.code = r.e.code;
      err.status = r.e.status;
      throw err;
    }
    return r.v;
  };
  const call = async (op, args) => unwrap(await host(op, JSON.stringify(args)));
  const sync = (op, args) => unwrap(hostSync(op, JSON.stringify(args)));
  const show = (v) => {
    if (typeof v === 'string') return v;
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch {
      return String(v);
    }
  };
  const line = (level) => (...args) => {
    hostSync('log', JSON.stringify([level, args.map(show).join(' ')]));
  };
  const log = Object.freeze({
    info: line('info'),
    warn: line('warn'),
    error: line('error'),
    debug: line('debug'),
  });
  globalThis.console = Object.freeze({
    log: log.info,
    info: log.info,
    warn: log.warn,
    error: log.error,
    debug: log.debug,
  });
  const db = Object.freeze({
    get: (collection, id) => call('db.get', [collection, id]),
    list: (collection, options = {}) => call('db.list', [collection, options]),
    create: (collection, data) => call('db.create', [collection, data]),
    put: (collection, id, data, options = {}) => call('db.put', [collection, id, data, options]),
    patch: (collection, id, patch, options = {}) =>
      call('db.patch', [collection, id, patch, options]),
    increment: (collection, id, field, by = 1, options = {}) =>
      call('db.increment', [collection, id, field, by, options]),
    delete: (collection, id, options = {}) => call('db.delete', [collection, id, options]),
    batch: (writes, options = {}) => call('db.batch', [writes, options]),
  });
  const crypto = Object.freeze({
    hmac: (algorithm, key, data, encoding = 'hex') =>
      sync('crypto.hmac', [algorithm, String(key), String(data), encoding]),
    sha256: (data, encoding = 'hex') => sync('crypto.sha256', [String(data), encoding]),
    randomUUID: () => sync('crypto.randomUUID', []),
    timingSafeEqual: (a, b) => sync('crypto.timingSafeEqual', [String(a), String(b)]),
    base64Encode: (text) => sync('crypto.base64Encode', [String(text)]),
    base64Decode: (b64) => sync('crypto.base64Decode', [String(b64)]),
  });
  return async function invoke(fn, eventJson, envJson) {
    const env = Object.freeze(JSON.parse(envJson));
    const ctx = Object.freeze({ db, log, env, crypto });
    const result = await fn(JSON.parse(eventJson), ctx);
    return JSON.stringify(result === undefined ? null : result);
  };
}
