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
  normalizeSessionSpec,
  normalizeSpec,
  onClaim,
  parseSession,
  queueName,
  sessionErrorIsFatal,
  sessionSubscribeHeaders,
  subscribeHeaders,
} from './internal.js';

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
 * @typedef {object} DurableMessage
 * @property {string|undefined} id  `amqp-message-id` (the Watermill UUID), or the
 *   `_watermill_message_uuid` header; used for de-duplication
 * @property {string} body          UTF-8 body
 * @property {() => any} json       JSON.parse(body)
 * @property {Record<string,string>} headers all STOMP headers (AMQP properties
 *   and the Go side's metadata, e.g. `routing_key`, `correlation_id`)
 * @property {boolean} redelivered  the broker delivered it before (unacked then)
 * @property {string} subscription the subscription name
 *
 * @typedef {object} SessionOptions
 * @property {string} url  the application's tab-session endpoint (same origin),
 *   e.g. '/api/tab-session'; see the Go package's TabSessions
 * @property {{exchange: string, key: string}[]} [bindings]  ask for only these of
 *   the bindings the server allows (default: all of them); one not allowed is 403
 * @property {typeof fetch} [fetch]  instead of globalThis.fetch (tests)
 *
 * @typedef {object} ClientOptions
 * @property {string} [url]         e.g. 'ws://127.0.0.1:15674/ws' (not with session:
 *   the session response names it)
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
 * @property {Storage} [storage=sessionStorage]  where the tab id lives
 * @property {string} [storageKey='durablews.tabId']
 * @property {string} [queuePrefix='tab']  queue names are `<queuePrefix>-<tabId>-<name>`
 * @property {number} [dedupWindow=1000]  recent message ids remembered per subscription
 * @property {number} [duplicateTabCheckMs=150]  how long connect() waits for another
 *   tab to object to this tab's id (BroadcastChannel); 0 disables the check
 * @property {(msg: string) => void} [debug]  stompjs debug log
 * @property {(url: string|undefined) => WebSocket} [webSocketFactory]  instead of
 *   opening url (tests, or to wrap the socket); gets the URL to open (the session's
 *   url in tab-session mode)
 */

/**
 * A refused or failed tab-session request. `status` is the HTTP status (0 for a
 * network error or an unusable response), `code` the server's `error` field
 * (e.g. 'unauthenticated', 'forbidden'), `fatal` whether the client gave up
 * (4xx other than 408/429) instead of retrying with back-off.
 */
export class SessionError extends Error {
  constructor(message, { status = 0, code, fatal = false, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'SessionError';
    this.status = status;
    this.code = code;
    this.fatal = fatal;
  }
}

/**
 * A durable subscription: a per-tab queue bound to an exchange. Create with
 * {@link DurableClient#subscribe}.
 */
export class Subscription {
  /** @internal */
  constructor(client, spec, handler, onError) {
    this._client = client;
    this._spec = spec;
    this._handler = handler;
    this._onError = onError;
    this._active = true;
    this._seen = new DedupWindow(client._dedupSize);
    /** @type {{frame: any, gen: number}[]} */
    this._queue = [];
    this._running = false;
    this._stats = { delivered: 0, handled: 0, duplicates: 0, failed: 0, acked: 0, stale: 0 };
  }

  /** Subscription name. */
  get name() {
    return this._spec.name;
  }

  /**
   * The RabbitMQ queue name, `<prefix>-<tabId>-<name>`. It can change once,
   * during the first connect(), if this tab turns out to be a duplicated tab.
   */
  get queueName() {
    if (this._spec.session) return this._client._session?.queue ?? null;
    return queueName(this._client._queuePrefix, this._client.tabId, this._spec.name);
  }

  /**
   * The exact SUBSCRIBE headers (all strings), identical on every reconnect. In
   * tab-session mode: destination (from the session), id, ack, prefetch-count;
   * null before the first session response.
   */
  get headers() {
    if (this._spec.session) {
      const s = this._client._session;
      return s ? sessionSubscribeHeaders(this._spec, s.destination) : null;
    }
    return subscribeHeaders(this._spec, this.queueName);
  }

  /**
   * Counters since creation: delivered (MESSAGE frames), handled (handler
   * resolved), duplicates (dropped and acked), failed (handler threw), acked
   * (ACK frames sent), stale (dropped because their connection ended; they will
   * be redelivered).
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
    const { destination, ...headers } = this.headers;
    const receipt = `${headers.id}@${gen}`;
    const confirmed = new Promise((resolve) => stomp.watchForReceipt(receipt, () => resolve()));
    stomp.subscribe(destination, (frame) => this._enqueue(frame, gen), { ...headers, receipt });
    return confirmed;
  }

  /** @internal send UNSUBSCRIBE */
  _detach(stomp) {
    try {
      stomp.unsubscribe(this.headers.id);
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
        const { frame, gen } = this._queue.shift();
        await this._process(frame, gen);
      }
    } finally {
      this._running = false;
    }
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
    const headers = frame.headers;
    const msg = {
      id: messageKey(headers),
      body: frame.body,
      json() {
        return JSON.parse(this.body);
      },
      headers,
      redelivered: headers.redelivered === 'true',
      subscription: this._spec.name,
    };
    if (this._seen.has(msg.id)) {
      this._stats.duplicates++;
      this._ack(frame, gen);
      return;
    }
    try {
      await this._handler(msg);
      this._stats.handled++;
    } catch (err) {
      this._stats.failed++;
      let verdict;
      if (this._onError) {
        try {
          verdict = await this._onError(err, msg);
        } catch (e) {
          console.error('durablews: onError threw', e);
        }
      } else {
        console.error(`durablews: handler failed for message ${msg.id} on ${this._spec.name}; left unacked`, err);
      }
      if (verdict !== 'ack') return; // left unacked: redelivered after the next reconnect
    }
    // Remember it even if its connection died meanwhile: the redelivery is then
    // recognised as a duplicate and acked without calling the handler again.
    this._seen.add(msg.id);
    this._ack(frame, gen);
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
      // Called as a plain function: window.fetch throws "Illegal invocation"
      // when called as a method of another object.
      const f = so.fetch ?? ((...args) => globalThis.fetch(...args));
      this._sessionOpts = { url: so.url, bindings: so.bindings, fetch: f };
    } else if (!opts.webSocketFactory) {
      let u;
      try {
        u = new URL(opts.url);
      } catch {
        throw new TypeError(`DurableClient: invalid url ${JSON.stringify(opts.url)}`);
      }
      if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
        throw new TypeError(`DurableClient: url must be ws: or wss:, got ${opts.url}`);
      }
    }
    this._url = opts.url;
    this._webSocketFactory = opts.webSocketFactory;
    this._login = opts.login;
    this._passcode = opts.passcode;
    this._vhost = opts.vhost ?? '/';
    this._connectHeaders = opts.connectHeaders;
    this._heartbeatMs = opts.heartbeatMs ?? 10000;
    this._heartbeatWorker = opts.heartbeatWorker ?? true;
    this._reconnect = { initialMs: 500, maxMs: 30000, ...(opts.reconnect ?? {}) };
    this._stableMs = opts.stableMs ?? 10000;
    this._connectTimeoutMs = opts.connectTimeoutMs ?? 10000;
    this._dedupSize = opts.dedupWindow ?? 1000;
    new DedupWindow(this._dedupSize); // validate
    this._dupCheckMs = opts.duplicateTabCheckMs ?? 150;
    this._debugFn = opts.debug;
    this._queuePrefix = opts.queuePrefix ?? 'tab';

    this._storage = opts.storage ?? defaultStorage();
    this._storageKey = opts.storageKey ?? 'durablews.tabId';
    this._tabId = this._loadTabId();
    queueName(this._queuePrefix, this._tabId, 'x'); // validate prefix

    /** @type {Set<Subscription>} */
    this._subs = new Set();
    /** @type {Set<(state: ConnectionState, detail: StateDetail) => void>} */
    this._listeners = new Set();
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
   * Listen to connection state changes.
   * @param {(state: ConnectionState, detail: StateDetail) => void} fn
   * @returns {() => void} call to stop listening
   */
  onState(fn) {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  /**
   * Subscribe to an exchange through a durable per-tab queue. May be called
   * before or after connect(). Names must be unique per client.
   *
   * @param {{exchange: string, bindingKey?: string, name: string,
   *          expiresMs?: number, prefetch?: number,
   *          onError?: (err: any, msg: DurableMessage) => ('ack'|void|Promise<'ack'|void>)}} spec
   *   expiresMs (default 3600000) and prefetch (default 10, max 1000) become
   *   queue arguments / consumer settings: keep them the same across releases,
   *   a changed x-expires makes RabbitMQ refuse the SUBSCRIBE.
   * @param {(msg: DurableMessage) => (void|Promise<void>)} handler  acked once it resolves
   * @returns {Subscription}
   */
  subscribe(spec, handler) {
    if (typeof handler !== 'function') throw new TypeError('subscribe() needs a handler function');
    const norm = this._sessionOpts ? normalizeSessionSpec(spec) : normalizeSpec(spec);
    if (this._sessionOpts && this._subs.size > 0) {
      // One queue per tab session: two consumers on it would split its messages.
      throw new Error('tab-session mode allows one subscription (the session queue)');
    }
    for (const s of this._subs) {
      if (s.name === norm.name) throw new Error(`subscription name ${norm.name} already in use`);
    }
    const sub = new Subscription(this, norm, handler, spec.onError);
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
    this._attempt = 0;
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
    await this._shutdown({ attempt: this._attempt });
  }

  // ---- internals ----

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
    this._setState('closed', detail);
    if (stomp) await stomp.deactivate();
  }

  /**
   * On reload or navigation the old page's socket otherwise lingers for a
   * moment, and the broker keeps handing it (up to prefetch) messages that
   * then come back to the new page as redeliveries. Closing on pagehide
   * hands them back at once; a page restored from the back/forward cache
   * reconnects.
   */
  _watchPageLifecycle() {
    if (this._pageWatched || typeof window === 'undefined' || !window.addEventListener) return;
    this._pageWatched = true;
    window.addEventListener('pagehide', () => {
      if (this._closed) return;
      this._resumeOnShow = true;
      void this.close();
    });
    window.addEventListener('pageshow', (ev) => {
      if (ev.persisted && this._resumeOnShow) {
        this._resumeOnShow = false;
        void this.connect();
      }
    });
  }

  _debug(msg) {
    if (this._debugFn) this._debugFn(msg);
  }

  _setState(state, detail) {
    this._state = state;
    for (const fn of [...this._listeners]) {
      try {
        fn(state, detail);
      } catch (e) {
        console.error('durablews: onState listener threw', e);
      }
    }
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
    const so = this._sessionOpts;
    const body = { tab_id: this._tabId };
    if (so.bindings) body.bindings = so.bindings;
    let res;
    try {
      res = await so.fetch(so.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      throw new SessionError(`tab session request failed: ${e?.message ?? e}`, { cause: e });
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      // not JSON: reported below
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
      throw new SessionError(e.message, { status: res.status, cause: e });
    }
    if (s.tabId !== this._tabId) {
      this._debug(`tab session: tab id ${this._tabId} -> ${s.tabId}`);
      this._tabId = s.tabId;
      this._storeTabId(s.tabId);
    }
    // The first session of this client creating the queue is normal; a
    // later one means the queue had been lost in between.
    if (s.queueCreated && this._session !== null) this._queueReset = true;
    this._session = s;
    return s;
  }

  async _open() {
    const gen = ++this._gen;
    let creds = {};
    let url = this._url;
    let vhost = this._vhost;
    if (this._sessionOpts) {
      // A fresh token for every connection attempt: the broker checks it at
      // CONNECT and SUBSCRIBE only, so an open connection outlives it.
      let s;
      try {
        s = await this._fetchSession();
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
      creds = { login: '', passcode: s.token }; // the broker names the connection after the token's sub
      url = s.url;
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
    const connectHeaders = { host: vhost };
    const login = creds.login ?? this._login;
    const passcode = creds.passcode ?? this._passcode;
    if (login !== undefined) connectHeaders.login = String(login);
    if (passcode !== undefined) connectHeaders.passcode = String(passcode);

    let lastError;
    const stomp = new Client({
      brokerURL: this._webSocketFactory ? undefined : url,
      webSocketFactory: this._webSocketFactory ? () => this._webSocketFactory(url) : undefined,
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
        stomp.webSocket?.addEventListener?.('message', () => {
          if (gen === this._gen) this._lastHeard = Date.now();
        });
        this._connected(stomp, gen);
      },
      onStompError: (frame) => {
        if (gen !== this._gen) return;
        const text = [frame.headers.message, frame.body].filter(Boolean).join(': ');
        lastError = new Error(`STOMP ERROR ${text}`);
        lastError.frame = frame;
        // The server usually closes after an ERROR, but on 3.10.8 a
        // "Server cancelled subscription" ERROR leaves the socket open.
        stomp.forceDisconnect();
      },
      onWebSocketClose: (evt) => {
        if (gen !== this._gen) return;
        const err = lastError ?? new Error(`WebSocket closed: ${evt.code} ${evt.reason || ''}`.trim());
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
      const detail = { attempt: this._attempt };
      if (!this._sessionOpts && this._offlineSince) {
        const expiresMs = Math.min(...[...this._subs].filter((s) => s.headers).map((s) => s._spec.expiresMs));
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
    const delayMs = backoffDelay(this._attempt, this._reconnect);
    this._debug(`connection ended (${error.message}); attempt ${this._attempt} in ${delayMs} ms`);
    this._setState('reconnecting', { attempt: this._attempt, delayMs, error });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._closed) void this._open();
    }, delayMs);
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

/** A Storage-like in-memory map (for tests, or when sessionStorage is unavailable). */
export function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}
