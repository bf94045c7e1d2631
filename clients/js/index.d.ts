// Type declarations of the Plinth JavaScript client (src/index.js).

/** Where the session (access and refresh token) is kept. Methods may be sync or async. */
export interface TokenStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** Keeps the session in memory (the default). */
export function memoryStorage(): TokenStorage;

/** Keeps the session in `localStorage` (or any Web Storage object), surviving reloads. */
export function localStorageAdapter(store?: {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}): TokenStorage;

/** A minimal `fetch` signature, so any compatible implementation can be passed. */
export type FetchLike = (input: string, init?: any) => Promise<any>;

/** A WebSocket constructor (browsers' and Node's global `WebSocket`, or compatible). */
export type WebSocketLike = new (url: string) => any;

export interface RealtimeOptions {
  /** Milliseconds between client pings (default 25000). */
  pingInterval?: number;
  /** Milliseconds to wait for any message after a ping before reconnecting (default 10000). */
  pongTimeout?: number;
  /** Milliseconds a WebSocket handshake may take (default 10000). */
  connectTimeout?: number;
  /** First reconnect delay in milliseconds, doubled on each failure (default 250). */
  minReconnectDelay?: number;
  /** Largest reconnect delay in milliseconds (default 10000). */
  maxReconnectDelay?: number;
}

export interface ClientOptions {
  /** The server's base URL, e.g. `https://api.example.com`. */
  url: string;
  /** The tenant's slug. */
  tenant: string;
  /** Where to keep the session (default: memory). */
  storage?: TokenStorage;
  /** Storage key of the session (default `plinth:<url>:<tenant>:session`). */
  storageKey?: string;
  /** Default: `globalThis.fetch`. */
  fetch?: FetchLike;
  /** Default: `globalThis.WebSocket` (Node 20: run with `--experimental-websocket`). */
  WebSocket?: WebSocketLike;
  /**
   * A service key (`plk_...`, server side only): sent on document, batch, function and
   * realtime calls, bypassing the rules. Auth calls (`me`, `changePassword`) still use the
   * signed-in user.
   */
  serviceKey?: string;
  /**
   * Refresh the access token shortly before it expires (default true). A request refused
   * with 401 `token_expired` is refreshed and retried once either way.
   */
  autoRefresh?: boolean;
  realtime?: RealtimeOptions;
}

/** An end user, as the server returns it. */
export interface User {
  id: string;
  email: string;
  email_verified: boolean;
  disabled: boolean;
  created_at: string;
  updated_at: string;
}

export interface Session {
  user: User | null;
  accessToken: string;
  refreshToken: string;
  /** When the access token expires, in milliseconds since the epoch (local clock, conservative). */
  expiresAt: number;
}

export type AuthEvent = "INITIAL_SESSION" | "SIGNED_IN" | "SIGNED_OUT" | "TOKEN_REFRESHED" | "USER_UPDATED";

export interface Credentials {
  email: string;
  password: string;
}

export interface Auth {
  /** The current session, or null (also null until the storage has been read: see getSession). */
  readonly session: Session | null;
  /** The signed-in user as last seen, or null. */
  readonly user: User | null;
  /** The current session once the storage has been read. */
  getSession(): Promise<Session | null>;
  /** A valid access token (refreshed first if it is about to expire), or null when signed out. */
  getAccessToken(): Promise<string | null>;
  signUp(credentials: Credentials): Promise<Session>;
  signIn(credentials: Credentials): Promise<Session>;
  /** Ends the session locally at once, then on the server (rejects only on network errors). */
  signOut(): Promise<void>;
  /** Rotates the refresh token now; concurrent calls share one request. */
  refresh(): Promise<Session>;
  /** The signed-in user, from the server. */
  me(): Promise<User>;
  /** Every other session of the user ends; resolves to how many did. */
  changePassword(args: { currentPassword: string; newPassword: string }): Promise<{ revoked_sessions: number }>;
  requestVerification(email: string): Promise<{ status: "accepted" }>;
  confirmVerification(token: string): Promise<{ email_verified: true }>;
  requestPasswordReset(email: string): Promise<{ status: "accepted" }>;
  confirmPasswordReset(args: { token: string; password: string }): Promise<void>;
  /**
   * Called with `INITIAL_SESSION` once the storage is read, then on every change. Returns
   * the function that removes the listener.
   */
  onAuthChange(callback: (session: Session | null, event: AuthEvent) => void): () => void;
}

export type DocumentData = Record<string, unknown>;

/** A stored document, as the server returns it. */
export interface Document<T = DocumentData> {
  id: string;
  collection: string;
  /** 1 on creation, +1 on every write; the ETag. */
  version: number;
  created_at: string;
  updated_at: string;
  data: T;
}

/** A precondition: a version number, a document (its version), or "*" (exists). */
export type IfMatch = number | "*" | string | { version: number };

/** An `AbortSignal` (typed structurally, so neither DOM nor Node types are needed). */
export interface AbortSignalLike {
  readonly aborted: boolean;
}

/** A `URLSearchParams` (typed structurally). */
export interface URLSearchParamsLike {
  append(name: string, value: string): void;
  toString(): string;
}

export interface RequestOptions {
  signal?: AbortSignalLike;
}

export interface WriteOptions extends RequestOptions {
  /** The write applies only at this version (412 `precondition_failed` otherwise). */
  ifMatch?: IfMatch;
}

export interface PutOptions extends WriteOptions {
  /** `"*"` (or true): create only, 412 if the document exists. */
  ifNoneMatch?: "*" | true;
}

/** One JSON Patch operation (RFC 6902) or Plinth's atomic `increment`. */
export type JsonPatchOp =
  | { op: "add" | "replace" | "test"; path: string; value: unknown }
  | { op: "remove"; path: string }
  | { op: "move" | "copy"; from: string; path: string }
  | { op: "increment"; path: string; value: number };

export interface ListOptions extends RequestOptions {
  /** A CEL expression over `doc`, `id`, `version`, `created_at`, `updated_at`, `auth`, `now`. */
  filter?: string;
  /** Fields, `-` for descending: `"-score,created_at"` or `["-score", "created_at"]`. */
  order?: string | string[];
  /** 1..1000, default 50. */
  limit?: number;
  cursor?: string;
}

export interface Page<T = DocumentData> {
  items: Document<T>[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export declare class Collection<T = DocumentData> {
  readonly name: string;
  get(id: string, opts?: RequestOptions): Promise<Document<T>>;
  create(data: T, opts?: RequestOptions): Promise<Document<T>>;
  put(id: string, data: T, opts?: PutOptions): Promise<Document<T>>;
  /** An object is a merge patch (null removes a key); an array is a JSON Patch. */
  patch(id: string, patch: Partial<T> | Record<string, unknown> | JsonPatchOp[], opts?: WriteOptions): Promise<Document<T>>;
  delete(id: string, opts?: WriteOptions): Promise<void>;
  list(opts?: ListOptions): Promise<Page<T>>;
  /** Every page, following the cursor. */
  pages(opts?: ListOptions): AsyncGenerator<Page<T>, void, undefined>;
  /** Every document across all pages. */
  iterate(opts?: ListOptions): AsyncGenerator<Document<T>, void, undefined>;
  [Symbol.asyncIterator](): AsyncGenerator<Document<T>, void, undefined>;
  subscribe(handlers: SubscriptionHandlers<T>): Unsubscribe;
  subscribe(opts: Omit<SubscribeSpec, "collection">, handlers: SubscriptionHandlers<T>): Unsubscribe;
}

export type BatchWrite =
  | { op: "create"; collection: string; id?: string; data: DocumentData }
  | { op: "put"; collection: string; id: string; data: DocumentData; ifMatch?: number | { version: number } }
  | { op: "patch"; collection: string; id: string; patch: DocumentData | JsonPatchOp[]; ifMatch?: number | { version: number } }
  | { op: "delete"; collection: string; id: string; ifMatch?: number | { version: number } };

export interface BatchResult {
  op: "create" | "update" | "delete";
  collection: string;
  id: string;
  version: number;
  /** The write's position in the tenant's change log. */
  seq: number;
  /** The document after the write; null for a delete. */
  doc: Document | null;
}

export interface SubscribeSpec {
  collection: string;
  /** One document only. */
  doc?: string;
  /** A CEL filter, as in list. */
  filter?: string;
  /** Send the current documents first (at most 1000). */
  snapshot?: boolean;
  /** Resume after this seq (e.g. one saved from an earlier run); wins over `snapshot`. */
  since?: number;
}

export type ChangeOp = "create" | "update" | "delete" | "remove";

export interface ChangeEvent<T = DocumentData> {
  /** `remove`: the document left this subscription's view (filter or read rule). */
  op: ChangeOp;
  /** The document; for delete and remove, the last version the subscriber could read. */
  doc: Document<T>;
  seq: number;
}

export interface SnapshotEvent<T = DocumentData> {
  docs: Document<T>[];
  seq: number;
  /** More than 1000 documents matched. */
  truncated: boolean;
}

export interface SubscriptionHandlers<T = DocumentData> {
  change?: (event: ChangeEvent<T>) => void;
  snapshot?: (event: SnapshotEvent<T>) => void;
  /** The subscription ended (rule_denied, invalid_filter, ...): it is not retried. */
  error?: (error: PlinthError) => void;
  /**
   * The server could not resume it from the log (`since_too_old`, `slow_consumer`): the
   * client subscribes again from now (with a new snapshot if one was asked for).
   */
  resync?: (event: { reason: string }) => void;
  /** The server confirmed the subscription (again after each reconnect). */
  subscribed?: (event: { seq: number }) => void;
}

export type Unsubscribe = () => void;

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface Realtime {
  readonly state: ConnectionState;
  onStateChange(callback: (state: ConnectionState) => void): () => void;
  subscribe<T = DocumentData>(spec: SubscribeSpec, handlers: SubscriptionHandlers<T> | ((event: ChangeEvent<T>) => void)): Unsubscribe;
  close(): void;
}

export interface FunctionCallOptions extends RequestOptions {
  /** Default: POST with a body, GET without. */
  method?: string;
  /** Objects and arrays are sent as JSON; strings as text/plain; FormData, URLSearchParams, Blob, ArrayBuffer as they are. */
  body?: unknown;
  query?: Record<string, string | number | boolean | Array<string | number | boolean> | null | undefined> | URLSearchParamsLike;
  headers?: Record<string, string>;
}

export interface FunctionResponse<B = any> {
  status: number;
  ok: boolean;
  /** Response headers, lower-cased names. */
  headers: Record<string, string>;
  /** Parsed JSON when the content type is JSON, else text; null when empty. */
  body: B;
  /** The invocation id (`x-plinth-invocation`), null when not visible (CORS). */
  invocation: string | null;
}

export declare class PlinthClient {
  constructor(options: ClientOptions);
  readonly url: string;
  readonly tenant: string;
  readonly serviceKey: string | null;
  readonly auth: Auth;
  readonly realtime: Realtime;
  collection<T = DocumentData>(name: string): Collection<T>;
  /** Up to 500 writes, all or nothing; a failure's `problem.index` names the write. */
  batch(writes: BatchWrite[], opts?: RequestOptions): Promise<BatchResult[]>;
  /** Calls an HTTP function; resolves whatever status it answers, rejects on platform errors. */
  fn<B = any>(name: string, opts?: FunctionCallOptions): Promise<FunctionResponse<B>>;
  subscribe<T = DocumentData>(spec: SubscribeSpec, handlers: SubscriptionHandlers<T> | ((event: ChangeEvent<T>) => void)): Unsubscribe;
  /** Closes the realtime socket and stops timers; HTTP calls keep working. */
  close(): void;
}

export function createClient(options: ClientOptions): PlinthClient;

export interface ProblemDocument {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  fields?: Record<string, string>;
  [extension: string]: unknown;
}

export declare class PlinthError extends Error {
  /** The HTTP status; 0 when no HTTP answer was received (network) or on realtime errors. */
  readonly status: number;
  /** The stable code: `validation_failed`, `precondition_failed`, `rule_denied`, `network_error`, ... */
  readonly code: string;
  readonly detail: string | null;
  readonly title: string | null;
  readonly type: string | null;
  /** Input errors: field -> what is wrong with it. */
  readonly fields: Record<string, string> | null;
  /** The whole problem document (extension members such as `index`, `errors`, `invocation`). */
  readonly problem: ProblemDocument | null;
  /** The answer's `x-request-id`. */
  readonly requestId: string | null;
  /** True when no HTTP answer was received. */
  readonly isNetworkError: boolean;
  constructor(init: {
    status?: number;
    code: string;
    detail?: string;
    title?: string;
    type?: string;
    fields?: Record<string, string> | null;
    problem?: ProblemDocument | null;
    requestId?: string | null;
    cause?: unknown;
  });
}
