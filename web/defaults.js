// The default of every option, in one place. The client, its subscriptions
// and the helpers in internal.js read their defaults from here and nowhere
// else; README.md's option tables list the same values (test/readme.test.js
// checks that they agree).

/**
 * Freeze an object and every object in it.
 * @template T
 * @param {T} o
 * @returns {Readonly<T>}
 */
function deepFreeze(o) {
  for (const v of Object.values(/** @type {object} */ (o))) if (v !== null && typeof v === 'object') deepFreeze(v);
  return Object.freeze(o);
}

/**
 * The defaults of `new DurableClient(options)` (top level), of its
 * `session` option (`session`), of its `receipts` option (`receipts`), and
 * of `client.subscribe(spec)` (`subscribe`).
 * Frozen: read it, don't change it (pass options instead).
 */
export const DEFAULTS = deepFreeze({
  vhost: '/',
  heartbeatMs: 10000,
  heartbeatWorker: true,
  reconnect: { initialMs: 500, maxMs: 30000 },
  stableMs: 10000,
  connectTimeoutMs: 10000,
  storageKey: 'durablews.tabId',
  queuePrefix: 'tab',
  dedupWindow: 1000,
  duplicateTabCheckMs: 150,
  shared: true,
  session: {
    timeoutMs: 10000,
  },
  receipts: {
    exchange: 'durablews.receipts',
    flushMs: 20,
    maxBatch: 100,
    maxPending: 1000,
  },
  subscribe: {
    bindingKey: '',
    expiresMs: 3600000,
    prefetch: 10,
    retry: { attempts: 3, initialMs: 200, maxMs: 5000 },
    handlerTimeoutMs: 30000,
  },
});
