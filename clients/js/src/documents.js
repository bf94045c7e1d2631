// Collections of JSON documents: CRUD, conditional writes, patches, paged lists.

import { PlinthError } from "./errors.js";

/** An If-Match / If-None-Match value: a version number, a document, "*", or an ETag string. */
export function etagOf(value, header) {
  if (value === "*" || value === true) return "*";
  if (typeof value === "number" && Number.isInteger(value)) return `"${value}"`;
  if (value && typeof value === "object" && Number.isInteger(value.version)) return `"${value.version}"`;
  if (typeof value === "string" && /^\d+$/.test(value)) return `"${value}"`;
  if (typeof value === "string" && value) return value;
  throw new TypeError(`${header} must be a version number, a document, or "*"`);
}

function conditions(opts) {
  const headers = {};
  if (opts && opts.ifMatch !== undefined && opts.ifMatch !== null) headers["if-match"] = etagOf(opts.ifMatch, "ifMatch");
  if (opts && opts.ifNoneMatch !== undefined && opts.ifNoneMatch !== null && opts.ifNoneMatch !== false) {
    headers["if-none-match"] = etagOf(opts.ifNoneMatch, "ifNoneMatch");
  }
  return headers;
}

function listQuery(opts = {}) {
  const order = Array.isArray(opts.order) ? opts.order.join(",") : opts.order;
  return { filter: opts.filter, order, limit: opts.limit, cursor: opts.cursor };
}

function segment(value, what) {
  if (typeof value !== "string" || value === "") throw new TypeError(`${what} must be a non-empty string`);
  return encodeURIComponent(value);
}

export class Collection {
  constructor(client, name) {
    this._client = client;
    segment(name, "collection name");
    this.name = name;
  }

  _path(id) {
    const base = `/collections/${segment(this.name, "collection name")}/docs`;
    return id === undefined ? base : `${base}/${segment(id, "document id")}`;
  }

  /** The document, or a PlinthError `document_not_found` (404) / `rule_denied` (403). */
  get(id, opts = {}) {
    return this._client._request("GET", this._path(id), { signal: opts.signal });
  }

  /** Creates a document with a server-assigned id (UUIDv7). */
  create(data, opts = {}) {
    return this._client._request("POST", this._path(), { body: data, signal: opts.signal });
  }

  /**
   * Creates or replaces the document `id`. `ifMatch` (a version, a document or "*") and
   * `ifNoneMatch: "*"` make it conditional (412 `precondition_failed`).
   */
  put(id, data, opts = {}) {
    return this._client._request("PUT", this._path(id), { body: data, headers: conditions(opts), signal: opts.signal });
  }

  /**
   * Patches the document: an object is a JSON merge patch (RFC 7396, null removes a key),
   * an array a JSON Patch (RFC 6902 plus `{op: "increment", path, value}`).
   */
  patch(id, patch, opts = {}) {
    let contentType;
    if (Array.isArray(patch)) contentType = "application/json-patch+json";
    else if (patch && typeof patch === "object") contentType = "application/merge-patch+json";
    else throw new TypeError("patch must be an object (merge patch) or an array (JSON Patch)");
    return this._client._request("PATCH", this._path(id), {
      body: patch,
      contentType,
      headers: conditions(opts),
      signal: opts.signal,
    });
  }

  /** Deletes the document (`ifMatch` makes it conditional). */
  async delete(id, opts = {}) {
    await this._client._request("DELETE", this._path(id), { headers: conditions(opts), signal: opts.signal });
  }

  /** One page: `{ items, nextCursor }` (nextCursor is null on the last page). */
  async list(opts = {}) {
    const page = await this._client._request("GET", this._path(), { query: listQuery(opts), signal: opts.signal });
    return { items: page.items, nextCursor: page.next_cursor ?? null };
  }

  /** Every page, following the cursor: `for await (const page of notes.pages({...}))`. */
  async *pages(opts = {}) {
    let cursor = opts.cursor ?? null;
    do {
      const page = await this.list({ ...opts, cursor: cursor ?? undefined });
      yield page;
      if (page.nextCursor !== null && page.nextCursor === cursor) {
        throw new PlinthError({ code: "invalid_cursor", detail: "the server returned the same cursor twice" });
      }
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** Every matching document across all pages: `for await (const doc of notes.iterate({...}))`. */
  async *iterate(opts = {}) {
    for await (const page of this.pages(opts)) yield* page.items;
  }

  /** `for await (const doc of client.collection("notes"))`: every readable document. */
  [Symbol.asyncIterator]() {
    return this.iterate();
  }

  /** Realtime changes of this collection; see PlinthClient.subscribe. */
  subscribe(opts, handlers) {
    if (handlers === undefined) {
      handlers = opts;
      opts = {};
    }
    return this._client.subscribe({ ...opts, collection: this.name }, handlers);
  }
}

/** Maps the client's batch write shape (camelCase accepted) to the server's. */
export function batchWrite(w) {
  if (!w || typeof w !== "object") throw new TypeError("each batch write must be an object");
  const out = { op: w.op, collection: w.collection };
  if (w.id !== undefined) out.id = w.id;
  if (w.data !== undefined) out.data = w.data;
  if (w.patch !== undefined) out.patch = w.patch;
  const ifMatch = w.ifMatch ?? w.if_match;
  if (ifMatch !== undefined && ifMatch !== null) {
    const v = typeof ifMatch === "object" ? ifMatch.version : Number(ifMatch);
    if (!Number.isInteger(v)) throw new TypeError("ifMatch of a batch write must be a version number or a document");
    out.if_match = v;
  }
  return out;
}
