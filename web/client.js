// The client: ties a tab (tab.js), its subscriptions (subscription.js), the
// tab-session requests and the STOMP connection together, and reports
// states and events to the page.

import { Client, TickerStrategy } from '@stomp/stompjs';
import { DEFAULTS } from './defaults.js';
import { SessionError, sessionTimeoutError, streamNotGranted } from './errors.js';
import {
  DedupWindow,
  backoffDelay,
  normalizeSessionSpec,
  normalizeSpec,
  normalizeStreamSpec,
  normalizeTimeout,
  parseSession,
  queueName,
  sessionErrorIsFatal,
  topicMatcher,
  urlList,
} from './internal.js';
import { Subscription } from './subscription.js';
import { Tab } from './tab.js';

/** @import { ClientEvents, ClientOptions, ConnectionState, DurableMessage, StateDetail, SubscribeOptions } from './typedefs.js' */

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
    this._debugFn = opts.debug;
    this._queuePrefix = opts.queuePrefix ?? DEFAULTS.queuePrefix;

    this._tab = new Tab({
      storage: opts.storage,
      storageKey: opts.storageKey ?? DEFAULTS.storageKey,
      duplicateTabCheckMs: opts.duplicateTabCheckMs ?? DEFAULTS.duplicateTabCheckMs,
      debug: (m) => this._debug(m),
      // The ids the original tab handled are not this tab's, and a session
      // prepared for the original's page is the original's queue.
      renewed: () => {
        for (const sub of this._subs) sub._clearSeen();
        this._initialSession = null;
      },
    });
    queueName(this._queuePrefix, this._tab.id, 'x'); // validate prefix
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
      this._tab.adopt(this._initialSession.tabId);
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
    return this._tab.id;
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
    await this._tab.claim();
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
    this._tab.release();
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

  /**
   * POST to the session endpoint; on success remembers the session and the
   * tab id it names (sessionStorage). Throws SessionError.
   */
  async _fetchSession() {
    const so = /** @type {NonNullable<DurableClient['_sessionOpts']>} */ (this._sessionOpts);
    /** @type {{tab_id: string, bindings?: {exchange: string, key: string}[]}} */
    const body = { tab_id: this._tab.id };
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
        if (timedOut) throw sessionTimeoutError(so.timeoutMs, e);
        throw new SessionError(`tab session request failed: ${e?.message ?? e}`, { cause: e });
      }
      try {
        data = await res.json();
      } catch (e) {
        if (timedOut) throw sessionTimeoutError(so.timeoutMs, e);
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
    this._tab.adopt(s.tabId);
    // The first session of this client creating the queue is normal; a
    // later one means the queue had been lost in between.
    if (s.queueCreated && this._session !== null) this._queueReset = true;
    this._session = s;
    return s;
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
