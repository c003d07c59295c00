// The transport: this tab's own STOMP connection over one WebSocket at a
// time (stompjs), and its lifecycle: an attempt per prepared target, the
// broker's confirmation of every SUBSCRIBE before 'connected', and after an
// attempt or a connection ends, back-off and the next URL of the list.
//
// The client drives it through hooks (TransportHooks) and hands
// subscriptions a Connection, so another transport (e.g. one connection
// shared by the tabs of a browser) can take its place without changing them.

import { Client, TickerStrategy } from '@stomp/stompjs';
import { backoffDelay } from './internal.js';

/** Subprotocols stompjs offers when it opens the socket itself. */
const STOMP_PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];

/**
 * The part of a stompjs Client a subscription and the receipt sender use:
 * SUBSCRIBE with a receipt, UNSUBSCRIBE, SEND with a receipt. The MESSAGE
 * frames it delivers ack and nack themselves, on the connection that
 * delivered them.
 * @typedef {Pick<Client, 'connected'|'subscribe'|'unsubscribe'|'watchForReceipt'|'publish'>} Connection
 */

/**
 * Where and how the next attempt connects.
 * @typedef {object} Target
 * @property {string[]} urls  the Web-STOMP URLs (one per node; the transport
 *   picks one); empty: webSocketFactory gets undefined
 * @property {Record<string, string>} connectHeaders  CONNECT's host, login, passcode
 */

/**
 * @typedef {object} TransportHooks  how the transport asks the client, and tells it
 * @property {() => (Target|{fatal: Error}|Promise<Target|{fatal: Error}>)} prepare
 *   before every attempt (a Target at once opens the socket in the same task):
 *   a rejection is a failed attempt (back-off), `{fatal}` ends it for good
 * @property {(connection: Connection, gen: number) => Promise<unknown>} subscribe
 *   on CONNECTED: send every SUBSCRIBE; resolves once the broker confirmed them
 * @property {(detail: {attempt: number, url: string|undefined}, offlineSince: number) => void} connected
 *   every SUBSCRIBE is confirmed; offlineSince: when the broker was last heard
 *   before this connection (0: connected before, or never)
 * @property {(detail: {attempt: number, delayMs: number, error: Error, url?: string}) => void} reconnecting
 *   an attempt or a connection ended; the next attempt follows after delayMs
 * @property {(error: Error) => void} fatal  prepare() gave up: retrying cannot help
 * @property {(msg: string) => void} debug
 */

/**
 * @typedef {object} TransportOptions
 * @property {number} heartbeatMs
 * @property {boolean} heartbeatWorker
 * @property {number} connectTimeoutMs
 * @property {{initialMs: number, maxMs: number}} reconnect
 * @property {number} stableMs
 * @property {((url: string|undefined) => WebSocket)|undefined} webSocketFactory
 */

/**
 * This tab's own STOMP connection. Every attempt has a generation number
 * (gen): callbacks of an ended attempt are ignored, and a message is acked
 * only on the connection (gen) that delivered it.
 */
export class StompTransport {
  /**
   * @param {TransportOptions} opts
   * @param {TransportHooks} hooks
   */
  constructor(opts, hooks) {
    this._opts = opts;
    this._hooks = hooks;
    this._stopped = true;
    this._gen = 0; // bumped for every connection attempt
    this._liveGen = 0; // gen of the connection that is currently CONNECTED, else 0
    /** @type {Client|null} */
    this._stomp = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this._timer = null;
    this._attempt = 0;
    this._healthySince = 0;
    // A random first node spreads a fleet of tabs over the cluster; every
    // failed attempt moves on to the next one (see _failed, _pickUrl).
    this._urlSpread = Math.random();
    this._urlIndex = 0;
    /** @type {string|undefined} the URL of the current (or last) connection attempt */
    this._attemptUrl = undefined;
    /** when the broker was last heard from on a connection that was live */
    this._lastHeard = 0;
    /** _lastHeard of the connection that ended; 0 while connected or never connected */
    this._offlineSince = 0;
  }

  /** The generation of the newest attempt (stop() bumps it too). */
  get gen() {
    return this._gen;
  }

  /** The generation of the CONNECTED connection, else 0. */
  get liveGen() {
    return this._liveGen;
  }

  /** Failed attempts since the last stable connection. */
  get attempt() {
    return this._attempt;
  }

  /** @returns {Connection|null} the connection of the current attempt (CONNECTED only when liveGen is not 0) */
  get connection() {
    return this._stomp;
  }

  /**
   * Whether a frame delivered on connection `gen` can be acked now: it is
   * the live connection and its socket is open.
   * @param {number} gen
   */
  canAck(gen) {
    return gen === this._liveGen && !!this._stomp && this._stomp.connected;
  }

  /** Start a run of attempts (call open() for the first one). */
  start() {
    this._stopped = false;
    this._attempt = 0;
  }

  /**
   * End the run: no more attempts, the live connection is no longer live.
   * @returns {() => Promise<void>} disconnects the socket (DISCONNECT, close)
   */
  stop() {
    this._stopped = true;
    this._gen++;
    if (this._liveGen && !this._offlineSince) this._offlineSince = Date.now(); // the consumer leaves now
    this._liveGen = 0;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    const stomp = this._stomp;
    this._stomp = null;
    return async () => {
      if (stomp) await stomp.deactivate();
    };
  }

  /** One connection attempt. */
  async open() {
    const gen = ++this._gen;
    /** @type {Target|{fatal: Error}} */
    let target;
    try {
      const t = this._hooks.prepare();
      target = t instanceof Promise ? await t : t;
    } catch (e) {
      this._failed(gen, e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (gen !== this._gen || this._stopped) return;
    if ('fatal' in target) {
      this._hooks.fatal(target.fatal);
      return;
    }
    const url = target.urls.length ? this._pickUrl(target.urls) : undefined;
    this._attemptUrl = url;

    // The socket is opened here rather than by stompjs: a constructor that
    // throws (a URL the browser refuses, a throwing webSocketFactory) would
    // reject inside stompjs where nobody hears it, leaving 'connecting' for ever.
    let ws;
    try {
      const factory = this._opts.webSocketFactory;
      ws = factory ? factory(url) : new WebSocket(/** @type {string} */ (url), STOMP_PROTOCOLS);
      if (!ws) throw new TypeError('webSocketFactory returned no WebSocket');
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      this._hooks.debug(`opening the WebSocket failed: ${err.message}`);
      this._failed(gen, err);
      return;
    }
    /** @type {Error|undefined} */
    let lastError;
    const stomp = new Client({
      webSocketFactory: () => ws,
      connectHeaders: target.connectHeaders,
      reconnectDelay: 0, // reconnects are driven here, see _failed()
      connectionTimeout: this._opts.connectTimeoutMs,
      heartbeatIncoming: this._opts.heartbeatMs,
      heartbeatOutgoing: this._opts.heartbeatMs,
      heartbeatStrategy:
        this._opts.heartbeatWorker && typeof Worker !== 'undefined' ? TickerStrategy.Worker : TickerStrategy.Interval,
      debug: (m) => this._hooks.debug(m),
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

  /** @param {Client} stomp @param {number} gen */
  _connected(stomp, gen) {
    this._liveGen = gen;
    // 'connected' only once every SUBSCRIBE is confirmed: on 3.10.8 a failed
    // SUBSCRIBE loses its ERROR frame and the socket just closes ("STOMP died").
    this._hooks.subscribe(stomp, gen).then(() => {
      if (gen !== this._liveGen) return;
      this._healthySince = Date.now();
      const offlineSince = this._offlineSince;
      this._offlineSince = 0;
      this._hooks.connected({ attempt: this._attempt, url: this._attemptUrl }, offlineSince);
    });
  }

  /** @param {number} gen @param {Error} error */
  _failed(gen, error) {
    if (gen !== this._gen || this._stopped) return;
    const stomp = this._stomp;
    this._stomp = null;
    if (this._liveGen && !this._offlineSince) this._offlineSince = this._lastHeard;
    this._liveGen = 0;
    if (stomp) void stomp.deactivate(); // socket is closed: only resets stompjs state
    if (this._healthySince && Date.now() - this._healthySince >= this._opts.stableMs) this._attempt = 0;
    this._healthySince = 0;
    this._attempt++;
    const url = this._attemptUrl;
    this._attemptUrl = undefined;
    this._urlIndex++; // the next node (a list of one: the same URL)
    const delayMs = backoffDelay(this._attempt, this._opts.reconnect);
    this._hooks.debug(`connection ended (${error.message}); attempt ${this._attempt} in ${delayMs} ms`);
    this._hooks.reconnecting({ attempt: this._attempt, delayMs, error, ...(url === undefined ? {} : { url }) });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._stopped) void this.open();
    }, delayMs);
  }

  /**
   * The URL for this attempt: a random start (the same for every list this
   * transport gets), then one step further after every failed attempt.
   * @param {string[]} urls
   */
  _pickUrl(urls) {
    return urls[(Math.floor(this._urlSpread * urls.length) + this._urlIndex) % urls.length];
  }
}
