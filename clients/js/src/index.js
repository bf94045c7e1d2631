// Plinth JavaScript client: a dependency-free ES module for browsers and Node 20+.

export { createClient, PlinthClient } from "./client.js";
export { PlinthError } from "./errors.js";
export { memoryStorage, localStorageAdapter } from "./storage.js";
export { Collection } from "./documents.js";
