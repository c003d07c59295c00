// Delivery receipts (docs/receipts.md, issue 21): the tab's statement "the
// handler(s) of message M ran and resolved here, and M was ACKed", sent to
// the service over the tab's own connection. Collected by the subscriptions,
// batched (flushMs / maxBatch), kept in the tab's storage until the broker
// confirmed the SEND that carried them (its RECEIPT), and sent again after a
// reconnect or a reload: at least once, the Go side de-duplicates.

import { DEFAULTS } from './defaults.js';
import { RECEIPT_USER_KEY_RE, backoffDelay, exchangeDestination, normalizeTimeout } from './internal.js';

/** @import { ClientOptions, ClientStats, ReceiptEvent } from './typedefs.js' */
/** @import { Tab } from './tab.js' */
/** @import { Connection } from './transport.js' */

/** Where the unconfirmed receipts live: `<storageKey>.receipts.pending`. */
export const RECEIPTS_STORAGE_SUFFIX = 'receipts.pending';
/** Upper bound of maxBatch: one SEND stays a few tens of KB. */
export const MAX_RECEIPT_BATCH = 1000;
/** Upper bound of maxPending: sessionStorage holds about 5 MB per origin. */
export const MAX_RECEIPTS_PENDING = 20000;
/**
 * Back-off of the resends after a connection ended with receipts unconfirmed
 * more than once in a row: a SEND the broker refuses (a missing exchange, a
 * token without write access) closes the whole connection (RabbitMQ 4.0.5:
 * "STOMP died", no ERROR frame), so resending at once on every reconnect
 * would keep the tab's messages from flowing.
 */
const RESEND_BACKOFF = { initialMs: 1000, maxMs: 300000 };
/**
 * The wait before resending after n connections in a row ended with receipts
 * unconfirmed (n >= 1 here: the first resend goes at once): exponential with
 * equal jitter, so at least half of 1 s, 2 s, 4 s, ... 5 min.
 * @param {number} n
 */
export function resendDelay(n, random = Math.random) {
  const cap = Math.min(RESEND_BACKOFF.maxMs, RESEND_BACKOFF.initialMs * Math.pow(2, Math.max(1, n) - 1));
  return Math.floor(cap / 2 + backoffDelay(n, RESEND_BACKOFF, random) / 2);
}
const OPTION_KEYS = new Set(['userKey', 'exchange', 'flushMs', 'maxBatch', 'maxPending']);

/**
 * One receipt, as stored and as sent (the body's `receipts` entries).
 * @typedef {object} Receipt
 * @property {string} id      the message id (de-dup id)
 * @property {string} sub     the subscription's name
 * @property {number} at      ms since the epoch: when the handlers resolved
 * @property {string} [stream]  stream subscriptions
 * @property {number} [offset]  stream subscriptions
 */

/**
 * @typedef {object} ReceiptSettings  the `receipts` option, validated
 * @property {string|null} userKey  headers mode: the routing key's first word; null: no receipts (tab-session mode: always null, the session names the destination)
 * @property {string} exchange
 * @property {number} flushMs
 * @property {number} maxBatch
 * @property {number} maxPending
 */

/**
 * @typedef {object} ReceiptHooks  how the sender asks the client
 * @property {Tab} tab  its storage
 * @property {() => ({destination: string, tabId: string}|null)} target  where
 *   this tab's receipts go now; null: nowhere (none are recorded)
 * @property {() => ({connection: Connection, gen: number}|null)} live  the
 *   connection that is CONNECTED now, else null
 * @property {(event: ReceiptEvent) => void} confirmed  a batch was confirmed
 * @property {(msg: string) => void} debug
 */

/**
 * Validates the `receipts` option. Tab-session mode ignores `userKey` and
 * `exchange` (the session names the destination).
 * @param {ClientOptions} opts
 * @param {boolean} sessionMode
 * @returns {ReceiptSettings}
 */
export function receiptSettings(opts, sessionMode) {
  const d = DEFAULTS.receipts;
  const r = opts.receipts ?? {};
  if (r === null || typeof r !== 'object' || Array.isArray(r)) {
    throw new TypeError('DurableClient: receipts must be an object {userKey?, exchange?, flushMs?, maxBatch?, maxPending?}');
  }
  for (const k of Object.keys(r)) {
    if (!OPTION_KEYS.has(k)) throw new TypeError(`DurableClient: receipts.${k} is not an option (userKey, exchange, flushMs, maxBatch, maxPending)`);
  }
  let userKey = null;
  const exchange = r.exchange ?? d.exchange;
  if (!sessionMode) {
    if (r.userKey !== undefined) {
      if (typeof r.userKey !== 'string' || !RECEIPT_USER_KEY_RE.test(r.userKey)) {
        throw new TypeError(`DurableClient: receipts.userKey must match ${RECEIPT_USER_KEY_RE}, got ${JSON.stringify(r.userKey)}`);
      }
      userKey = r.userKey;
    }
    try {
      exchangeDestination(exchange);
    } catch (e) {
      throw new TypeError(`DurableClient: receipts.exchange: ${e.message}`);
    }
  }
  const flushMs = normalizeTimeout(r.flushMs ?? d.flushMs, 'receipts.flushMs');
  const maxBatch = r.maxBatch ?? d.maxBatch;
  if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > MAX_RECEIPT_BATCH) {
    throw new TypeError(`DurableClient: receipts.maxBatch must be an integer in 1..${MAX_RECEIPT_BATCH}, got ${maxBatch}`);
  }
  const maxPending = r.maxPending ?? d.maxPending;
  if (!Number.isInteger(maxPending) || maxPending < maxBatch || maxPending > MAX_RECEIPTS_PENDING) {
    throw new TypeError(`DurableClient: receipts.maxPending must be an integer in maxBatch (${maxBatch})..${MAX_RECEIPTS_PENDING}, got ${maxPending}`);
  }
  return { userKey, exchange, flushMs, maxBatch, maxPending };
}

/** @param {any} r @returns {r is Receipt} */
function validReceipt(r) {
  return (
    r !== null &&
    typeof r === 'object' &&
    typeof r.id === 'string' &&
    r.id !== '' &&
    typeof r.sub === 'string' &&
    Number.isFinite(r.at) &&
    (r.stream === undefined || typeof r.stream === 'string') &&
    (r.offset === undefined || Number.isSafeInteger(r.offset))
  );
}

/** @param {Receipt} r @returns {Receipt} only the wire fields */
function wire(r) {
  /** @type {Receipt} */
  const w = { id: r.id, sub: r.sub, at: r.at };
  if (r.stream !== undefined) w.stream = r.stream;
  if (r.offset !== undefined) w.offset = r.offset;
  return w;
}

/** @param {string} sub @param {string} id */
const heldKey = (sub, id) => `${sub}\n${id}`;

/**
 * The receipt sender of a client. A receipt is one of:
 * - held: handled, but its ACK could not be written (the connection had
 *   ended); released when the redelivered copy is acked as a duplicate;
 * - pending: handled and acked, not sent yet;
 * - in flight: sent, its SEND's RECEIPT not arrived yet.
 * All three are in storage; a RECEIPT removes its batch.
 */
export class ReceiptSender {
  /**
   * @param {ReceiptSettings} settings
   * @param {ReceiptHooks} hooks
   */
  constructor(settings, hooks) {
    this._s = settings;
    this._h = hooks;
    /** @type {Receipt[]} */
    this._pending = [];
    /** @type {Map<string, Receipt>} by heldKey */
    this._held = new Map();
    /** @type {Map<string, {receipts: Receipt[], gen: number, tabId: string}>} by receipt id */
    this._inflight = new Map();
    this._inflightCount = 0;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this._timer = null;
    /** connections in a row that ended with receipts in flight */
    this._failures = 0;
    /** no SEND before this time (ms since the epoch): see RESEND_BACKOFF */
    this._resendAt = 0;
    this._seq = 0;
    this._noTargetLogged = false;
    this._stats = { receiptsSent: 0, receiptsConfirmed: 0, receiptsDropped: 0 };
    this._load();
  }

  /** @returns {ClientStats} */
  get stats() {
    return { ...this._stats, receiptsPending: this._held.size + this._pending.length + this._inflightCount };
  }

  /**
   * A message's handlers resolved. `acked`: its ACK was written (the
   * receipt is sent); otherwise it is held until release().
   * @param {Receipt} r
   * @param {boolean} acked
   */
  record(r, acked) {
    if (!this._h.target()) {
      if (!this._noTargetLogged) this._h.debug('receipts: the session names no receipts destination; none are sent');
      this._noTargetLogged = true;
      return;
    }
    if (acked) {
      // A receipt held for an earlier copy (its id had left the de-dup
      // window, so the redelivery ran the handlers again) is superseded.
      this._held.delete(heldKey(r.sub, r.id));
      this._pending.push(r);
    } else {
      this._held.set(heldKey(r.sub, r.id), r);
    }
    this._bound();
    this._save();
    if (acked) this._schedule();
  }

  /**
   * The redelivered copy of a message was acked without calling its handlers
   * (a duplicate): a receipt held for it is sent now.
   * @param {string} sub
   * @param {string|undefined} id
   */
  release(sub, id) {
    if (id === undefined || this._held.size === 0) return;
    const k = heldKey(sub, id);
    const r = this._held.get(k);
    if (!r) return;
    this._held.delete(k);
    this._pending.push(r);
    this._save();
    this._schedule();
  }

  /**
   * A connection is CONNECTED with every subscription confirmed: batches
   * sent on an earlier one never got their RECEIPT and go out again.
   * @param {number} gen  the connection's generation
   */
  connected(gen) {
    /** @type {Receipt[]} */
    const again = [];
    for (const [rid, b] of this._inflight) {
      if (b.gen === gen) continue;
      this._inflight.delete(rid);
      this._inflightCount -= b.receipts.length;
      again.push(...b.receipts);
    }
    if (again.length > 0) {
      this._pending = [...again, ...this._pending];
      this._failures++;
      // The first time at once (a network cut); again and again: back off
      // (a SEND the broker refuses ends the connection).
      const delayMs = this._failures === 1 ? 0 : resendDelay(this._failures - 1);
      this._resendAt = Date.now() + delayMs;
      this._h.debug(`receipts: ${again.length} unconfirmed when the last connection ended (${this._failures} in a row); sending them again in ${delayMs} ms`);
    }
    if (this._pending.length > 0) this._schedule(true);
  }

  /** The client closes: send what is pending now (a close() or pagehide), no timers. */
  stop() {
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    this._flush(false);
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
  }

  /** Forget every receipt: this tab became another tab (a duplicated tab's copies are the original's). */
  clear() {
    this._pending = [];
    this._held.clear();
    this._inflight.clear();
    this._inflightCount = 0;
    this._save();
  }

  /**
   * Flush at once when a batch is full (or `now`), else after flushMs; never
   * before the resend back-off allows.
   * @param {boolean} [now]
   */
  _schedule(now = false) {
    const wait = Math.max(0, this._resendAt - Date.now());
    if (wait === 0 && (now || this._pending.length >= this._s.maxBatch)) {
      this._flush(true);
      return;
    }
    if (this._timer) return;
    this._timer = setTimeout(() => {
      this._timer = null;
      this._flush(true);
    }, Math.max(wait, this._s.flushMs));
  }

  /**
   * Send every pending receipt, maxBatch per SEND, if there is a live
   * connection; otherwise they wait for the next connected().
   * @param {boolean} reschedule  back-off still running: try again when it ends
   */
  _flush(reschedule) {
    if (this._pending.length === 0) return;
    const wait = this._resendAt - Date.now();
    if (wait > 0) {
      if (reschedule && !this._timer) {
        this._timer = setTimeout(() => {
          this._timer = null;
          this._flush(true);
        }, wait);
      }
      return;
    }
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    const target = this._h.target();
    const live = this._h.live();
    if (!target || !live) return;
    while (this._pending.length > 0) {
      const batch = this._pending.slice(0, this._s.maxBatch);
      if (!this._send(batch, target, live)) break;
      this._pending.splice(0, batch.length);
    }
    this._save();
  }

  /**
   * One SEND with a receipt header; false if stompjs refused it.
   * @param {Receipt[]} batch
   * @param {{destination: string, tabId: string}} target
   * @param {{connection: Connection, gen: number}} live
   */
  _send(batch, target, live) {
    const rid = `receipts-${Date.now().toString(36)}-${++this._seq}`;
    const body = JSON.stringify({ v: 1, tab: target.tabId, receipts: batch.map(wire) });
    try {
      live.connection.watchForReceipt(rid, () => this._confirmed(rid));
      live.connection.publish({
        destination: target.destination,
        body,
        headers: { 'content-type': 'application/json', persistent: 'true', 'x-durablews-receipts': '1', receipt: rid },
      });
    } catch (e) {
      this._h.debug(`receipts: SEND failed: ${e?.message ?? e}`);
      return false;
    }
    this._inflight.set(rid, { receipts: batch, gen: live.gen, tabId: target.tabId });
    this._inflightCount += batch.length;
    this._stats.receiptsSent += batch.length;
    return true;
  }

  /** The RECEIPT of SEND `rid` arrived: the broker has the batch. @param {string} rid */
  _confirmed(rid) {
    const b = this._inflight.get(rid);
    if (!b) return; // sent again meanwhile (the old connection's RECEIPT came late)
    this._inflight.delete(rid);
    this._inflightCount -= b.receipts.length;
    this._stats.receiptsConfirmed += b.receipts.length;
    this._failures = 0;
    this._resendAt = 0;
    this._save();
    this._h.confirmed({
      tabId: b.tabId,
      receipts: b.receipts.map((r) => ({ id: r.id, subscription: r.sub, handledAt: r.at })),
    });
  }

  /** At most maxPending receipts: beyond it the oldest pending (then held) ones are dropped. */
  _bound() {
    let over = this._held.size + this._pending.length + this._inflightCount - this._s.maxPending;
    if (over <= 0) return;
    let dropped = 0;
    while (over > 0 && this._pending.length > 0) {
      this._pending.shift();
      over--;
      dropped++;
    }
    for (const k of this._held.keys()) {
      if (over <= 0) break;
      this._held.delete(k);
      over--;
      dropped++;
    }
    this._stats.receiptsDropped += dropped;
    if (dropped > 0) this._h.debug(`receipts: more than receipts.maxPending (${this._s.maxPending}) unconfirmed; dropped the ${dropped} oldest`);
  }

  /** Write every unconfirmed receipt: in flight and pending (in order), held. */
  _save() {
    /** @type {Receipt[]} */
    const receipts = [];
    for (const b of this._inflight.values()) receipts.push(...b.receipts.map(wire));
    for (const r of this._pending) receipts.push(wire(r));
    this._h.tab.write(RECEIPTS_STORAGE_SUFFIX, { v: 1, receipts, held: [...this._held.values()].map(wire) });
  }

  /** What a previous page of this tab left unconfirmed: pending again. */
  _load() {
    const data = this._h.tab.read(RECEIPTS_STORAGE_SUFFIX);
    if (data === null || typeof data !== 'object' || data.v !== 1) return; // none, or another version's
    if (Array.isArray(data.receipts)) this._pending = data.receipts.filter(validReceipt).map(wire);
    if (Array.isArray(data.held)) for (const r of data.held.filter(validReceipt)) this._held.set(heldKey(r.sub, r.id), wire(r));
    this._bound();
  }
}
