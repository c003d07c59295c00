// A subscription: one per-tab queue (or one stream) of a client, and the
// handling of its messages: one at a time in delivery order, de-duplicated,
// handlers retried with back-off, acked after they succeed, never acked on
// another connection than the one that delivered them.

import { DEFAULTS } from './defaults.js';
import { HandlerTimeoutError } from './errors.js';
import {
  DedupWindow,
  backoffDelay,
  messageKey,
  normalizeRetry,
  normalizeTimeout,
  parsePosition,
  queueName,
  routingKeyOf,
  sessionSubscribeHeaders,
  streamDestination,
  streamOffsetOf,
  streamStep,
  streamSubscribeHeaders,
  subscribeHeaders,
} from './internal.js';

/** @import { DurableMessage, FailureAction, SubscribeOptions, SubscriptionStats } from './typedefs.js' */
/** @import { DurableClient } from './client.js' */
/** @import { Connection } from './transport.js' */

const ACTIONS = new Set(['ack', 'park', 'retry']);

/**
 * @param {any} frame stompjs IMessage
 * @param {string} subscription
 * @returns {DurableMessage}
 */
function makeMessage(frame, subscription, offset, stream) {
  const headers = frame.headers;
  return {
    ...(stream === undefined ? {} : { offset, stream }),
    id: messageKey(headers),
    // Lazy: stompjs decodes a binary frame's bytes only when asked.
    get body() {
      return frame.body;
    },
    bytes: () => frame.binaryBody,
    // Not `this.body`: `const { json } = msg; json()` must work too.
    json: () => JSON.parse(frame.body),
    headers,
    routingKey: routingKeyOf(headers),
    redelivered: headers.redelivered === 'true',
    subscription,
  };
}

/**
 * A durable subscription: a per-tab queue bound to an exchange. Create with
 * {@link DurableClient#subscribe}.
 */
export class Subscription {
  /**
   * @internal
   * @param {DurableClient} client
   * @param {any} spec normalised spec
   * @param {((msg: DurableMessage) => (void|Promise<void>))|undefined} handler
   * @param {SubscribeOptions['onError']} onError
   */
  constructor(client, spec, handler, onError) {
    this._client = client;
    this._spec = spec;
    this._handler = handler;
    this._onError = onError;
    this._retry = normalizeRetry(spec.retry);
    this._timeoutMs = normalizeTimeout(spec.handlerTimeoutMs ?? DEFAULTS.subscribe.handlerTimeoutMs);
    /** send delivery receipts for what this subscription handled (if the client has a destination) */
    this._receipts = spec.receipts ?? spec.stream === undefined;
    this._active = true;
    this._seen = new DedupWindow(client._dedupSize);
    this._seenKey = `seen.${spec.name}`;
    this._seen.load(client._tab.read(this._seenKey));
    /** @type {ReturnType<typeof setTimeout>|null} */
    this._saveTimer = null;
    /** @type {{frame: any, gen: number}[]} */
    this._queue = [];
    this._running = false;
    /** @type {SubscriptionStats} */
    this._stats = {
      delivered: 0, handled: 0, duplicates: 0, failed: 0, timeouts: 0, retries: 0,
      dropped: 0, parked: 0, unrouted: 0, acked: 0, stale: 0, skipped: 0, gaps: 0,
    };
    /** streams only: the stream's name (undefined: a per-tab queue) */
    this._streamName = spec.stream;
    if (spec.stream !== undefined) {
      // The tab's offset: the broker stores none (an ACK only returns credit).
      this._posKey = `stream.${spec.stream}`;
      let last = null;
      try {
        const p = parsePosition(client._tab.read(this._posKey));
        if (p.kind === 'last') last = p.offset;
      } catch {
        // written by another version, or by hand: start as a new tab
      }
      /** @type {number|null} the offset of the last message handled (or acked without handling) */
      this._last = last;
      /** @type {import('./internal.js').StreamPosition|null} where the next SUBSCRIBE starts; fixed at the first one */
      this._pos = last === null ? null : { kind: 'last', offset: last };
      /** @type {import('./internal.js').StreamPosition} what the current SUBSCRIBE asked for */
      this._want = { kind: 'next' };
      /** gen of a SUBSCRIBE whose first MESSAGE has not been processed yet (the gap rule looks at it) */
      this._firstGen = 0;
    }
  }

  /** Subscription name. */
  get name() {
    return this._spec.name;
  }

  /**
   * The RabbitMQ queue name, `<prefix>-<tabId>-<name>`. It can change once,
   * during the first connect(), if this tab turns out to be a duplicated tab.
   * @returns {string|null}
   */
  get queueName() {
    if (this._streamName !== undefined) return this._streamName;
    if (this._spec.session) return this._client._sessions?.current?.queue ?? null;
    return queueName(this._client._queuePrefix, this._client.tabId, this._spec.name);
  }

  /**
   * The exact SUBSCRIBE headers (all strings), identical on every reconnect. In
   * tab-session mode: destination (from the session), id, ack, prefetch-count;
   * null before the first session response.
   * @returns {Record<string, string>|null}
   */
  get headers() {
    if (this._streamName !== undefined) {
      const dest = this._streamDestination();
      return dest ? streamSubscribeHeaders(this._spec, dest, this._nextPosition()) : null;
    }
    if (this._spec.session) {
      const s = this._client._sessions?.current;
      return s ? sessionSubscribeHeaders(this._spec, s.destination) : null;
    }
    return subscribeHeaders(this._spec, /** @type {string} */ (this.queueName));
  }

  /** The stream's name for a stream subscription, else undefined. */
  get stream() {
    return this._streamName;
  }

  /**
   * Stream subscriptions: the offset of the last message this tab handled
   * (kept in storage per tab and stream), or of a server position `{last: N}`
   * once subscribed with it; null before either; undefined for a per-tab queue.
   * @returns {number|null|undefined}
   */
  get lastOffset() {
    return this._streamName === undefined ? undefined : this._last;
  }

  /** @internal the stream's destination: derived in headers mode, granted by the session otherwise */
  _streamDestination() {
    const stream = /** @type {string} */ (this._streamName);
    const sessions = this._client._sessions;
    if (!sessions) return streamDestination(stream);
    return sessions.current?.streams.get(stream)?.destination ?? null;
  }

  /**
   * @internal where the next SUBSCRIBE starts: the last handled offset, else
   * spec.start, else the session's start for the stream, else 'next'
   * @returns {import('./internal.js').StreamPosition}
   */
  _nextPosition() {
    return (
      this._pos ??
      this._spec.start ??
      this._client._sessions?.current?.streams.get(/** @type {string} */ (this._streamName))?.start ?? { kind: 'next' }
    );
  }

  /**
   * Counters since creation (see {@link SubscriptionStats}).
   * @returns {SubscriptionStats}
   */
  get stats() {
    return { ...this._stats };
  }

  /**
   * Stop consuming (UNSUBSCRIBE) and never re-subscribe. The queue is not
   * deleted: it expires after `expiresMs` unused, or the backend deletes it.
   * Messages queued locally but not yet handled are dropped unacked (the broker
   * redelivers them if the queue is consumed again).
   */
  unsubscribe() {
    if (!this._active) return;
    this._active = false;
    this._queue.length = 0;
    this._client._remove(this);
  }

  /**
   * @internal send SUBSCRIBE on a live connection; resolves on its RECEIPT
   * @param {Connection} connection
   * @param {number} gen  the connection's generation (see transport.js)
   * @returns {Promise<void>}
   */
  _attach(connection, gen) {
    if (this._streamName !== undefined) {
      // The start is fixed by the first SUBSCRIBE: a later session's start
      // (a newer end of the stream) must not skip what this tab has not read.
      this._pos = this._nextPosition();
      this._want = this._pos;
      // A server position {last: N} means the page's state includes N: like a handled offset.
      if (this._pos.kind === 'last') this._last = this._pos.offset;
      this._firstGen = gen;
    }
    const { destination, ...headers } = /** @type {Record<string, string>} */ (this.headers);
    const receipt = `${headers.id}@${gen}`;
    /** @type {Promise<void>} */
    const confirmed = new Promise((resolve) => connection.watchForReceipt(receipt, () => resolve()));
    connection.subscribe(destination, (frame) => this._enqueue(frame, gen), { ...headers, receipt });
    return confirmed;
  }

  /** @internal send UNSUBSCRIBE @param {Connection} connection */
  _detach(connection) {
    try {
      connection.unsubscribe(/** @type {Record<string, string>} */ (this.headers).id);
    } catch {
      // not connected: nothing to cancel
    }
  }

  _enqueue(frame, gen) {
    this._stats.delivered++;
    this._queue.push({ frame, gen });
    if (!this._running) void this._pump();
  }

  // Messages of one subscription are handled one at a time, in delivery order.
  async _pump() {
    this._running = true;
    try {
      while (this._queue.length > 0) {
        const { frame, gen } = /** @type {{frame: any, gen: number}} */ (this._queue.shift());
        await this._process(frame, gen);
      }
    } finally {
      this._running = false;
    }
  }

  /** Whether a message of connection `gen` may still be handled and acked. */
  _live(gen) {
    return this._active && gen === this._client._transport.liveGen;
  }

  async _process(frame, gen) {
    const client = this._client;
    if (!this._active) return;
    if (gen !== client._transport.liveGen) {
      // Its connection is gone: the broker already requeued it. Acking it on
      // another connection would ack a different delivery, so drop it.
      this._stats.stale++;
      return;
    }
    if (this._streamName !== undefined) return this._processStream(frame, gen);
    const msg = makeMessage(frame, this._spec.name);
    if (this._seen.has(msg.id)) {
      this._stats.duplicates++;
      // Its receipt was sent when it was handled, or held if that ACK could not be written.
      if (this._ack(frame, gen)) this._releaseReceipt(msg.id);
      return;
    }
    const handlers = this._handlersFor(msg);
    if (handlers.length === 0) {
      // Nothing wants it (no subscription handler, no client.on pattern
      // matches): ack it rather than hold a prefetch slot for ever.
      this._stats.unrouted++;
      client._debug(`message ${msg.id} (${msg.routingKey}) on ${this._spec.name}: no handler matches; acked`);
      this._ack(frame, gen);
      return;
    }
    const outcome = await this._handleWithRetries(msg, handlers, gen);
    const handledAt = Date.now();
    if (outcome === 'stale') {
      this._stats.stale++;
      return;
    }
    if (outcome === 'park') {
      this._nack(frame, gen);
      return;
    }
    // handled, or 'ack' (dropped). Remember it even if its connection died
    // meanwhile: the redelivery is then recognised as a duplicate and acked
    // without calling the handler again.
    this._remember(msg.id);
    const acked = this._ack(frame, gen);
    if (outcome === 'handled') this._receipt(msg, handledAt, acked);
  }

  /**
   * The tab's side of the stream protocol (package broadcast's doc): gap rule
   * on a subscription's first MESSAGE, skip offsets already handled, de-dup by
   * id, record the offset of everything handled, ACK every frame (credit), and
   * never NACK (RabbitMQ closes the session on a NACK to a stream).
   */
  async _processStream(frame, gen) {
    const client = this._client;
    const first = this._firstGen === gen;
    if (first) this._firstGen = 0;
    const off = streamOffsetOf(frame.headers);
    if (off === undefined) {
      client._debug(`stream ${this._streamName}: MESSAGE without a valid x-stream-offset (${frame.headers['x-stream-offset']}); handled without recording an offset`);
    } else {
      const { gap, skip } = streamStep(this._want, this._last, first, off);
      if (gap) {
        this._stats.gaps++;
        client._debug(`stream ${this._streamName}: gap ${gap.from}..${gap.to} (retention removed them while this tab was away)`);
        client._emit('gap', { subscription: this._spec.name, stream: /** @type {string} */ (this._streamName), ...gap });
      }
      if (skip) {
        this._stats.skipped++;
        if (this._ack(frame, gen)) this._releaseReceipt(messageKey(frame.headers));
        return;
      }
    }
    const msg = makeMessage(frame, this._spec.name, off, this._streamName);
    let duplicate = false;
    /** @type {number|undefined} when the handlers resolved ('handled' only) */
    let handledAt;
    if (this._seen.has(msg.id)) {
      this._stats.duplicates++;
      duplicate = true;
    } else {
      const handlers = this._handlersFor(msg);
      if (handlers.length === 0) {
        this._stats.unrouted++;
      } else {
        const outcome = await this._handleWithRetries(msg, handlers, gen);
        if (outcome === 'handled') handledAt = Date.now();
        if (outcome === 'stale') {
          // Not recorded: the next SUBSCRIBE (at the last recorded offset) delivers it again.
          this._stats.stale++;
          return;
        }
        // 'handled', 'ack', or 'park': a stream cannot park (a NACK would
        // close the session), so 'park' acks and moves on as 'ack' does.
        this._remember(msg.id);
      }
    }
    this._recordOffset(off);
    const acked = this._ack(frame, gen);
    if (handledAt !== undefined) this._receipt(msg, handledAt, acked);
    else if (duplicate && acked) this._releaseReceipt(msg.id);
  }

  /** Stream: off is handled; store it before the ACK (a reload resumes there). */
  _recordOffset(off) {
    if (off === undefined || (this._last !== null && off <= this._last)) return;
    this._last = off;
    this._pos = { kind: 'last', offset: off };
    this._client._tab.write(/** @type {string} */ (this._posKey), { last: off });
  }

  /** @param {DurableMessage} msg */
  _handlersFor(msg) {
    /** @type {((msg: DurableMessage) => any)[]} */
    const hs = this._handler ? [this._handler] : [];
    for (const r of this._client._routes) if (r.match(msg.routingKey)) hs.push(r.fn);
    return hs;
  }

  /**
   * Call the handlers until they all succeed, with back-off between rounds;
   * after retry.attempts failed rounds onError decides. Returns 'handled',
   * 'ack' (drop), 'park', or 'stale' (the connection ended: the broker
   * redelivers the message, so stop here).
   * @returns {Promise<'handled'|'ack'|'park'|'stale'>}
   */
  async _handleWithRetries(msg, handlers, gen) {
    const client = this._client;
    const { attempts, initialMs, maxMs } = this._retry;
    for (let round = 1; ; round++) {
      let error;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        error = await this._callHandlers(msg, handlers);
        if (error === undefined) {
          this._stats.handled++;
          return 'handled';
        }
        this._stats.failed++;
        if (error instanceof HandlerTimeoutError) this._stats.timeouts++;
        if (!this._live(gen)) return 'stale';
        if (attempt === attempts) break;
        const delayMs = backoffDelay(attempt, { initialMs, maxMs });
        this._stats.retries++;
        client._emit('retry', { subscription: this._spec.name, id: msg.id, attempt, delayMs, error, message: msg });
        await sleep(delayMs);
        if (!this._live(gen)) return 'stale';
      }
      const action = await this._verdict(error, msg, round * attempts);
      if (!this._live(gen)) return 'stale';
      if (action === 'ack') this._stats.dropped++;
      if (action === 'park') this._stats.parked++;
      client._emit('failed', { subscription: this._spec.name, id: msg.id, attempts: round * attempts, action, error, message: msg });
      if (action !== 'retry') return action;
      // 'retry': another round, after the longest back-off.
      this._stats.retries++;
      await sleep(maxMs);
      if (!this._live(gen)) return 'stale';
    }
  }

  /** Run every handler once; undefined on success, else the first error. */
  async _callHandlers(msg, handlers) {
    const ms = this._timeoutMs;
    let timer;
    try {
      const run = (async () => {
        for (const h of handlers) await h(msg);
      })();
      if (ms > 0) {
        const timeout = new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new HandlerTimeoutError(`handler for message ${msg.id} on ${this._spec.name} did not settle within ${ms} ms`, ms)),
            ms,
          );
        });
        run.catch(() => {}); // a late rejection after the time-out is not unhandled
        await Promise.race([run, timeout]);
      } else {
        await run;
      }
      return undefined;
    } catch (e) {
      return e ?? new Error(`handler for message ${msg.id} rejected with ${e}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** @returns {Promise<'ack'|'park'|'retry'>} */
  async _verdict(error, msg, attempts) {
    if (!this._onError) {
      console.error(`durablews: handler failed ${attempts} times for message ${msg.id} on ${this._spec.name}; parked`, error);
      return 'park';
    }
    try {
      const v = await this._onError(error, msg, { attempts });
      if (v === undefined) return 'park';
      if (ACTIONS.has(/** @type {any} */ (v))) return /** @type {FailureAction} */ (v);
      console.error(`durablews: onError returned ${JSON.stringify(v)} for message ${msg.id}, expected 'ack', 'park' or 'retry'; parked`);
    } catch (e) {
      console.error('durablews: onError threw; message parked', e);
    }
    return 'park';
  }

  _remember(id) {
    if (id === undefined) return;
    this._seen.add(id);
    // Written a moment later (one write for a burst), and at once on pagehide/close.
    if (!this._saveTimer) this._saveTimer = setTimeout(() => this._saveSeen(), 0);
  }

  /** @internal write the de-dup window to storage now */
  _saveSeen() {
    if (this._saveTimer) clearTimeout(this._saveTimer);
    this._saveTimer = null;
    this._client._tab.write(this._seenKey, this._seen.ids());
  }

  /** @internal forget the de-dup window (this tab became another tab) */
  _clearSeen() {
    this._seen.clear();
    this._saveSeen();
  }

  /** @returns {boolean} whether the ACK frame was written */
  _ack(frame, gen) {
    const client = this._client;
    if (!client._transport.canAck(gen)) return false;
    try {
      frame.ack(); // bound by stompjs to the connection that delivered it
      this._stats.acked++;
      return true;
    } catch (e) {
      client._debug(`ack failed: ${e}`);
      return false;
    }
  }

  /**
   * A delivery receipt for a message whose handlers resolved (docs/receipts.md):
   * sent if its ACK was written, else held until the redelivered copy is acked.
   * @param {DurableMessage} msg
   * @param {number} handledAt
   * @param {boolean} acked
   */
  _receipt(msg, handledAt, acked) {
    const sender = this._client._receipts;
    if (!sender || !this._receipts || msg.id === undefined) return;
    /** @type {import('./receipts.js').Receipt} */
    const r = { id: msg.id, sub: this._spec.name, at: handledAt };
    if (msg.stream !== undefined) r.stream = msg.stream;
    if (msg.offset !== undefined) r.offset = msg.offset;
    sender.record(r, acked);
  }

  /** A duplicate was acked: a receipt held for its first copy goes out. @param {string|undefined} id */
  _releaseReceipt(id) {
    if (this._receipts) this._client._receipts?.release(this._spec.name, id);
  }

  // NACK without requeue: the broker dead-letters the message (the queue's
  // x-dead-letter-exchange) or, without one, discards it. A requeueing NACK
  // would hand it straight back: a hot loop.
  _nack(frame, gen) {
    const client = this._client;
    if (!client._transport.canAck(gen)) return;
    try {
      frame.nack({ requeue: 'false' });
    } catch (e) {
      client._debug(`nack failed: ${e}`);
    }
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
