// Token storage adapters. A storage is `{ get(key), set(key, value), remove(key) }`; each
// method may return a value or a promise. Values are strings.

/** Keeps tokens in memory only (the default): they are gone when the process ends. */
export function memoryStorage() {
  const map = new Map();
  return {
    get: (key) => (map.has(key) ? map.get(key) : null),
    set: (key, value) => {
      map.set(key, value);
    },
    remove: (key) => {
      map.delete(key);
    },
  };
}

/**
 * Keeps tokens in the browser's `localStorage` (or any object with getItem, setItem and
 * removeItem, such as `sessionStorage`), so a session survives page reloads.
 */
export function localStorageAdapter(store = globalThis.localStorage) {
  if (!store || typeof store.getItem !== "function") {
    throw new TypeError("localStorageAdapter: no localStorage available here; pass one explicitly");
  }
  return {
    get: (key) => store.getItem(key),
    set: (key, value) => store.setItem(key, value),
    remove: (key) => store.removeItem(key),
  };
}
