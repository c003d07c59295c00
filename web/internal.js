// Pure helpers for durablews.js. No DOM, no network, no timers: everything here
// is deterministic given its inputs (randomness is injected) and is unit-tested
// with `node --test test/`.

import { DEFAULTS } from './defaults.js';

/** Upper bound for prefetch-count; a browser tab has no business holding more. */
export const MAX_PREFETCH = 1000;
/** RabbitMQ's limit for queue names, in UTF-8 bytes. */
export const MAX_QUEUE_NAME_BYTES = 255;

const NAME_RE = /^[A-Za-z0-9_.-]+$/;
const TAB_ID_RE = /^[a-z0-9]{8,64}$/;

/**
 * Exponential back-off with full jitter ("AWS full jitter"):
 * delay = random() * min(maxMs, initialMs * 2^(attempt-1)).
 *
 * @param {number} attempt  1 for the first retry, 2 for the second, ...
 * @param {{initialMs?: number, maxMs?: number}} [opts]
 * @param {() => number} [random]  returns a number in [0, 1)
 * @returns {number} delay in whole milliseconds, 0 <= delay <= maxMs
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const initialMs = opts.initialMs ?? DEFAULTS.reconnect.initialMs;
  const maxMs = opts.maxMs ?? DEFAULTS.reconnect.maxMs;
  const n = Math.max(1, Math.floor(attempt));
  // 2^(n-1) overflows to Infinity for large n; Math.min takes care of it.
  const cap = Math.min(maxMs, initialMs * Math.pow(2, n - 1));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * cap);
}

/**
 * A bounded set of recently seen message ids. Oldest ids are evicted first
 * (insertion order; re-adding an id refreshes it).
 */
export class DedupWindow {
  /** @param {number} size maximum number of ids remembered (0 disables) */
  constructor(size = DEFAULTS.dedupWindow) {
    if (!Number.isInteger(size) || size < 0) {
      throw new TypeError(`dedupWindow must be a non-negative integer, got ${size}`);
    }
    this.size = size;
    /** @type {Map<string, true>} */
    this._ids = new Map();
  }

  /** @param {string|undefined} id @returns {boolean} */
  has(id) {
    return id !== undefined && id !== '' && this._ids.has(id);
  }

  /** Remember id (no-op for empty ids or size 0). @param {string|undefined} id */
  add(id) {
    if (id === undefined || id === '' || this.size === 0) return;
    this._ids.delete(id);
    this._ids.set(id, true);
    while (this._ids.size > this.size) {
      this._ids.delete(this._ids.keys().next().value);
    }
  }

  /** Forget every id. */
  clear() {
    this._ids.clear();
  }

  /** The ids, oldest first (what {@link DedupWindow#load} takes back). @returns {string[]} */
  ids() {
    return [...this._ids.keys()];
  }

  /**
   * Add ids saved by {@link DedupWindow#ids}, oldest first; anything that is
   * not an array of non-empty strings is ignored (storage written by another
   * version, or by hand).
   * @param {unknown} ids
   */
  load(ids) {
    if (!Array.isArray(ids)) return;
    for (const id of ids) if (typeof id === 'string') this.add(id);
  }

  get length() {
    return this._ids.size;
  }
}

/**
 * Create a random tab id: 26 lowercase base32 characters (130 bits of which 128
 * are random). Only [a-z2-7], so it is safe in queue names and never contains
 * the '-' separator.
 *
 * @param {(buf: Uint8Array) => Uint8Array} [getRandomValues]
 *   defaults to crypto.getRandomValues (available in insecure contexts too,
 *   unlike crypto.randomUUID)
 */
export function generateTabId(getRandomValues) {
  const fill = getRandomValues ?? ((b) => globalThis.crypto.getRandomValues(b));
  const bytes = fill(new Uint8Array(16));
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** @param {unknown} id @returns {boolean} */
export function isValidTabId(id) {
  return typeof id === 'string' && TAB_ID_RE.test(id);
}

/**
 * Derive the per-tab queue name `<prefix>-<tabId>-<name>`.
 *
 * @param {string} prefix  e.g. 'tab' or 'tab-alice' ([A-Za-z0-9_.-])
 * @param {string} tabId   see generateTabId
 * @param {string} name    subscription name ([A-Za-z0-9_.-])
 * @returns {string}
 * @throws {TypeError} on invalid characters or a name longer than 255 bytes
 */
export function queueName(prefix, tabId, name) {
  if (typeof prefix !== 'string' || !NAME_RE.test(prefix)) {
    throw new TypeError(`queuePrefix must match ${NAME_RE}, got ${JSON.stringify(prefix)}`);
  }
  if (prefix.startsWith('amq.')) {
    throw new TypeError(`queuePrefix must not start with "amq." (reserved by RabbitMQ)`);
  }
  if (!isValidTabId(tabId)) {
    throw new TypeError(`invalid tab id ${JSON.stringify(tabId)}`);
  }
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new TypeError(`subscription name must match ${NAME_RE}, got ${JSON.stringify(name)}`);
  }
  const q = `${prefix}-${tabId}-${name}`;
  // All characters are ASCII, so length === UTF-8 bytes.
  if (q.length > MAX_QUEUE_NAME_BYTES) {
    throw new TypeError(`queue name ${q.slice(0, 40)}... is ${q.length} bytes, max ${MAX_QUEUE_NAME_BYTES}`);
  }
  return q;
}

/**
 * Escape one path segment of a RabbitMQ STOMP destination: the server only
 * unescapes "%2F" (to '/'), so '/' is the only character that needs escaping.
 * @param {string} s
 */
function escapeSegment(s) {
  return s.replace(/\//g, '%2F');
}

/**
 * STOMP destination for an exchange subscription: `/exchange/<exchange>/<bindingKey>`.
 * An empty bindingKey (fanout) gives `/exchange/<exchange>`.
 * @param {string} exchange
 * @param {string} [bindingKey]
 */
export function exchangeDestination(exchange, bindingKey = '') {
  if (typeof exchange !== 'string' || exchange === '') {
    throw new TypeError('exchange must be a non-empty string');
  }
  if (typeof bindingKey !== 'string') {
    throw new TypeError('bindingKey must be a string');
  }
  if (/[\r\n]/.test(exchange + bindingKey)) {
    throw new TypeError('exchange and bindingKey must not contain line breaks');
  }
  const base = `/exchange/${escapeSegment(exchange)}`;
  return bindingKey === '' ? base : `${base}/${escapeSegment(bindingKey)}`;
}

/**
 * @typedef {object} SubscribeSpec
 * @property {string} exchange      durable exchange the Go side publishes to (must exist)
 * @property {string} [bindingKey]  e.g. 'customer.42.#' ('' for fanout)
 * @property {string} name          subscription name, part of the queue name
 * @property {number} [expiresMs]   x-expires of the queue (default 3600000)
 * @property {number} [prefetch]    prefetch-count (default 10, 1..1000)
 */

/**
 * Normalise and validate a subscription spec. Returns a frozen object.
 * @param {SubscribeSpec} spec
 */
export function normalizeSpec(spec) {
  if (spec === null || typeof spec !== 'object') {
    throw new TypeError('subscribe() needs an options object');
  }
  const expiresMs = spec.expiresMs ?? DEFAULTS.subscribe.expiresMs;
  if (!Number.isInteger(expiresMs) || expiresMs < 1 || expiresMs > 2 ** 31 - 1) {
    throw new TypeError(`expiresMs must be an integer in 1..${2 ** 31 - 1}, got ${expiresMs}`);
  }
  const prefetch = spec.prefetch ?? DEFAULTS.subscribe.prefetch;
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > MAX_PREFETCH) {
    throw new TypeError(`prefetch must be an integer in 1..${MAX_PREFETCH}, got ${prefetch}`);
  }
  const bindingKey = spec.bindingKey ?? DEFAULTS.subscribe.bindingKey;
  const destination = exchangeDestination(spec.exchange, bindingKey);
  if (typeof spec.name !== 'string' || !NAME_RE.test(spec.name)) {
    throw new TypeError(`subscription name must match ${NAME_RE}, got ${JSON.stringify(spec.name)}`);
  }
  return Object.freeze({
    exchange: spec.exchange,
    bindingKey,
    name: spec.name,
    expiresMs,
    prefetch,
    destination,
  });
}

/**
 * SUBSCRIBE headers for a durable per-tab queue. Every value is a string, and
 * the result depends only on (spec, queue name), so it is identical across
 * reconnects (a changed x-expires would make RabbitMQ close the connection with
 * PRECONDITION_FAILED). `destination` is included; stompjs takes it separately.
 *
 * `exclusive: 'false'` is what keeps the queue when the tab is away: RabbitMQ 4.x
 * makes an `/exchange/` subscription's queue exclusive (deleted with the
 * connection) unless the frame says otherwise, even with `durable` and
 * `auto-delete: false`; 3.10 ignores the header and keeps it either way
 * (measured on 3.10.8, 4.0.5, 4.3.6; rabbitmq-server#13009).
 *
 * @param {ReturnType<typeof normalizeSpec>} spec
 * @param {string} queue  see queueName()
 * @returns {Record<string, string>}
 */
export function subscribeHeaders(spec, queue) {
  return {
    destination: spec.destination,
    id: queue,
    'x-queue-name': queue,
    durable: 'true',
    'auto-delete': 'false',
    exclusive: 'false',
    'x-expires': String(spec.expiresMs),
    ack: 'client-individual',
    'prefetch-count': String(spec.prefetch),
  };
}

/**
 * The id used for de-duplication: `amqp-message-id` (the Watermill UUID set as
 * AMQP message_id by the Go publisher), falling back to Watermill's
 * `_watermill_message_uuid` header. Undefined if neither is present; such
 * messages are never treated as duplicates.
 * @param {Record<string, string>} headers
 * @returns {string|undefined}
 */
export function messageKey(headers) {
  const id = headers['amqp-message-id'] || headers['_watermill_message_uuid'];
  return id ? id : undefined;
}

/**
 * Decide what to do when a tab-id claim arrives on the BroadcastChannel
 * (duplicated-tab detection). Tabs with the same id are duplicates (Chrome
 * "Duplicate tab" copies sessionStorage). The tab that owns the id answers
 * 'taken'; if both are still claiming, the lower nonce wins.
 *
 * @param {{tabId: string, nonce: string, owned: boolean}} me
 * @param {{tabId: string, nonce: string}} claim  the other tab's claim
 * @returns {'ignore'|'reply-taken'|'yield'}
 *   'reply-taken': tell the other tab to pick a new id;
 *   'yield': this tab must pick a new id itself.
 */
export function onClaim(me, claim) {
  if (claim.tabId !== me.tabId || claim.nonce === me.nonce) return 'ignore';
  if (me.owned) return 'reply-taken';
  return me.nonce < claim.nonce ? 'reply-taken' : 'yield';
}

/**
 * Normalizes a subscribe() spec in tab-session mode: only name, prefetch (and
 * onError, handled by the caller). The queue, its bindings and its arguments
 * are the server's (see ClientOptions.session), so exchange, bindingKey and
 * expiresMs are refused rather than silently ignored.
 * @param {any} spec
 */
export function normalizeSessionSpec(spec) {
  if (spec === null || typeof spec !== 'object') {
    throw new TypeError('subscribe() needs an options object');
  }
  for (const k of ['exchange', 'bindingKey', 'expiresMs']) {
    if (spec[k] !== undefined) {
      throw new TypeError(`subscribe(): ${k} is not used in tab-session mode (the server declares and binds the queue; pass bindings in the session option)`);
    }
  }
  const prefetch = spec.prefetch ?? DEFAULTS.subscribe.prefetch;
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > MAX_PREFETCH) {
    throw new TypeError(`prefetch must be an integer in 1..${MAX_PREFETCH}, got ${prefetch}`);
  }
  if (typeof spec.name !== 'string' || !NAME_RE.test(spec.name)) {
    throw new TypeError(`subscription name must match ${NAME_RE}, got ${JSON.stringify(spec.name)}`);
  }
  return Object.freeze({ name: spec.name, prefetch, session: true });
}

/**
 * SUBSCRIBE headers in tab-session mode: the server-declared queue's
 * destination, an explicit stable id, client-individual acks and a prefetch.
 * Nothing that declares (no x-queue-name, durable, x-expires): the token has no
 * configure permission, and RabbitMQ 3.10.8 answers a refused SUBSCRIBE by
 * closing the socket.
 * @param {{name: string, prefetch: number}} spec
 * @param {string} destination  `/amq/queue/<queue>` from the session response
 * @returns {Record<string, string>}
 */
export function sessionSubscribeHeaders(spec, destination) {
  return {
    destination,
    id: `durablews-${spec.name}`,
    ack: 'client-individual',
    'prefetch-count': String(spec.prefetch),
  };
}

/**
 * Whether a failed session request is final: 4xx (401 log in again, 403 not
 * allowed, 400/405/415 a client or deployment bug) except 408 and 429. 5xx,
 * network errors and malformed responses are retried with back-off.
 * @param {number} status  HTTP status, 0 for a network error
 */
export function sessionErrorIsFatal(status) {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

/** Major version of the tab-session JSON this client understands (the `v` field). */
export const SESSION_VERSION = 1;

/**
 * @typedef {object} ParsedSession
 * @property {string} tabId
 * @property {string} url
 * @property {string[]} urls     every node's Web-STOMP URL (`urls`), else [url]
 * @property {Map<string, {destination: string, start: StreamPosition|undefined}>} streams
 *   the streams this session grants (`streams: [{name, destination, start?}]`)
 * @property {string} vhost
 * @property {string} queue
 * @property {string} destination
 * @property {string} token
 * @property {number} expiresAt   ms since the epoch (NaN if absent)
 * @property {number} renewInMs
 * @property {boolean} queueCreated
 * @property {{tabId: string, queue: string, destination: string}[]} tabs  a shared-mode
 *   leader's session: the other tabs whose queues its token reads too (`tabs`)
 * @property {string[]} missingTabs  the requested tabs without a queue (`missing_tabs`)
 * @property {{destination: string, userKey: string}|null} receipts  where this tab
 *   sends its delivery receipts (`receipts: {destination, user_key}`), null without
 */

/**
 * Checks a 200 session response (see the Go package tabsession) and
 * returns the fields the client uses. Throws a TypeError naming the bad field.
 * @param {any} s
 * @returns {ParsedSession}
 */
export function parseSession(s) {
  if (s === null || typeof s !== 'object') throw new TypeError('tab session response is not a JSON object');
  // No v: a server from before the field existed, same contract as v 1.
  if (s.v !== undefined && s.v !== SESSION_VERSION) {
    const err = new TypeError(
      `tab session response has version ${JSON.stringify(s.v)}, this client understands version ${SESSION_VERSION}: ` +
        'deploy the @durablews/web release that matches the server (or pin the server to version 1)',
    );
    // @ts-ignore a marker for the caller: retrying cannot help
    err.unsupportedVersion = true;
    throw err;
  }
  const str = (k) => {
    if (typeof s[k] !== 'string' || s[k] === '') throw new TypeError(`tab session response: ${k} missing or not a string`);
    return s[k];
  };
  const tabId = str('tab_id');
  if (!TAB_ID_RE.test(tabId)) throw new TypeError(`tab session response: tab_id ${JSON.stringify(tabId)} is not 8-64 of [a-z0-9]`);
  const url = str('url');
  if (!/^wss?:\/\//.test(url)) throw new TypeError(`tab session response: url ${JSON.stringify(url)} is not ws:// or wss://`);
  const queue = str('queue');
  const destination = str('destination');
  if (destination !== `/amq/queue/${queue}`) {
    throw new TypeError(`tab session response: destination ${JSON.stringify(destination)} is not /amq/queue/<queue>`);
  }
  const urls = s.urls === undefined ? [url] : urlList(s.urls, 'tab session response: ', 'urls');
  /** @type {ParsedSession['streams']} */
  const streams = new Map();
  if (s.streams !== undefined && s.streams !== null) {
    if (!Array.isArray(s.streams)) throw new TypeError('tab session response: streams is not an array of {name, destination}');
    for (const e of s.streams) {
      if (e === null || typeof e !== 'object' || typeof e.name !== 'string' || !NAME_RE.test(e.name)) {
        throw new TypeError(`tab session response: streams entry ${JSON.stringify(e)} has no name of ${NAME_RE}`);
      }
      if (e.destination !== streamDestination(e.name)) {
        throw new TypeError(`tab session response: stream ${e.name}: destination ${JSON.stringify(e.destination)} is not /amq/queue/<name>`);
      }
      const start = e.start === undefined ? undefined : parsePosition(e.start, `tab session response: stream ${e.name}: start`);
      streams.set(e.name, { destination: e.destination, start });
    }
  }
  /** @type {ParsedSession['tabs']} */
  const tabs = [];
  if (s.tabs !== undefined && s.tabs !== null) {
    if (!Array.isArray(s.tabs)) throw new TypeError('tab session response: tabs is not an array of {tab_id, queue, destination}');
    for (const e of s.tabs) {
      if (e === null || typeof e !== 'object' || typeof e.tab_id !== 'string' || !TAB_ID_RE.test(e.tab_id) || typeof e.queue !== 'string' || e.destination !== `/amq/queue/${e.queue}`) {
        throw new TypeError(`tab session response: tabs entry ${JSON.stringify(e)} is not {tab_id, queue, destination: /amq/queue/<queue>}`);
      }
      tabs.push({ tabId: e.tab_id, queue: e.queue, destination: e.destination });
    }
  }
  const missingTabs = Array.isArray(s.missing_tabs) ? s.missing_tabs.filter((/** @type {any} */ x) => typeof x === 'string') : [];
  const renewIn = Number(s.renew_in);
  const receipts = s.receipts === undefined || s.receipts === null ? null : parseSessionReceipts(s.receipts, tabId);
  return {
    tabId,
    url,
    urls,
    streams,
    vhost: typeof s.vhost === 'string' && s.vhost !== '' ? s.vhost : '/',
    queue,
    destination,
    token: str('token'),
    expiresAt: Date.parse(s.expires_at),
    renewInMs: Number.isFinite(renewIn) ? renewIn * 1000 : NaN,
    // true: the server had to create the queue (first session, or it was gone)
    queueCreated: s.queue_created === true,
    tabs,
    missingTabs,
    receipts,
  };
}

/** A receipts user key (docs/receipts.md): the routing key's first word. */
export const RECEIPT_USER_KEY_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The session's `receipts` field: `{destination: "/exchange/<exchange>/<user_key>.<tab_id>", user_key}`.
 * @param {any} r
 * @param {string} tabId
 */
function parseSessionReceipts(r, tabId) {
  if (typeof r !== 'object' || typeof r.user_key !== 'string' || !RECEIPT_USER_KEY_RE.test(r.user_key)) {
    throw new TypeError(`tab session response: receipts ${JSON.stringify(r)} has no user_key of ${RECEIPT_USER_KEY_RE}`);
  }
  const d = r.destination;
  if (typeof d !== 'string' || !/^\/exchange\/[^/\r\n]+\/[^/\r\n]+$/.test(d) || !d.endsWith(`/${r.user_key}.${tabId}`)) {
    throw new TypeError(`tab session response: receipts.destination ${JSON.stringify(d)} is not /exchange/<exchange>/<user_key>.<tab_id>`);
  }
  return { destination: d, userKey: r.user_key };
}

/**
 * The destination of a tab's receipts in headers mode:
 * `/exchange/<exchange>/<userKey>.<tabId>` (docs/receipts.md).
 * @param {string} exchange
 * @param {string} userKey
 * @param {string} tabId
 */
export function receiptDestination(exchange, userKey, tabId) {
  return exchangeDestination(exchange, `${userKey}.${tabId}`);
}

/**
 * The routing key a message was published with: the Go side's `routing_key`
 * metadata header if present, otherwise taken from the STOMP `destination`
 * RabbitMQ sets on every MESSAGE (`/exchange/<exchange>/<routing key>`,
 * `/topic/<key>`, or `/queue/<key>` for the default exchange). '' if unknown.
 * @param {Record<string, string>} headers
 * @returns {string}
 */
export function routingKeyOf(headers) {
  if (typeof headers.routing_key === 'string' && headers.routing_key !== '') return headers.routing_key;
  const d = headers.destination ?? '';
  let m = /^\/exchange\/[^/]*\/(.*)$/.exec(d) ?? /^\/(?:topic|queue|amq\/queue)\/(.*)$/.exec(d);
  return m ? m[1].replace(/%2F/gi, '/') : '';
}

/**
 * Compile an AMQP topic pattern (`*` one word, `#` zero or more words, words
 * separated by '.') into a predicate on routing keys, as a topic exchange
 * matches them.
 * @param {string} pattern e.g. 'customer.*.order_paid' or 'customer.42.#'
 * @returns {(routingKey: string) => boolean}
 */
export function topicMatcher(pattern) {
  if (typeof pattern !== 'string' || pattern === '') throw new TypeError('a routing-key pattern must be a non-empty string');
  const p = pattern.split('.');
  return (routingKey) => {
    const k = routingKey.split('.');
    // ok[j]: p[0..i) matches k[0..j); rolled over i.
    let ok = new Array(k.length + 1).fill(false);
    ok[0] = true;
    for (const w of p) {
      const next = new Array(k.length + 1).fill(false);
      for (let j = 0; j <= k.length; j++) {
        if (w === '#') next[j] = ok[j] || (j > 0 && next[j - 1]);
        else if (j > 0 && ok[j - 1] && (w === '*' || w === k[j - 1])) next[j] = true;
      }
      ok = next;
    }
    return ok[k.length];
  };
}

/**
 * Retry settings of a subscription, validated, with defaults.
 * @param {{attempts?: number, initialMs?: number, maxMs?: number}|undefined} r
 * @returns {{attempts: number, initialMs: number, maxMs: number}}
 */
export function normalizeRetry(r = {}) {
  if (r === null || typeof r !== 'object') throw new TypeError('retry must be an object {attempts?, initialMs?, maxMs?}');
  const d = DEFAULTS.subscribe.retry;
  const out = { attempts: r.attempts ?? d.attempts, initialMs: r.initialMs ?? d.initialMs, maxMs: r.maxMs ?? d.maxMs };
  if (!Number.isInteger(out.attempts) || out.attempts < 1 || out.attempts > 100) {
    throw new TypeError(`retry.attempts must be an integer in 1..100 (handler calls before onError), got ${r.attempts}`);
  }
  for (const k of /** @type {const} */ (['initialMs', 'maxMs'])) {
    if (!Number.isFinite(out[k]) || out[k] < 0) throw new TypeError(`retry.${k} must be a number >= 0, got ${r[k]}`);
  }
  return out;
}

/**
 * The handler time-out: a non-negative integer of milliseconds, 0 = none.
 * @param {unknown} ms
 * @returns {number}
 */
export function normalizeTimeout(ms, name = 'handlerTimeoutMs') {
  if (!Number.isInteger(ms) || /** @type {number} */ (ms) < 0 || /** @type {number} */ (ms) > 2 ** 31 - 1) {
    throw new TypeError(`${name} must be an integer of milliseconds >= 0 (0 disables), got ${ms}`);
  }
  return /** @type {number} */ (ms);
}

/**
 * A validated list of Web-STOMP URLs: `url` may be one URL or a list of them
 * (one per cluster node, or one load-balanced URL).
 * @param {unknown} url
 * @param {string} [prefix]  starts the error message, e.g. 'DurableClient: '
 * @param {string} [field]   the field's name in the error message
 * @returns {string[]}
 */
export function urlList(url, prefix = '', field = 'url') {
  const list = Array.isArray(url) ? url : [url];
  if (list.length === 0) throw new TypeError(`${prefix}${field} must be a ws:// or wss:// URL or a non-empty list of them`);
  for (const u of list) {
    let p;
    try {
      p = new URL(/** @type {string} */ (u));
    } catch {
      throw new TypeError(`${prefix}invalid ${field} ${JSON.stringify(u)}`);
    }
    if (p.protocol !== 'ws:' && p.protocol !== 'wss:') throw new TypeError(`${prefix}${field} must be ws: or wss:, got ${u}`);
  }
  return /** @type {string[]} */ ([...list]);
}

/**
 * Where a tab starts reading a stream it has no offset for yet:
 * `{kind: 'last', offset}` (the server's broadcast.EndPosition, `{last: N}`:
 * the page's state includes offset N), `{kind: 'timestamp', ts}` (whole unix
 * seconds, `{timestamp: S}`), `{kind: 'first'}` (`'first'` or `{first: true}`)
 * or `{kind: 'next'}` (`'next'`, the default: only what is published from now).
 * @typedef {{kind: 'last', offset: number}|{kind: 'timestamp', ts: number}|{kind: 'first'}|{kind: 'next'}} StreamPosition
 */

/**
 * Parses a stream start position as the server (package broadcast's
 * Position JSON) or the page gives it. Throws a TypeError naming `what`.
 * @param {unknown} p
 * @param {string} [what]
 * @returns {StreamPosition}
 */
export function parsePosition(p, what = 'start') {
  if (p === 'next' || p === undefined || p === null) return { kind: 'next' };
  if (p === 'first') return { kind: 'first' };
  if (typeof p === 'object') {
    const o = /** @type {any} */ (p);
    if (Number.isSafeInteger(o.last) && o.last >= 0) return { kind: 'last', offset: o.last };
    if (Number.isSafeInteger(o.timestamp) && o.timestamp >= 0) return { kind: 'timestamp', ts: o.timestamp };
    if (o.first === true) return { kind: 'first' };
  }
  throw new TypeError(
    `${what} must be 'next', 'first', {last: <offset>}, {timestamp: <unix seconds>} or {first: true}, got ${JSON.stringify(p)}`,
  );
}

/**
 * The SUBSCRIBE header x-stream-offset for a position: `offset=N` (a tab
 * that handled N asks for N again, see package broadcast: offsets are not
 * dense, so only the repeated frame tells "nothing missed" from a gap),
 * `timestamp=S`, `first` or `next`.
 * @param {StreamPosition} pos
 */
export function streamOffsetHeader(pos) {
  switch (pos.kind) {
    case 'last':
      return `offset=${pos.offset}`;
    case 'timestamp':
      return `timestamp=${pos.ts}`;
    default:
      return pos.kind;
  }
}

/** The STOMP destination of a stream: `/amq/queue/<stream>` (never /queue/, which declares). */
export function streamDestination(stream) {
  return `/amq/queue/${escapeSegment(stream)}`;
}

/**
 * Normalises a stream subscription spec (`{stream, name?, prefetch?, start?}`):
 * both modes; the destination is derived in headers mode and comes from the
 * session in tab-session mode.
 * @param {any} spec
 */
export function normalizeStreamSpec(spec) {
  for (const k of ['exchange', 'bindingKey', 'expiresMs']) {
    if (spec[k] !== undefined) {
      throw new TypeError(`subscribe({stream}): ${k} does not apply to a stream (it is declared and bound by the Go side: broadcast.Declare or durablews setup -streams)`);
    }
  }
  if (typeof spec.stream !== 'string' || !NAME_RE.test(spec.stream)) {
    throw new TypeError(`stream must match ${NAME_RE}, got ${JSON.stringify(spec.stream)}`);
  }
  const name = spec.name ?? spec.stream;
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new TypeError(`subscription name must match ${NAME_RE}, got ${JSON.stringify(name)}`);
  }
  const prefetch = spec.prefetch ?? DEFAULTS.subscribe.prefetch;
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > MAX_PREFETCH) {
    throw new TypeError(`prefetch must be an integer in 1..${MAX_PREFETCH}, got ${prefetch}`);
  }
  return Object.freeze({
    stream: spec.stream,
    name,
    prefetch,
    start: spec.start === undefined ? undefined : parsePosition(spec.start, 'subscribe({stream}): start'),
  });
}

/**
 * SUBSCRIBE headers of a stream subscription (both modes): the stream's
 * destination, a stable id, client-individual acks (credit only: the broker
 * stores no offset), the prefetch the broker requires for streams, and where
 * to start.
 * @param {{stream: string, prefetch: number}} spec
 * @param {string} destination
 * @param {StreamPosition} pos
 * @returns {Record<string, string>}
 */
export function streamSubscribeHeaders(spec, destination, pos) {
  return {
    destination,
    id: `stream-${spec.stream}`,
    ack: 'client-individual',
    'prefetch-count': String(spec.prefetch),
    'x-stream-offset': streamOffsetHeader(pos),
  };
}

/**
 * The offset of a stream MESSAGE (`x-stream-offset`), or undefined if the
 * header is missing or not a non-negative integer.
 * @param {Record<string, string>} headers
 * @returns {number|undefined}
 */
export function streamOffsetOf(headers) {
  const v = headers['x-stream-offset'];
  if (typeof v !== 'string' || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The tab's side of the stream protocol (package broadcast) for one MESSAGE,
 * before its id is looked at: `gap` when this is the first MESSAGE of a
 * subscription that asked for `offset=<last>` and it is beyond last+1
 * (retention removed offsets last+1 .. offset-1 while the tab was away);
 * `skip` when the tab already handled this offset (a resume repeats the last
 * handled frame).
 * @param {StreamPosition} want   what the SUBSCRIBE asked for
 * @param {number|null} last      the last handled offset (null: none yet)
 * @param {boolean} first         the first MESSAGE of this SUBSCRIBE
 * @param {number} offset
 * @returns {{gap: {from: number, to: number}|null, skip: boolean}}
 */
export function streamStep(want, last, first, offset) {
  const gap = first && want.kind === 'last' && offset > want.offset + 1 ? { from: want.offset + 1, to: offset - 1 } : null;
  return { gap, skip: last !== null && offset <= last };
}
