// durablews browser client: durable per-tab RabbitMQ Web-STOMP subscriptions
// with at-least-once delivery, ack-after-handler and de-duplication.
//
// Load it without a bundler through an import map, see README.md:
//   <script type="importmap">
//   {"imports": {"@stomp/stompjs": "/web/node_modules/@stomp/stompjs/esm6/index.js"}}
//   </script>
//   <script type="module">import { DurableClient } from '/web/durablews.js';</script>

import { Client, TickerStrategy } from '@stomp/stompjs';
import {
  DedupWindow,
  backoffDelay,
  generateTabId,
  isValidTabId,
  messageKey,
  normalizeRetry,
  normalizeSessionSpec,
  normalizeSpec,
  normalizeStreamSpec,
  normalizeTimeout,
  onClaim,
  parsePosition,
  parseSession,
  queueName,
  routingKeyOf,
  topicMatcher,
  sessionErrorIsFatal,
  sessionSubscribeHeaders,
  streamDestination,
  streamOffsetOf,
  streamStep,
  streamSubscribeHeaders,
  subscribeHeaders,
  urlList,
} from './internal.js';
import { DEFAULTS } from './defaults.js';

export { DEFAULTS };

/** Random id of this document; claims from the same document are ignored. */
const DOC_ID = generateTabId();
const CHANNEL_NAME = 'durablews.tab-claims';

/**
 * @typedef {'connecting'|'connected'|'reconnecting'|'closed'} ConnectionState
 *
 * @typedef {object} StateDetail
 * @property {number} attempt   failed attempts since the last stable connection
 * @property {number} [delayMs] 'reconnecting' only: wait before the next attempt
 * @property {Error} [error]    'reconnecting': why the last connection ended
 *   (STOMP ERROR frame, WebSocket close code/reason, a connectHeaders() rejection,
 *   or a failed session request); 'closed': set only when the client gave up by
 *   itself (a {@link SessionError} with `fatal: true`, e.g. HTTP 401/403)
 * @property {boolean} [fatal]  'closed' only: true when the client closed itself
 *   because of `error` (it does not retry; call connect() again, e.g. after login)
 * @property {boolean} [queueReset] 'connected' only: this tab's queue was gone and
 *   has been created again, so messages published while it was missing never
 *   arrive: reload the page's state. Tab-session mode: exact, the server had to
 *   create the queue since this client's previous session (it expired while the
 *   tab was away longer than its x-expires, an operator deleted it, or the broker
 *   lost it). Headers mode: an estimate, nothing was heard from the broker for at
 *   least the shortest subscription's expiresMs (the queue has expired, or is
 *   about to); a deleted or lost queue cannot be seen there.
 *
 * @property {string} [url] 'connected': the Web-STOMP URL of this connection;
 *   'reconnecting': the URL of the attempt that ended (the next attempt uses
 *   the next URL of the list)
 *
 * @property {'pagehide'|'freeze'} [reason] 'closed' only: the page was hidden
 *   (navigation, back/forward cache) or frozen; the client connects again by
 *   itself on pageshow/resume
 *
 * @typedef {object} DurableMessage
 * @property {string|undefined} id  `amqp-message-id` (the Watermill UUID), or the
 *   `_watermill_message_uuid` header; used for de-duplication
 * @property {string} body          the body decoded as UTF-8
 * @property {() => Uint8Array} bytes  the body's bytes as received (binary
 *   WebSocket frames, `web_stomp.ws_frame = binary`, keep non-UTF-8 bytes intact)
 * @property {() => any} json       JSON.parse(body); works detached (`const {json} = msg`)
 * @property {Record<string,string>} headers all STOMP headers (AMQP properties
 *   and the Go side's metadata, e.g. `routing_key`, `correlation_id`)
 * @property {string} routingKey    the routing key it was published with ('' if unknown)
 * @property {boolean} redelivered  the broker delivered it before (unacked then)
 * @property {string} subscription the subscription name
 * @property {number} [offset]     stream subscriptions: the message's offset in the stream
 * @property {string} [stream]     stream subscriptions: the stream's name
 *
 * @typedef {'ack'|'park'|'retry'} FailureAction
 *   what happens to a message whose handler failed retry.attempts times:
 *   'ack' acknowledge and drop it; 'park' NACK it without requeue (the broker
 *   dead-letters it to the queue's dead-letter exchange, or discards it) and go
 *   on; 'retry' keep it and try another round. On a stream (which cannot take
 *   a NACK) 'park' acks it and moves on: the stream still holds it at
 *   msg.offset, so the page may keep that offset and read it again elsewhere
 *
 * @typedef {'next'|'first'|{last: number}|{timestamp: number}|{first: true}} StartPosition
 *   where a stream subscription starts when the tab has no offset for it yet:
 *   the JSON of the Go side's broadcast.Position ({last: N}: the page's state
 *   includes offset N; {timestamp: S}: unix seconds), or 'next'/'first'
 *
 * @typedef {object} SubscribeOptions
 * @property {string} [name]  [A-Za-z0-9_.-], unique per client, part of the queue
 *   name; required except for streams (default: the stream's name)
 * @property {string} [stream]  subscribe to this RabbitMQ stream (a broadcast
 *   many tabs share) instead of a per-tab queue: resumes at the offset this tab
 *   handled last (sessionStorage), reports a 'gap' when retention removed what
 *   it missed, never NACKs; both modes (tab-session mode: the session must
 *   grant it, see README)
 * @property {StartPosition} [start]  streams: where to start while the tab has
 *   no offset (default: the session's start for the stream, else 'next')
 * @property {string} [exchange]    headers mode: the exchange (must exist)
 * @property {string} [bindingKey]  headers mode: e.g. 'customer.42.#' ('' for fanout)
 * @property {number} [expiresMs]   headers mode: x-expires of the queue (default 3600000)
 * @property {number} [prefetch]    unacked messages in flight (default 10, 1..1000)
 * @property {{attempts?: number, initialMs?: number, maxMs?: number}} [retry]
 *   handler calls per message before onError decides (default 3) and the
 *   back-off between them (default 200 ms .. 5 s, full jitter)
 * @property {number} [handlerTimeoutMs=30000]  a handler that has not settled
 *   by then counts as failed with a {@link HandlerTimeoutError} (0: no limit)
 * @property {(err: any, msg: DurableMessage, info: {attempts: number}) =>
 *   (FailureAction|void|Promise<FailureAction|void>)} [onError]
 *   decides after the last attempt; undefined (or no onError) parks the message
 *
 * @typedef {object} SubscriptionStats
 * @property {number} delivered  MESSAGE frames received
 * @property {number} handled    messages whose handlers resolved
 * @property {number} duplicates dropped (and acked) as already handled
 * @property {number} failed     failed handler attempts (time-outs included)
 * @property {number} timeouts   attempts that hit handlerTimeoutMs
 * @property {number} retries    attempts repeated after a failure
 * @property {number} dropped    acked without success (onError said 'ack')
 * @property {number} parked     NACKed without requeue after failing
 * @property {number} unrouted   acked because no handler or pattern wanted them
 * @property {number} acked      ACK frames sent
 * @property {number} stale      dropped because their connection ended (the broker redelivers them)
 * @property {number} skipped    streams: acked without handling, offset already handled (a resume repeats the last one)
 * @property {number} gaps       streams: gaps reported (see the 'gap' event)
 *
 * @typedef {object} GapEvent  the 'gap' event: offsets `from`..`to` of `stream`
 *   may have held messages this tab will never get (retention removed them while
 *   it was away); the subscription carries on at `to + 1`. Offsets are not
 *   dense: a range says "possibly lost", not how many
 * @property {string} subscription
 * @property {string} stream
 * @property {number} from
 * @property {number} to
 *
 * @typedef {object} RetryEvent  the 'retry' event: a handler attempt failed, another follows
 * @property {string} subscription
 * @property {string|undefined} id
 * @property {number} attempt   the attempt that failed (1-based)
 * @property {number} delayMs   wait before the next attempt
 * @property {any} error
 * @property {DurableMessage} message
 *
 * @typedef {object} FailedEvent  the 'failed' event: every attempt failed; `action` is what happened
 * @property {string} subscription
 * @property {string|undefined} id
 * @property {number} attempts
 * @property {FailureAction} action
 * @property {any} error
 * @property {DurableMessage} message
 *
 * @typedef {object} SessionOptions
 * @property {string} url  the application's tab-session endpoint (same origin),
 *   e.g. '/api/tab-session'; see the Go package tabsession (Handler)
 * @property {{exchange: string, key: string}[]} [bindings]  ask for only these of
 *   the bindings the server allows (default: all of them); one not allowed is 403
 * @property {typeof fetch} [fetch]  instead of globalThis.fetch (tests, or to wrap it)
 * @property {() => (Record<string, string>|Promise<Record<string, string>>)} [getHeaders]
 *   extra request headers for every session request (a CSRF token, a bearer
 *   token); a rejection counts as a failed attempt
 * @property {number} [timeoutMs=10000]  a session request not answered by then
 *   is abandoned and retried with back-off
 * @property {object|string} [initial]  a session the server prepared while
 *   rendering the page (the session endpoint's JSON, as object or string): the
 *   first connection uses it, so events published after the render are
 *   delivered; reconnects fetch fresh sessions from url
 *
 * @typedef {object} ClientOptions
 * @property {string|string[]} [url]  e.g. 'ws://127.0.0.1:15674/ws', or one URL per
 *   cluster node: the client starts at a random one (so a fleet of tabs spreads
 *   over the nodes) and moves to the next one after every failed attempt (not
 *   with session: the session response names them, `url` or `urls`)
 * @property {SessionOptions} [session]  tab-session mode (recommended for pages
 *   on the Internet): before every connection attempt, POST to session.url for
 *   this tab's server-declared queue and a short-lived read-only token; see README
 * @property {string} [login]
 * @property {string} [passcode]
 * @property {string} [vhost='/']   sent as the STOMP `host` header
 * @property {() => Promise<{login?: string, passcode?: string}>} [connectHeaders]
 *   called before every connection attempt (e.g. to fetch a fresh token); its
 *   result overrides login/passcode; a rejection counts as a failed attempt
 * @property {number} [heartbeatMs=10000]  STOMP heart-beat in both directions
 *   (0 disables; keep it on: Web-STOMP closes idle sockets after 60 s)
 * @property {boolean} [heartbeatWorker=true]  send heart-beats from a Web Worker
 *   (blob: URL) so background-tab timer throttling can't starve them; needs CSP
 *   `worker-src blob:` if the page has a CSP
 * @property {{initialMs?: number, maxMs?: number}} [reconnect]  back-off
 *   (default 500 ms .. 30 s, exponential with full jitter)
 * @property {number} [stableMs=10000]  a connection that was fully subscribed for
 *   this long resets the back-off when it ends
 * @property {number} [connectTimeoutMs=10000]  give up an attempt that has not
 *   received CONNECTED by then
 * @property {StorageLike} [storage=sessionStorage]  where the tab id and the
 *   de-dup windows live
 * @property {string} [storageKey='durablews.tabId']
 * @property {string} [queuePrefix='tab']  queue names are `<queuePrefix>-<tabId>-<name>`
 * @property {number} [dedupWindow=1000]  recent message ids remembered per subscription
 * @property {number} [duplicateTabCheckMs=150]  how long connect() waits for another
 *   tab to object to this tab's id (BroadcastChannel); 0 disables the check
 * @property {(msg: string) => void} [debug]  stompjs debug log
 * @property {(url: string|undefined) => WebSocket} [webSocketFactory]  instead of
 *   opening url (tests, or to wrap the socket); gets the URL to open (the session's
 *   url in tab-session mode); a throw counts as a failed attempt
 */

/**
 * @typedef {object} ClientEvents  what {@link DurableClient#on} can listen to
 * @property {[ConnectionState, StateDetail]} state  every state change
 * @property {[StateDetail]} connecting
 * @property {[StateDetail]} connected
 * @property {[StateDetail]} reconnecting
 * @property {[StateDetail]} closed
 * @property {[RetryEvent]} retry
 * @property {[FailedEvent]} failed
 * @property {[GapEvent]} gap
 */

/**
 * A refused or failed tab-session request. `status` is the HTTP status (0 for a
 * network error or an unusable response), `code` the server's `error` field
 * (e.g. 'unauthenticated', 'forbidden'), `fatal` whether the client gave up
 * (4xx other than 408/429) instead of retrying with back-off.
 */
export class SessionError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, code?: string, fatal?: boolean, cause?: any}} [opts]
   */
  constructor(message, { status = 0, code, fatal = false, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'SessionError';
    this.status = status;
    this.code = code;
    this.fatal = fatal;
  }
}

/** Handler time-out: the error a handler that did not settle in time fails with. */
export class HandlerTimeoutError extends Error {
  /** @param {string} message @param {number} timeoutMs */
  constructor(message, timeoutMs) {
    super(message);
    this.name = 'HandlerTimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

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
    this._active = true;
    this._seen = new DedupWindow(client._dedupSize);
    this._seenKey = `${client._storageKey}.seen.${spec.name}`;
    this._seen.load(readJSON(client._storage, this._seenKey));
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
      this._posKey = `${client._storageKey}.stream.${spec.stream}`;
      let last = null;
      try {
        const p = parsePosition(readJSON(client._storage, this._posKey));
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
    if (this._spec.session) return this._client._session?.queue ?? null;
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
      const s = this._client._session;
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
    if (!this._client._sessionOpts) return streamDestination(stream);
    return this._client._session?.streams.get(stream)?.destination ?? null;
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
      this._client._session?.streams.get(/** @type {string} */ (this._streamName))?.start ?? { kind: 'next' }
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

  /** @internal send SUBSCRIBE on a live connection; resolves on its RECEIPT */
  _attach(stomp, gen) {
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
    const confirmed = new Promise((resolve) => stomp.watchForReceipt(receipt, () => resolve()));
    stomp.subscribe(destination, (frame) => this._enqueue(frame, gen), { ...headers, receipt });
    return confirmed;
  }

  /** @internal send UNSUBSCRIBE */
  _detach(stomp) {
    try {
      stomp.unsubscribe(/** @type {Record<string, string>} */ (this.headers).id);
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
    return this._active && gen === this._client._liveGen;
  }

  async _process(frame, gen) {
    const client = this._client;
    if (!this._active) return;
    if (gen !== client._liveGen) {
      // Its connection is gone: the broker already requeued it. Acking it on
      // another connection would ack a different delivery, so drop it.
      this._stats.stale++;
      return;
    }
    if (this._streamName !== undefined) return this._processStream(frame, gen);
    const msg = makeMessage(frame, this._spec.name);
    if (this._seen.has(msg.id)) {
      this._stats.duplicates++;
      this._ack(frame, gen);
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
    this._ack(frame, gen);
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
        this._ack(frame, gen);
        return;
      }
    }
    const msg = makeMessage(frame, this._spec.name, off, this._streamName);
    if (this._seen.has(msg.id)) {
      this._stats.duplicates++;
    } else {
      const handlers = this._handlersFor(msg);
      if (handlers.length === 0) {
        this._stats.unrouted++;
      } else {
        const outcome = await this._handleWithRetries(msg, handlers, gen);
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
    this._ack(frame, gen);
  }

  /** Stream: off is handled; store it before the ACK (a reload resumes there). */
  _recordOffset(off) {
    if (off === undefined || (this._last !== null && off <= this._last)) return;
    this._last = off;
    this._pos = { kind: 'last', offset: off };
    writeJSON(this._client._storage, /** @type {string} */ (this._posKey), { last: off });
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
    writeJSON(this._client._storage, this._seenKey, this._seen.ids());
  }

  /** @internal forget the de-dup window (this tab became another tab) */
  _clearSeen() {
    this._seen.clear();
    this._saveSeen();
  }

  _ack(frame, gen) {
    const client = this._client;
    if (gen !== client._liveGen || !client._stomp || !client._stomp.connected) return;
    try {
      frame.ack(); // bound by stompjs to the connection that delivered it
      this._stats.acked++;
    } catch (e) {
      client._debug(`ack failed: ${e}`);
    }
  }

  // NACK without requeue: the broker dead-letters the message (the queue's
  // x-dead-letter-exchange) or, without one, discards it. A requeueing NACK
  // would hand it straight back: a hot loop.
  _nack(frame, gen) {
    const client = this._client;
    if (gen !== client._liveGen || !client._stomp || !client._stomp.connected) return;
    try {
      frame.nack({ requeue: 'false' });
    } catch (e) {
      client._debug(`nack failed: ${e}`);
    }
  }
}

/**
 * Browser client delivering messages from durable per-tab RabbitMQ queues over
 * Web-STOMP, with at-least-once delivery.
 *
 * - Each tab has a stable id (sessionStorage) and each subscription a durable
 *   queue `tab-<tabId>-<name>`, so messages published while the tab is
 *   disconnected or reloading wait in the queue (until `expiresMs` unused).
 * - A message is acked only after its handler resolved. If the handler throws,
 *   the message is left unacked (not nacked, which would redeliver it at once in
 *   a hot loop) and comes back after the next reconnect, unless `onError`
 *   returns 'ack'.
 * - Messages are de-duplicated by `amqp-message-id` within a bounded window.
 * - Reconnects with exponential back-off and full jitter and re-subscribes with
 *   identical headers.
 * - With `session: {url}` (tab-session mode, for pages on the Internet) the
 *   server declares and binds the tab's queue: before every connection attempt
 *   the client POSTs to session.url for it and a fresh read-only token. Without
 *   it the page declares its own queues with shared credentials (trusted
 *   deployments only). See README.md.
 */
export class DurableClient {
  /** @param {ClientOptions} opts */
  constructor(opts = {}) {
    this._sessionOpts = null;
    if (opts.session !== undefined) {
      const so = opts.session;
      if (so === null || typeof so !== 'object' || typeof so.url !== 'string' || so.url === '') {
        throw new TypeError('DurableClient: session needs {url: string}, e.g. {url: "/api/tab-session"}');
      }
      if (so.bindings !== undefined && (!Array.isArray(so.bindings) || so.bindings.length === 0)) {
        throw new TypeError('DurableClient: session.bindings must be a non-empty array of {exchange, key}');
      }
      if (opts.url !== undefined || opts.connectHeaders || opts.login !== undefined || opts.passcode !== undefined) {
        throw new TypeError('DurableClient: with session, leave out url, login, passcode and connectHeaders (the session response provides them)');
      }
      if (so.fetch === undefined && typeof globalThis.fetch !== 'function') {
        throw new TypeError('DurableClient: session mode needs fetch');
      }
      if (so.getHeaders !== undefined && typeof so.getHeaders !== 'function') {
        throw new TypeError('DurableClient: session.getHeaders must be a function returning (a promise of) a headers object');
      }
      // Called as a plain function: window.fetch throws "Illegal invocation"
      // when called as a method of another object.
      const f = so.fetch ?? ((input, init) => globalThis.fetch(input, init));
      this._sessionOpts = {
        url: so.url,
        bindings: so.bindings,
        fetch: f,
        getHeaders: so.getHeaders,
        timeoutMs: normalizeTimeout(so.timeoutMs ?? DEFAULTS.session.timeoutMs, 'session.timeoutMs'),
      };
    }
    /** headers mode: the Web-STOMP URLs (one per node); empty with only a webSocketFactory */
    this._urls = this._sessionOpts || (opts.webSocketFactory && opts.url === undefined) ? [] : urlList(opts.url, 'DurableClient: ');
    // A random first node spreads a fleet of tabs over the cluster; every
    // failed attempt moves on to the next one (see _failed, _pickUrl).
    this._urlSpread = Math.random();
    this._urlIndex = 0;
    /** the URL of the current (or last) connection attempt */
    this._attemptUrl = undefined;
    this._webSocketFactory = opts.webSocketFactory;
    this._login = opts.login;
    this._passcode = opts.passcode;
    this._vhost = opts.vhost ?? DEFAULTS.vhost;
    this._connectHeaders = opts.connectHeaders;
    this._heartbeatMs = opts.heartbeatMs ?? DEFAULTS.heartbeatMs;
    this._heartbeatWorker = opts.heartbeatWorker ?? DEFAULTS.heartbeatWorker;
    this._reconnect = { ...DEFAULTS.reconnect, ...(opts.reconnect ?? {}) };
    this._stableMs = opts.stableMs ?? DEFAULTS.stableMs;
    this._connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    this._dedupSize = opts.dedupWindow ?? DEFAULTS.dedupWindow;
    new DedupWindow(this._dedupSize); // validate
    this._dupCheckMs = opts.duplicateTabCheckMs ?? DEFAULTS.duplicateTabCheckMs;
    this._debugFn = opts.debug;
    this._queuePrefix = opts.queuePrefix ?? DEFAULTS.queuePrefix;

    this._storage = opts.storage ?? defaultStorage();
    this._storageKey = opts.storageKey ?? DEFAULTS.storageKey;
    this._tabId = this._loadTabId();
    queueName(this._queuePrefix, this._tabId, 'x'); // validate prefix
    /** a session the server prepared at render time, for the first connection only */
    this._initialSession = null;
    if (this._sessionOpts && opts.session?.initial !== undefined) {
      let init = opts.session.initial;
      try {
        if (typeof init === 'string') init = JSON.parse(init);
        this._initialSession = parseSession(init);
      } catch (e) {
        throw new TypeError(`DurableClient: session.initial is not a usable tab session: ${e.message}`);
      }
      // Its queue is this tab's from now on (the server made it for this page).
      this._adoptTabId(this._initialSession.tabId);
    }
    /** @type {{match: (rk: string) => boolean, fn: (msg: DurableMessage) => any, pattern: string}[]} */
    this._routes = [];
    /** @type {Map<string, Set<Function>>} */
    this._events = new Map();
    this._ready = deferred();

    /** @type {Set<Subscription>} */
    this._subs = new Set();
    /** @type {ConnectionState} */
    this._state = 'closed';
    this._closed = true;
    this._gen = 0; // bumped for every connection attempt
    this._liveGen = 0; // gen of the connection that is currently CONNECTED, else 0
    this._stomp = null;
    this._timer = null;
    this._attempt = 0;
    this._healthySince = 0;
    this._claim = null;
    this._channel = null;
    /** newest tab-session response (parsed), tab-session mode only */
    this._session = null;
    /** a session since the previous one created the queue again; reported with the next 'connected' */
    this._queueReset = false;
    /** headers mode: when the broker was last heard from on a connection that was live */
    this._lastHeard = 0;
    /** headers mode: _lastHeard of the connection that ended; 0 while connected or never connected */
    this._offlineSince = 0;
  }

  /** This tab's id (see README: duplicated tabs get a new one on connect()). */
  get tabId() {
    return this._tabId;
  }

  /** @returns {ConnectionState} */
  get state() {
    return this._state;
  }

  /**
   * Listen to connection state changes (the same as `on('state', fn)`).
   * @param {(state: ConnectionState, detail: StateDetail) => void} fn
   * @returns {() => void} call to stop listening
   */
  onState(fn) {
    return this.on('state', fn);
  }

  /**
   * Listen to an event, or handle messages by routing-key pattern.
   *
   * Events: 'state' `(state, detail)`; 'connecting', 'connected',
   * 'reconnecting', 'closed' `(detail)`; 'retry' {@link RetryEvent}; 'failed'
   * {@link FailedEvent}.
   *
   * Any other name is an AMQP topic pattern (`*` one word, `#` any number):
   * `client.on('customer.*.order_paid', async (msg) => ...)` calls the handler
   * for every message of every subscription whose routing key matches, in
   * addition to the subscription's own handler. Each message is acked once all
   * its handlers resolved; if one fails, all of them run again (retries), so
   * keep them idempotent. A message no handler wants is acked
   * (`stats.unrouted`). In tab-session mode patterns need no subscribe():
   * without one, connect() subscribes to the session queue as 'events'.
   *
   * @template {string} K
   * @param {K} name
   * @param {K extends keyof ClientEvents ? (...args: ClientEvents[K]) => void : (msg: DurableMessage) => (void|Promise<void>)} fn
   * @returns {() => void} call to stop listening (or use off)
   */
  on(name, fn) {
    if (typeof fn !== 'function') throw new TypeError(`on(${JSON.stringify(name)}): needs a function`);
    if (EVENT_NAMES.has(name)) {
      let set = this._events.get(name);
      if (!set) this._events.set(name, (set = new Set()));
      set.add(fn);
    } else {
      this._routes.push({ pattern: name, match: topicMatcher(name), fn: /** @type {any} */ (fn) });
      if (!this._closed) this._autoSubscribe();
    }
    return () => this.off(name, fn);
  }

  /**
   * Like {@link DurableClient#on}, once: the listener is removed after its first call.
   * @template {string} K
   * @param {K} name
   * @param {K extends keyof ClientEvents ? (...args: ClientEvents[K]) => void : (msg: DurableMessage) => (void|Promise<void>)} fn
   * @returns {() => void}
   */
  once(name, fn) {
    const wrapped = /** @type {any} */ ((...args) => {
      off();
      return /** @type {any} */ (fn)(...args);
    });
    wrapped._orig = fn;
    const off = this.on(name, wrapped);
    return off;
  }

  /**
   * Stop a listener or pattern handler added with on() or once().
   * @param {string} name
   * @param {Function} fn
   */
  off(name, fn) {
    const set = this._events.get(name);
    if (set) {
      for (const f of set) if (f === fn || /** @type {any} */ (f)._orig === fn) set.delete(f);
      return;
    }
    this._routes = this._routes.filter((r) => !(r.pattern === name && (r.fn === fn || /** @type {any} */ (r.fn)._orig === fn)));
  }

  /**
   * A promise for the first 'connected' state: the subscriptions are
   * confirmed. Once resolved it stays resolved (watch 'reconnecting' for
   * later outages). Rejects with the error if the client gives up before
   * (state 'closed' with `fatal`, e.g. a 401 from the session endpoint);
   * after that, ready() waits for the first 'connected' of the next connect().
   * @returns {Promise<void>}
   */
  ready() {
    if (this._state === 'connected') return Promise.resolve();
    return this._ready.promise;
  }

  /**
   * Subscribe to an exchange through a durable per-tab queue. May be called
   * before or after connect(). Names must be unique per client.
   *
   * A message is acked once its handler (and every matching client.on
   * pattern handler) resolved. A failing one is retried in the tab with
   * back-off (spec.retry, 'retry' events); after the last attempt onError
   * decides (a 'failed' event either way), so the subscription never waits on
   * a poison message.
   *
   * @param {SubscribeOptions} spec  expiresMs (default 3600000) and prefetch
   *   (default 10, max 1000) become queue arguments / consumer settings: keep
   *   them the same across releases, a changed x-expires makes RabbitMQ refuse
   *   the SUBSCRIBE. In tab-session mode only name, prefetch, retry,
   *   handlerTimeoutMs and onError.
   * @param {(msg: DurableMessage) => (void|Promise<void>)} [handler]  acked once it resolves
   * @returns {Subscription}
   */
  subscribe(spec, handler) {
    if (handler !== undefined && typeof handler !== 'function') {
      throw new TypeError('subscribe(spec, handler): handler must be a function (or left out, to use client.on(pattern, fn) handlers)');
    }
    const stream = spec !== null && typeof spec === 'object' && spec.stream !== undefined ? normalizeStreamSpec(spec) : null;
    const norm = stream ?? (this._sessionOpts ? normalizeSessionSpec(spec) : normalizeSpec(/** @type {any} */ (spec)));
    if (stream) {
      for (const s of this._subs) {
        if (s._streamName === stream.stream) throw new Error(`stream ${stream.stream} is already subscribed (subscription ${s.name}); one subscription per stream keeps one offset`);
      }
      if (this._session && !this._session.streams.has(stream.stream)) throw streamNotGranted([stream.stream]);
    } else if (this._sessionOpts && this._queueSubs().length > 0) {
      // One queue per tab session: two consumers on it would split its messages.
      throw new Error(
        this._autoSub
          ? 'tab-session mode allows one subscription: client.on(pattern) already consumes the session queue (call subscribe() before connect(), or use only client.on patterns)'
          : 'tab-session mode allows one subscription (the session queue)',
      );
    }
    for (const s of this._subs) {
      if (s.name === norm.name) throw new Error(`subscription name ${norm.name} already in use`);
    }
    const sub = new Subscription(this, { ...norm, retry: spec.retry, handlerTimeoutMs: spec.handlerTimeoutMs }, handler, spec.onError);
    this._subs.add(sub);
    if (this._liveGen !== 0 && this._stomp && sub.headers) {
      const gen = this._liveGen;
      sub._attach(this._stomp, gen).catch(() => {});
    }
    return sub;
  }

  /**
   * Start connecting (and keep reconnecting until close()). Resolves once the
   * first attempt has started (after the duplicated-tab check).
   * @returns {Promise<void>}
   */
  async connect() {
    if (!this._closed) return;
    this._watchPageLifecycle();
    this._closed = false;
    this._resumeOn = null;
    this._attempt = 0;
    this._autoSubscribe();
    this._setState('connecting', { attempt: 0 });
    const gen = this._gen; // close() bumps it: a close()+connect() during the claim wins
    await this._claimTabId();
    if (this._closed || gen !== this._gen) return;
    void this._open();
  }

  /**
   * Disconnect and stop reconnecting. Unacked messages return to the queues.
   * @returns {Promise<void>}
   */
  async close() {
    this._resumeOn = null; // closed on purpose: pageshow/resume must not reopen it
    await this._shutdown({ attempt: this._attempt });
  }

  // ---- internals ----

  /**
   * Tab-session mode has one queue: pattern handlers alone (no subscribe())
   * consume it through a subscription named 'events' made here.
   */
  _autoSubscribe() {
    if (!this._sessionOpts || this._queueSubs().length > 0 || this._routes.length === 0) return;
    this.subscribe({ name: 'events' });
    this._autoSub = true;
  }

  async _shutdown(detail) {
    if (this._closed) return;
    this._closed = true;
    this._gen++;
    if (this._liveGen && !this._offlineSince) this._offlineSince = Date.now(); // the consumer leaves now
    this._liveGen = 0;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    const stomp = this._stomp;
    this._stomp = null;
    if (this._channel) this._channel.close();
    this._channel = null;
    this._claim = null;
    for (const sub of this._subs) sub._saveSeen();
    if (detail.fatal) {
      // A fatal close before the first 'connected' rejects ready(); a later
      // connect() gets a fresh promise.
      const r = this._ready;
      this._ready = deferred();
      r.reject(detail.error);
    }
    this._setState('closed', detail);
    if (stomp) await stomp.deactivate();
  }

  /**
   * On reload or navigation the old page's socket otherwise lingers for a
   * moment, and the broker keeps handing it (up to prefetch) messages that
   * then come back to the new page as redeliveries. Closing on pagehide
   * hands them back at once (and writes the de-dup windows); a page restored
   * from the back/forward cache connects again on pageshow, with the same
   * tab id, queue and de-dup window. A frozen tab (Page Lifecycle 'freeze':
   * its timers stop, heart-beats too) does the same on freeze/resume, rather
   * than leave its prefetched messages with a socket that cannot answer.
   */
  _watchPageLifecycle() {
    if (this._pageWatched) return;
    const win = typeof window !== 'undefined' ? window : undefined;
    const doc = typeof document !== 'undefined' ? document : undefined;
    if (!win?.addEventListener) return;
    this._pageWatched = true;
    /** @param {'pagehide'|'freeze'} reason */
    const pause = (reason) => {
      if (this._closed) return;
      void this._shutdown({ attempt: this._attempt, reason });
      this._resumeOn = reason;
    };
    /** @param {'pagehide'|'freeze'} reason */
    const resume = (reason) => {
      if (this._resumeOn !== reason || !this._closed) return;
      this._resumeOn = null;
      void this.connect();
    };
    win.addEventListener('pagehide', () => pause('pagehide'));
    win.addEventListener('pageshow', (ev) => {
      if (/** @type {PageTransitionEvent} */ (ev).persisted) resume('pagehide');
    });
    doc?.addEventListener?.('freeze', () => pause('freeze'));
    doc?.addEventListener?.('resume', () => resume('freeze'));
  }

  _debug(msg) {
    if (this._debugFn) this._debugFn(msg);
  }

  /**
   * @param {ConnectionState} state
   * @param {StateDetail} detail
   */
  _setState(state, detail) {
    this._state = state;
    if (state === 'connected') this._ready.resolve();
    this._emit('state', state, detail);
    this._emit(state, detail);
  }

  /** Call the listeners of an event; a throwing listener is logged, not fatal. */
  _emit(name, ...args) {
    const set = this._events.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        console.error(`durablews: ${name} listener threw`, e);
      }
    }
  }

  /**
   * The URL for this attempt: a random start (the same for every list this
   * client gets), then one step further after every failed attempt.
   * @param {string[]} urls
   */
  _pickUrl(urls) {
    return urls[(Math.floor(this._urlSpread * urls.length) + this._urlIndex) % urls.length];
  }

  /** The per-tab queue subscriptions (not streams). */
  _queueSubs() {
    return [...this._subs].filter((s) => s._streamName === undefined);
  }

  _remove(sub) {
    this._subs.delete(sub);
    if (this._liveGen !== 0 && this._stomp) sub._detach(this._stomp);
  }

  _loadTabId() {
    let id = null;
    try {
      id = this._storage.getItem(this._storageKey);
    } catch {
      // storage unavailable
    }
    if (!isValidTabId(id)) {
      id = generateTabId();
      this._storeTabId(id);
    }
    return id;
  }

  _storeTabId(id) {
    try {
      this._storage.setItem(this._storageKey, id);
    } catch {
      // storage full or unavailable: the id lives as long as this page
    }
  }

  // Duplicated-tab detection: "Duplicate tab" copies sessionStorage, so two
  // tabs would share a tab id and compete on the same queues. Announce our id
  // on a BroadcastChannel; a live tab that owns it answers 'taken' and we pick
  // a new one. The channel stays open (until close()) to answer later claims.
  _claimTabId() {
    if (this._claim) return this._claim;
    if (typeof BroadcastChannel === 'undefined' || !(this._dupCheckMs > 0)) {
      this._claim = Promise.resolve();
      return this._claim;
    }
    const ch = new BroadcastChannel(CHANNEL_NAME);
    this._channel = ch;
    const me = { tabId: this._tabId, nonce: generateTabId(), owned: false };
    this._claim = new Promise((resolve) => {
      const own = () => {
        if (me.owned) return;
        me.owned = true;
        clearTimeout(timer);
        resolve();
      };
      const renew = () => {
        const old = this._tabId;
        this._tabId = generateTabId();
        this._storeTabId(this._tabId);
        me.tabId = this._tabId;
        // The ids the original tab handled are not this tab's, and a session
        // prepared for the original's page is the original's queue.
        for (const sub of this._subs) sub._clearSeen();
        this._initialSession = null;
        this._debug(`duplicated tab detected: tab id ${old} -> ${this._tabId}`);
        own(); // a fresh 128-bit random id cannot collide
      };
      ch.onmessage = (ev) => {
        const m = ev.data;
        if (!m || typeof m !== 'object' || m.doc === DOC_ID) return;
        if (m.type === 'claim') {
          const verdict = onClaim(me, m);
          if (verdict === 'reply-taken') {
            ch.postMessage({ type: 'taken', tabId: me.tabId, to: m.nonce, doc: DOC_ID });
          } else if (verdict === 'yield') {
            renew();
          }
        } else if (m.type === 'taken' && !me.owned && m.tabId === me.tabId && m.to === me.nonce) {
          renew();
        }
      };
      const timer = setTimeout(own, this._dupCheckMs);
      ch.postMessage({ type: 'claim', tabId: me.tabId, nonce: me.nonce, doc: DOC_ID });
    });
    return this._claim;
  }

  /**
   * POST to the session endpoint; on success remembers the session and the
   * tab id it names (sessionStorage). Throws SessionError.
   */
  async _fetchSession() {
    const so = /** @type {NonNullable<DurableClient['_sessionOpts']>} */ (this._sessionOpts);
    /** @type {{tab_id: string, bindings?: {exchange: string, key: string}[]}} */
    const body = { tab_id: this._tabId };
    if (so.bindings) body.bindings = so.bindings;
    /** @type {Record<string, string>} */
    let extra = {};
    if (so.getHeaders) {
      try {
        extra = (await so.getHeaders()) ?? {};
      } catch (e) {
        throw new SessionError(`tab session request: getHeaders() failed: ${e?.message ?? e}`, { cause: e });
      }
    }
    const abort = typeof AbortController === 'function' ? new AbortController() : null;
    let timedOut = false;
    const timer = so.timeoutMs > 0 ? setTimeout(() => ((timedOut = true), abort?.abort()), so.timeoutMs) : null;
    let res;
    let data = null;
    try {
      try {
        res = await so.fetch(so.url, {
          method: 'POST',
          headers: { ...extra, 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify(body),
          credentials: 'same-origin',
          cache: 'no-store',
          signal: abort?.signal,
        });
      } catch (e) {
        if (timedOut) throw timeoutError(so.timeoutMs, e);
        throw new SessionError(`tab session request failed: ${e?.message ?? e}`, { cause: e });
      }
      try {
        data = await res.json();
      } catch (e) {
        if (timedOut) throw timeoutError(so.timeoutMs, e);
        // not JSON: reported below
      }
    } finally {
      if (timer) clearTimeout(timer);
    }
    if (!res.ok) {
      const code = typeof data?.error === 'string' ? data.error : undefined;
      const detail = [code, typeof data?.message === 'string' ? data.message : ''].filter(Boolean).join(': ');
      throw new SessionError(`tab session refused: HTTP ${res.status}${detail ? ` ${detail}` : ''}`, {
        status: res.status,
        code,
        fatal: sessionErrorIsFatal(res.status),
      });
    }
    let s;
    try {
      s = parseSession(data);
    } catch (e) {
      const unsupported = !!e.unsupportedVersion;
      throw new SessionError(e.message, {
        status: res.status,
        cause: e,
        code: unsupported ? 'unsupported_version' : undefined,
        fatal: unsupported, // retrying the same server cannot help
      });
    }
    return this._useSession(s);
  }

  /** Remember a session (fetched or prepared) and the tab id it names. */
  _useSession(s) {
    this._adoptTabId(s.tabId);
    // The first session of this client creating the queue is normal; a
    // later one means the queue had been lost in between.
    if (s.queueCreated && this._session !== null) this._queueReset = true;
    this._session = s;
    return s;
  }

  _adoptTabId(tabId) {
    if (tabId === this._tabId) return;
    this._debug(`tab session: tab id ${this._tabId} -> ${tabId}`);
    this._tabId = tabId;
    this._storeTabId(tabId);
  }

  /** The prepared session if it is still good for a connection, once. */
  _takeInitialSession() {
    const s = this._initialSession;
    this._initialSession = null;
    // A page kept open (or restored) long after its render: the token may be
    // gone, so ask for a fresh session instead of failing one attempt.
    if (s && !(s.expiresAt - Date.now() > 5000)) {
      this._debug('prepared tab session expired; requesting a new one');
      return null;
    }
    return s;
  }

  async _open() {
    const gen = ++this._gen;
    let creds = {};
    let url = this._urls.length ? this._pickUrl(this._urls) : undefined;
    let vhost = this._vhost;
    if (this._sessionOpts) {
      // A fresh token for every connection attempt: the broker checks it at
      // CONNECT and SUBSCRIBE only, so an open connection outlives it.
      let s = this._takeInitialSession();
      try {
        s = s ? this._useSession(s) : await this._fetchSession();
      } catch (e) {
        if (gen !== this._gen || this._closed) return;
        if (e.fatal) {
          this._debug(`giving up: ${e.message}`);
          void this._shutdown({ attempt: this._attempt, error: e, fatal: true });
        } else {
          this._failed(gen, e);
        }
        return;
      }
      const missing = [...this._subs].filter((x) => x._streamName !== undefined && !s.streams.has(x._streamName));
      if (missing.length > 0) {
        const err = streamNotGranted(missing.map((x) => /** @type {string} */ (x._streamName)));
        this._debug(`giving up: ${err.message}`);
        void this._shutdown({ attempt: this._attempt, error: err, fatal: true });
        return;
      }
      creds = { login: '', passcode: s.token }; // the broker names the connection after the token's sub
      url = this._pickUrl(s.urls);
      vhost = s.vhost;
    } else if (this._connectHeaders) {
      try {
        creds = (await this._connectHeaders()) ?? {};
      } catch (e) {
        this._failed(gen, e instanceof Error ? e : new Error(String(e)));
        return;
      }
    }
    if (gen !== this._gen || this._closed) return;
    this._attemptUrl = url;
    const connectHeaders = { host: vhost };
    const login = creds.login ?? this._login;
    const passcode = creds.passcode ?? this._passcode;
    if (login !== undefined) connectHeaders.login = String(login);
    if (passcode !== undefined) connectHeaders.passcode = String(passcode);

    // The socket is opened here rather than by stompjs: a constructor that
    // throws (a URL the browser refuses, a throwing webSocketFactory) would
    // reject inside stompjs where nobody hears it, leaving 'connecting' for ever.
    let ws;
    try {
      ws = this._webSocketFactory ? this._webSocketFactory(url) : new WebSocket(/** @type {string} */ (url), STOMP_PROTOCOLS);
      if (!ws) throw new TypeError('webSocketFactory returned no WebSocket');
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      this._debug(`opening the WebSocket failed: ${err.message}`);
      this._failed(gen, err);
      return;
    }
    /** @type {Error|undefined} */
    let lastError;
    const stomp = new Client({
      webSocketFactory: () => ws,
      connectHeaders,
      reconnectDelay: 0, // reconnects are driven here, see _failed()
      connectionTimeout: this._connectTimeoutMs,
      heartbeatIncoming: this._heartbeatMs,
      heartbeatOutgoing: this._heartbeatMs,
      heartbeatStrategy:
        this._heartbeatWorker && typeof Worker !== 'undefined' ? TickerStrategy.Worker : TickerStrategy.Interval,
      debug: (m) => this._debug(m),
      onConnect: () => {
        if (gen !== this._gen) return;
        // Any frame or heart-beat from the broker: when the broker last knew
        // this tab (x-expires counts from when the broker sees it gone).
        this._lastHeard = Date.now();
        /** @type {any} */ (stomp.webSocket)?.addEventListener?.('message', () => {
          if (gen === this._gen) this._lastHeard = Date.now();
        });
        this._connected(stomp, gen);
      },
      onStompError: (frame) => {
        if (gen !== this._gen) return;
        const text = [frame.headers.message, frame.body].filter(Boolean).join(': ');
        lastError = Object.assign(new Error(`STOMP ERROR ${text}`), { frame });
        // The server usually closes after an ERROR, but on 3.10.8 a
        // "Server cancelled subscription" ERROR leaves the socket open.
        stomp.forceDisconnect();
      },
      onWebSocketClose: (evt) => {
        if (gen !== this._gen) return;
        const err = /** @type {Error & {code?: number, reason?: string}} */ (
          lastError ?? new Error(`WebSocket closed: ${evt.code} ${evt.reason || ''}`.trim())
        );
        err.code = evt.code;
        err.reason = evt.reason;
        this._failed(gen, err);
      },
    });
    this._stomp = stomp;
    stomp.activate();
  }

  _connected(stomp, gen) {
    this._liveGen = gen;
    const receipts = [...this._subs].filter((s) => s.headers).map((s) => s._attach(stomp, gen));
    // 'connected' only once every SUBSCRIBE is confirmed: on 3.10.8 a failed
    // SUBSCRIBE loses its ERROR frame and the socket just closes ("STOMP died").
    Promise.all(receipts).then(() => {
      if (gen !== this._liveGen) return;
      this._healthySince = Date.now();
      const detail = { attempt: this._attempt, url: this._attemptUrl };
      if (!this._sessionOpts && this._offlineSince) {
        const expiresMs = Math.min(...this._queueSubs().filter((s) => s.headers).map((s) => s._spec.expiresMs));
        if (Date.now() - this._offlineSince >= expiresMs) this._queueReset = true;
        this._offlineSince = 0;
      }
      if (this._queueReset) {
        detail.queueReset = true;
        this._queueReset = false;
      }
      this._setState('connected', detail);
    });
  }

  _failed(gen, error) {
    if (gen !== this._gen || this._closed) return;
    const stomp = this._stomp;
    this._stomp = null;
    if (this._liveGen && !this._offlineSince) this._offlineSince = this._lastHeard;
    this._liveGen = 0;
    if (stomp) void stomp.deactivate(); // socket is closed: only resets stompjs state
    if (this._healthySince && Date.now() - this._healthySince >= this._stableMs) this._attempt = 0;
    this._healthySince = 0;
    this._attempt++;
    const url = this._attemptUrl;
    this._attemptUrl = undefined;
    this._urlIndex++; // the next node (a list of one: the same URL)
    const delayMs = backoffDelay(this._attempt, this._reconnect);
    this._debug(`connection ended (${error.message}); attempt ${this._attempt} in ${delayMs} ms`);
    this._setState('reconnecting', { attempt: this._attempt, delayMs, error, ...(url === undefined ? {} : { url }) });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._closed) void this._open();
    }, delayMs);
  }
}

/** Subprotocols stompjs offers when it opens the socket itself. */
const STOMP_PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];

/** Names on() treats as events; anything else is a routing-key pattern. */
const EVENT_NAMES = new Set(['state', 'connecting', 'connected', 'reconnecting', 'closed', 'retry', 'failed', 'gap']);

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A session that does not grant a subscribed stream: a deployment error, retrying cannot help. */
function streamNotGranted(streams) {
  return new SessionError(
    `tab session grants no stream ${streams.join(', ')}: subscribe({stream}) needs the server's tab-session callback to allow it (the response's streams: [{name, destination}])`,
    { code: 'stream_not_granted', fatal: true },
  );
}

/** @param {number} ms @param {any} cause */
function timeoutError(ms, cause) {
  return new SessionError(`tab session request timed out after ${ms} ms`, { code: 'timeout', cause });
}

/**
 * A promise with its resolve/reject; a rejection nobody awaits is not reported
 * as unhandled (ready() may never be called).
 * @returns {{promise: Promise<void>, resolve: () => void, reject: (e: any) => void}}
 */
function deferred() {
  /** @type {any} */
  const d = {};
  d.promise = new Promise((resolve, reject) => Object.assign(d, { resolve, reject }));
  d.promise.catch(() => {});
  return d;
}

/** @param {StorageLike} storage @param {string} key */
function readJSON(storage, key) {
  try {
    const v = storage.getItem(key);
    return v === null ? null : JSON.parse(v);
  } catch {
    return null; // unavailable or not ours
  }
}

/** @param {StorageLike} storage @param {string} key @param {any} value */
function writeJSON(storage, key, value) {
  try {
    storage.setItem(key, JSON.stringify(value));
  } catch {
    // full or unavailable: the window lives as long as this page
  }
}

function defaultStorage() {
  try {
    if (globalThis.sessionStorage) return globalThis.sessionStorage;
  } catch {
    // access denied (e.g. storage disabled)
  }
  return memoryStorage();
}

/**
 * The part of the Web Storage API the client uses (sessionStorage fits).
 * @typedef {object} StorageLike
 * @property {(key: string) => (string|null)} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} [removeItem]
 */

/**
 * A Storage-like in-memory map (for tests, or when sessionStorage is unavailable).
 * @returns {StorageLike & {removeItem: (key: string) => void}}
 */
export function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}
