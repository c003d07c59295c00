// The client: ties this tab (tab.js), its subscriptions (subscription.js),
// its tab sessions (session.js) and its connection (transport.js) together;
// owns the state the page sees ('connecting', 'connected', 'reconnecting',
// 'closed'), the events, ready(), and the page lifecycle.

import { DEFAULTS } from './defaults.js';
import { streamNotGranted } from './errors.js';
import { DedupWindow, normalizeSessionSpec, normalizeSpec, normalizeStreamSpec, queueName, receiptDestination, topicMatcher, urlList } from './internal.js';
import { ReceiptSender, receiptSettings } from './receipts.js';
import { TabSessions, sessionSettings } from './session.js';
import { Subscription } from './subscription.js';
import { Tab } from './tab.js';
import { StompTransport } from './transport.js';
import { SharedTransport } from './shared-transport.js';
import { sharedLocks } from './leader.js';

/** @import { ClientEvents, ClientMode, ClientOptions, ClientStats, ConnectionState, DurableMessage, StateDetail, SubscribeOptions } from './typedefs.js' */
/** @import { ParsedSession } from './internal.js' */
/** @import { Target } from './transport.js' */

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
 * - Delivery receipts (docs/receipts.md): after a handler resolved and the
 *   ACK was written, the tab tells the service so, batched, kept in storage
 *   until the broker confirmed them (receipts.js).
 */
export class DurableClient {
  /** @param {ClientOptions} opts */
  constructor(opts = {}) {
    const sessions = sessionSettings(opts);
    const receipts = receiptSettings(opts, !!sessions);
    /** headers mode: the Web-STOMP URLs (one per node); empty with only a webSocketFactory */
    this._urls = sessions || (opts.webSocketFactory && opts.url === undefined) ? [] : urlList(opts.url, 'DurableClient: ');
    this._login = opts.login;
    this._passcode = opts.passcode;
    this._vhost = opts.vhost ?? DEFAULTS.vhost;
    this._connectHeaders = opts.connectHeaders;
    const transportOpts = {
      heartbeatMs: opts.heartbeatMs ?? DEFAULTS.heartbeatMs,
      heartbeatWorker: opts.heartbeatWorker ?? DEFAULTS.heartbeatWorker,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      reconnect: { ...DEFAULTS.reconnect, ...(opts.reconnect ?? {}) },
      stableMs: opts.stableMs ?? DEFAULTS.stableMs,
      webSocketFactory: opts.webSocketFactory,
    };
    /** @type {import('./transport.js').TransportHooks} */
    const hooks = {
      prepare: () => this._prepare(),
      subscribe: (connection, gen) => Promise.all([...this._subs].filter((s) => s.headers).map((s) => s._attach(connection, gen))),
      connected: (detail, offlineSince) => this._connected(detail, offlineSince),
      reconnecting: (detail) => this._setState('reconnecting', detail),
      fatal: (error) => {
        this._debug(`giving up: ${error.message}`);
        void this._shutdown({ attempt: this._transport.attempt, error, fatal: true });
      },
      debug: (m) => this._debug(m),
    };
    const shared = sharedSettings(opts, this._urls, this._vhost, sessions ? () => this._sessionGroup(sessions.url) : null);
    /** @type {StompTransport|SharedTransport} */
    this._transport = shared
      ? new SharedTransport(
          transportOpts,
          {
            ...hooks,
            tabId: () => this._tab.id,
            leader: (info) => this._leaderChanged(info),
            ownSession: () => this._ownSession(),
            prepareLeader: (tabs) => this._leaderTarget(tabs),
          },
          shared,
        )
      : new StompTransport(transportOpts, hooks);
    /** @type {ParsedSession|null} shared mode, tab sessions: the prepared session, kept for this tab's first leader attempt */
    this._preparedForLeader = null;
    /** @type {ClientMode} the mode last reported ('mode' event) */
    this._mode = this.mode;
    /** @type {string|null} */
    this._leaderTab = null;
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
        this._sessions?.forgetPrepared();
        this._receipts?.clear();
      },
    });
    queueName(this._queuePrefix, this._tab.id, 'x'); // validate prefix
    /** tab-session mode: the sessions; null in headers mode */
    this._sessions = sessions ? new TabSessions(sessions, this._tab, (m) => this._debug(m)) : null;
    /** the receipt sender: tab-session mode (if a session names a destination), headers mode with receipts.userKey; else null */
    this._receipts =
      sessions || receipts.userKey !== null
        ? new ReceiptSender(receipts, {
            tab: this._tab,
            target: () => this._receiptTarget(receipts),
            live: () => {
              const t = this._transport;
              return t.liveGen !== 0 && t.canAck(t.liveGen) ? { connection: /** @type {import('./transport.js').Connection} */ (t.connection), gen: t.liveGen } : null;
            },
            confirmed: (event) => this._emit('receipt', event),
            debug: (m) => this._debug(m),
          })
        : null;
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
  }

  /** This tab's id (see README: duplicated tabs get a new one on connect()). */
  get tabId() {
    return this._tab.id;
  }

  /**
   * How this tab reaches the broker: 'own' (a connection of its own),
   * 'shared-leader' (this tab holds the connection its browser's tabs share)
   * or 'shared-follower' (another tab of this browser holds it). See README,
   * "Shared mode".
   * @returns {ClientMode}
   */
  get mode() {
    const t = this._transport;
    return t instanceof SharedTransport ? t.mode : 'own';
  }

  /**
   * Shared mode: the tab id of the tab holding the shared connection (this
   * tab's own id when it leads); null in 'own' mode or before a leader is known.
   * @returns {string|null}
   */
  get leader() {
    return this._leaderTab;
  }

  /** @returns {ConnectionState} */
  get state() {
    return this._state;
  }

  /**
   * Client-level counters (delivery receipts; see {@link ClientStats}).
   * @returns {ClientStats}
   */
  get stats() {
    return this._receipts?.stats ?? { receiptsSent: 0, receiptsConfirmed: 0, receiptsPending: 0, receiptsDropped: 0 };
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
   * {@link FailedEvent}; 'gap' {@link GapEvent}; 'receipt' {@link ReceiptEvent}.
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
    const norm = stream ?? (this._sessions ? normalizeSessionSpec(spec) : normalizeSpec(/** @type {any} */ (spec)));
    if (spec.receipts !== undefined && typeof spec.receipts !== 'boolean') {
      throw new TypeError(`subscribe(): receipts must be true or false, got ${JSON.stringify(spec.receipts)}`);
    }
    if (spec.receipts === true && !this._receipts) {
      throw new TypeError('subscribe(): receipts: true needs somewhere to send them: the client option receipts: {userKey} (headers mode)');
    }
    if (stream) {
      for (const s of this._subs) {
        if (s._streamName === stream.stream) throw new Error(`stream ${stream.stream} is already subscribed (subscription ${s.name}); one subscription per stream keeps one offset`);
      }
      const session = this._sessions?.current;
      if (session && !session.streams.has(stream.stream)) throw streamNotGranted([stream.stream]);
    } else if (this._sessions && this._queueSubs().length > 0) {
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
    const sub = new Subscription(this, { ...norm, retry: spec.retry, handlerTimeoutMs: spec.handlerTimeoutMs, receipts: spec.receipts }, handler, spec.onError);
    this._subs.add(sub);
    const t = this._transport;
    if (t.liveGen !== 0 && t.connection && sub.headers) {
      const gen = t.liveGen;
      sub._attach(t.connection, gen).catch(() => {});
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
    this._transport.start();
    this._autoSubscribe();
    this._setState('connecting', { attempt: 0 });
    const gen = this._transport.gen; // close() bumps it: a close()+connect() during the claim wins
    await this._tab.claim();
    if (this._closed || gen !== this._transport.gen) return;
    void this._transport.open();
  }

  /**
   * Disconnect and stop reconnecting. Unacked messages return to the queues.
   * @returns {Promise<void>}
   */
  async close() {
    this._resumeOn = null; // closed on purpose: pageshow/resume must not reopen it
    await this._shutdown({ attempt: this._transport.attempt });
  }

  // ---- internals ----

  /**
   * Tab-session mode has one queue: pattern handlers alone (no subscribe())
   * consume it through a subscription named 'events' made here.
   */
  _autoSubscribe() {
    if (!this._sessions || this._queueSubs().length > 0 || this._routes.length === 0) return;
    this.subscribe({ name: 'events' });
    this._autoSub = true;
  }

  async _shutdown(detail) {
    if (this._closed) return;
    this._closed = true;
    this._receipts?.stop(); // pending receipts go out before the DISCONNECT
    const disconnect = this._transport.stop();
    this._tab.release();
    for (const sub of this._subs) sub._saveSeen();
    if (detail.fatal) {
      // A fatal close before the first 'connected' rejects ready(); a later
      // connect() gets a fresh promise.
      const r = this._ready;
      this._ready = deferred();
      r.reject(detail.error);
    }
    this._leaderTab = null;
    this._setState('closed', detail);
    this._modeChanged();
    await disconnect();
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
      void this._shutdown({ attempt: this._transport.attempt, reason });
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

  /** @param {{tabId: string, self: boolean}} info */
  _leaderChanged(info) {
    this._leaderTab = info.tabId;
    this._emit('leader', info);
    this._modeChanged();
  }

  _modeChanged() {
    const mode = this.mode;
    if (mode === this._mode) return;
    this._mode = mode;
    this._emit('mode', mode);
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

  /** The per-tab queue subscriptions (not streams). */
  _queueSubs() {
    return [...this._subs].filter((s) => s._streamName === undefined);
  }

  _remove(sub) {
    this._subs.delete(sub);
    const t = this._transport;
    if (t.liveGen !== 0 && t.connection) sub._detach(t.connection);
  }

  /**
   * The target of the next connection attempt (the transport's prepare hook).
   * Tab-session mode: a fresh token for every attempt (the broker checks it
   * at CONNECT and SUBSCRIBE only, so an open connection outlives it), from
   * the prepared session once, else from the endpoint. Headers mode: the
   * URLs and credentials, from connectHeaders() if given.
   * @returns {Target|{fatal: Error}|Promise<Target|{fatal: Error}>}
   */
  _prepare() {
    if (!this._sessions) return this._connectHeaders ? this._credentialsTarget() : this._headersTarget({});
    const prepared = this._sessions.takePrepared();
    return prepared ? this._sessionTarget(prepared) : this._fetchTarget();
  }

  /**
   * Shared mode, tab sessions: this tab's own session before it joins its
   * browser's group (its queue exists, its tab id is final): the prepared
   * one (kept for this tab's first attempt should it lead), else a request.
   * @returns {Promise<ParsedSession>}
   */
  async _ownSession() {
    const sessions = /** @type {TabSessions} */ (this._sessions);
    const prepared = sessions.takePrepared();
    if (prepared) {
      this._preparedForLeader = prepared;
      return prepared;
    }
    return sessions.fetch();
  }

  /**
   * Shared mode, tab sessions, in the leader: before every attempt a
   * session whose token also reads the queues of the tabs that joined.
   * @param {string[]} tabs
   * @returns {Promise<import('./shared-transport.js').LeaderTarget|{fatal: Error}>}
   */
  async _leaderTarget(tabs) {
    const sessions = /** @type {TabSessions} */ (this._sessions);
    let s = this._preparedForLeader;
    this._preparedForLeader = null;
    if (!s || tabs.length > 0 || !(s.expiresAt - Date.now() > 5000)) {
      try {
        s = await sessions.fetch(tabs);
      } catch (e) {
        if (e.fatal) return { fatal: e };
        throw e;
      }
    }
    const target = this._sessionTarget(s);
    if ('fatal' in target) return target;
    return {
      ...target,
      granted: [s.queue, ...s.tabs.map((x) => x.queue), ...s.streams.keys()],
      grantedTabs: [s.tabId, ...s.tabs.map((x) => x.tabId)],
      missing: s.missingTabs,
    };
  }

  /**
   * Shared mode, tab sessions: the group of this tab, known once it has a
   * session: the endpoint and the user (the user part of the queue name,
   * tab-<user key>-<tab id>), so tabs of two users never share a connection.
   * @param {string} url
   */
  _sessionGroup(url) {
    const queue = /** @type {TabSessions} */ (this._sessions).current?.queue ?? '';
    const user = /^tab-([0-9a-f]{16})-/.exec(queue)?.[1] ?? `tab:${this._tab.id}`;
    return `s:${JSON.stringify([url, user])}`;
  }

  /** @returns {Promise<Target>} */
  async _credentialsTarget() {
    const creds = (await /** @type {NonNullable<ClientOptions['connectHeaders']>} */ (this._connectHeaders)()) ?? {};
    return this._headersTarget(creds);
  }

  /** @returns {Promise<Target|{fatal: Error}>} a rejection: a failed attempt */
  async _fetchTarget() {
    let s;
    try {
      s = await /** @type {TabSessions} */ (this._sessions).fetch();
    } catch (e) {
      if (e.fatal) return { fatal: e };
      throw e;
    }
    return this._sessionTarget(s);
  }

  /**
   * @param {ParsedSession} s
   * @returns {Target|{fatal: Error}}
   */
  _sessionTarget(s) {
    const missing = [...this._subs].filter((x) => x._streamName !== undefined && !s.streams.has(x._streamName));
    if (missing.length > 0) return { fatal: streamNotGranted(missing.map((x) => /** @type {string} */ (x._streamName))) };
    // The broker names the connection after the token's sub.
    return { urls: s.urls, connectHeaders: this._connectFrame(s.vhost, { login: '', passcode: s.token }) };
  }

  /**
   * @param {{login?: string, passcode?: string}} creds
   * @returns {Target}
   */
  _headersTarget(creds) {
    return { urls: this._urls, connectHeaders: this._connectFrame(this._vhost, creds) };
  }

  /**
   * CONNECT's headers: creds override the login and passcode options.
   * @param {string} vhost
   * @param {{login?: string, passcode?: string}} creds
   */
  _connectFrame(vhost, creds) {
    /** @type {Record<string, string>} */
    const headers = { host: vhost };
    const login = creds.login ?? this._login;
    const passcode = creds.passcode ?? this._passcode;
    if (login !== undefined) headers.login = String(login);
    if (passcode !== undefined) headers.passcode = String(passcode);
    return headers;
  }

  /**
   * Every SUBSCRIBE of a connection is confirmed (the transport's connected hook).
   * @param {{attempt: number, url: string|undefined}} confirmed
   * @param {number} offlineSince  when the broker was last heard before this connection
   */
  _connected(confirmed, offlineSince) {
    /** @type {StateDetail} */
    const detail = { ...confirmed };
    let queueReset;
    if (this._sessions) {
      queueReset = this._sessions.takeQueueReset();
    } else {
      queueReset = false;
      if (offlineSince) {
        const expiresMs = Math.min(...this._queueSubs().filter((s) => s.headers).map((s) => s._spec.expiresMs));
        queueReset = Date.now() - offlineSince >= expiresMs;
      }
    }
    if (queueReset) detail.queueReset = true;
    const gen = this._transport.liveGen;
    this._setState('connected', detail);
    if (gen === this._transport.liveGen) this._receipts?.connected(gen);
  }

  /**
   * Where this tab's receipts go now: the session's `receipts` destination,
   * or in headers mode `/exchange/<exchange>/<userKey>.<tabId>`; null: nowhere.
   * @param {import('./receipts.js').ReceiptSettings} settings
   * @returns {{destination: string, tabId: string}|null}
   */
  _receiptTarget(settings) {
    if (this._sessions) {
      const s = this._sessions.current;
      return s?.receipts ? { destination: s.receipts.destination, tabId: s.tabId } : null;
    }
    if (settings.userKey === null) return null;
    return { destination: receiptDestination(settings.exchange, settings.userKey, this.tabId), tabId: this.tabId };
  }
}

/** Names on() treats as events; anything else is a routing-key pattern. */
const EVENT_NAMES = new Set(['state', 'connecting', 'connected', 'reconnecting', 'closed', 'retry', 'failed', 'gap', 'receipt', 'mode', 'leader']);

/**
 * Shared mode's settings, or null for a connection of this tab's own: when
 * the option `shared` is false, the browser lacks Web Locks or
 * BroadcastChannel, or with a connectHeaders() function and no group name
 * (its credentials may be another user's). The group key names the broker,
 * vhost and login, or the page's own group name; in tab-session mode the
 * endpoint and the user (sessionGroup, once the tab has its session).
 * @param {ClientOptions} opts
 * @param {string[]} urls
 * @param {string} vhost
 * @param {(() => string)|null} sessionGroup  tab-session mode
 * @returns {import('./shared-transport.js').SharedSettings|null}
 */
function sharedSettings(opts, urls, vhost, sessionGroup) {
  const shared = opts.shared ?? DEFAULTS.shared;
  if (typeof shared !== 'boolean' && (typeof shared !== 'string' || shared === '')) {
    throw new TypeError('DurableClient: shared must be true, false or a non-empty group name');
  }
  if (shared === false) return null;
  const locks = sharedLocks();
  if (!locks) return null;
  if (sessionGroup) return { locks, key: typeof shared === 'string' ? () => `${sessionGroup()}:${shared}` : sessionGroup, sessions: true };
  if (typeof shared === 'string') return { locks, key: `g:${shared}` };
  if (opts.connectHeaders) return null;
  return { locks, key: `h:${JSON.stringify([urls, vhost, opts.login ?? ''])}` };
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
