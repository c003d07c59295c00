// Shared mode: the tabs of one browser, origin and group (same broker, vhost
// and user) share ONE STOMP connection. The tab holding the group's Web Lock
// (leader.js) runs the real connection (a StompTransport, transport.js) and a
// Hub that subscribes every tab's queues on it; every tab, the leader
// included, sees the same seam as with a connection of its own (gen, liveGen,
// canAck, a Connection for its subscriptions), so client.js and
// subscription.js do not know which they have.
//
// Channels (BroadcastChannel, names under `durablews.shared:<key>`):
//   group        announcements: leader, live, down, fatal (hub -> all), join (tab -> hub)
//   :h:<hub>     a tab's requests to the hub: join, sub, unsub, ack, send, bye
//   :m:<member>  the hub's answers to one tab: welcome, msg, receipt
// so a tab's MESSAGE frames reach that tab's document only. The leader's own
// tab talks to its hub by direct calls.
//
// Generations: the hub's connection has the StompTransport's gen (lgen); a
// tab maps every (leader, lgen) it attaches to onto a local gen of its own.
// A tab acks with the lgen of the connection that delivered the frame and the
// hub acks only on that connection: a frame of an ended connection (or of a
// previous leader) is never acked on another one; the broker redelivers it
// and the tab's de-dup window recognises it.

import { Election, holdLock, watchLock } from './leader.js';
import { backoffDelay, generateTabId } from './internal.js';
import { StompTransport } from './transport.js';

/** @import { Connection, Target, TransportHooks, TransportOptions } from './transport.js' */
/** @import { LockManagerLike } from './leader.js' */

/**
 * @typedef {'shared-leader'|'shared-follower'} SharedMode
 * @typedef {object} SharedHooks  what shared mode tells the client in addition
 * @property {(info: {tabId: string, self: boolean}) => void} leader  another tab (or this one) leads now
 * @property {() => string} tabId  this tab's id (for the leader's session request)
 * @property {() => Promise<unknown>} [ownSession]  tab sessions: get this tab's own
 *   session (its queue exists, its id is final) before it joins; rejects with
 *   a SessionError (`fatal`: retrying cannot help)
 * @property {(tabs: string[]) => Promise<LeaderTarget|{fatal: Error}>} [prepareLeader]
 *   tab sessions: the leader's target before every attempt, with a token that
 *   also reads the queues of the tabs `tabs`
 */

/**
 * @typedef {Target & {granted: string[], grantedTabs: string[], missing: string[]}} LeaderTarget
 *   granted: the queues (and streams) the token reads; grantedTabs: the tabs
 *   whose queue it reads; missing: requested tabs without a queue
 */

/**
 * @typedef {object} SharedSettings
 * @property {LockManagerLike} locks  navigator.locks
 * @property {string|(() => string)} key  the group: tabs with the same key share a
 *   connection (a function: asked once this tab has its own session)
 * @property {boolean} [sessions]  tab-session mode (ownSession, prepareLeader)
 * @property {(name: string) => BroadcastChannel} [channel]  default: new BroadcastChannel(name)
 */

/** Tab sessions: how long a new leader waits for the tabs' joins before its first session request. */
const JOIN_WINDOW_MS = 100;
/** Tab sessions: a new tab's queue needs a new token: reconnect after this (more joins come together)... */
const RENEW_DEBOUNCE_MS = 150;
/** ...and at most this often. */
const RENEW_MIN_INTERVAL_MS = 2000;

const HUB_TYPES = new Set(['join', 'sub', 'unsub', 'ack', 'send', 'bye']);

/**
 * Every tab's transport in shared mode; the leader's also runs the Hub.
 */
export class SharedTransport {
  /**
   * @param {TransportOptions} opts  for the leader's StompTransport
   * @param {TransportHooks & SharedHooks} hooks
   * @param {SharedSettings} shared
   */
  constructor(opts, hooks, shared) {
    this._opts = opts;
    this._hooks = hooks;
    this._locks = shared.locks;
    this._newChannel = shared.channel ?? ((/** @type {string} */ name) => new BroadcastChannel(name));
    this._key = shared.key;
    this._sessions = !!shared.sessions;
    /** the channel and lock names' prefix (set by open()) */
    this._base = '';
    this._stopped = true;
    this._gen = 0;
    this._liveGen = 0;
    this._attempt = 0;
    /** this tab's member id: new for every open(), '' when not taking part */
    this._me = '';
    /** @type {string|null} the member id of the hub this tab follows */
    this._leader = null;
    /** @type {string|null} the leader's tab id */
    this._leaderTab = null;
    /** the leader connection's gen this tab is attached to (0: none) */
    this._lgen = 0;
    /** @type {Connection|null} */
    this._conn = null;
    /** @type {Map<string, (frame: any) => void>} this tab's subscription ids (live gen) -> callback */
    this._subs = new Map();
    /** @type {Map<string, (frame: any) => void>} */
    this._receipts = new Map();
    /** @type {BroadcastChannel|null} */
    this._group = null;
    /** @type {BroadcastChannel|null} */
    this._inbox = null;
    /** @type {BroadcastChannel|null} to the leader's hub */
    this._toLeader = null;
    /** @type {Election|null} */
    this._election = null;
    /** @type {Hub|null} */
    this._hub = null;
    /** @type {(() => void)|null} */
    this._releaseMember = null;
    /** when this tab's last attachment ended (0: attached, or never) */
    this._downSince = 0;
  }

  /** The generation of this tab's newest attachment (stop() bumps it too). */
  get gen() {
    return this._gen;
  }

  /** The generation of the live attachment (the leader's connection is CONNECTED), else 0. */
  get liveGen() {
    return this._liveGen;
  }

  /** Failed attempts of the leader's connection since its last stable one. */
  get attempt() {
    return this._attempt;
  }

  /** @returns {Connection|null} */
  get connection() {
    return this._liveGen ? this._conn : null;
  }

  /** @returns {SharedMode} */
  get mode() {
    return this._hub ? 'shared-leader' : 'shared-follower';
  }

  /** The leader's tab id, null while none is known. */
  get leaderTab() {
    return this._leaderTab;
  }

  /** @param {number} gen */
  canAck(gen) {
    return gen !== 0 && gen === this._liveGen;
  }

  start() {
    this._stopped = false;
    this._attempt = 0;
  }

  /**
   * Leave the group: step down if leading (the next tab in the lock's queue
   * takes over), tell the hub this tab is gone.
   * @returns {() => Promise<void>} disconnects the leader's socket, if this tab led
   */
  stop() {
    this._stopped = true;
    this._gen++;
    if (this._liveGen) this._downSince = Date.now();
    this._liveGen = 0;
    this._subs.clear();
    this._receipts.clear();
    if (this._me && this._leader) this._toHub({ t: 'bye' });
    const hub = this._hub;
    this._hub = null;
    const disconnect = hub ? hub.stop() : async () => {};
    this._election?.leave();
    this._election = null;
    for (const ch of [this._group, this._inbox, this._toLeader]) ch?.close();
    this._group = this._inbox = this._toLeader = null;
    this._releaseMember?.();
    this._releaseMember = null;
    this._me = '';
    this._leader = null;
    this._lgen = 0;
    return disconnect;
  }

  /** Take part: hold this tab's member lock, listen, queue for leadership. */
  async open() {
    if (this._me || this._stopped) return;
    const me = generateTabId();
    this._me = me;
    if (this._sessions && !(await this._ownSession(me))) return;
    this._base = `durablews.shared:${typeof this._key === 'function' ? this._key() : this._key}`;
    let release;
    try {
      release = await holdLock(this._locks, `${this._base}:m:${me}`);
    } catch (e) {
      this._hooks.debug(`shared: member lock failed: ${e?.message ?? e}`);
      return;
    }
    if (this._me !== me) {
      release();
      return;
    }
    this._releaseMember = release;
    this._group = this._newChannel(this._base);
    this._group.onmessage = (ev) => this._receive(ev.data);
    this._inbox = this._newChannel(`${this._base}:m:${me}`);
    this._inbox.onmessage = (ev) => this._receive(ev.data);
    this._group.postMessage({ t: 'join', from: me, tab: this._hooks.tabId() });
    this._election = new Election(this._locks, `${this._base}:leader`, {
      onLeader: () => this._lead(me),
      debug: (m) => this._hooks.debug(m),
    });
    this._election.join();
  }

  /**
   * Tab sessions: this tab's own session, retried with back-off until it
   * comes (false: this tab stopped meanwhile, or it was fatal).
   * @param {string} me
   */
  async _ownSession(me) {
    for (let attempt = 1; ; attempt++) {
      try {
        await /** @type {NonNullable<SharedHooks['ownSession']>} */ (this._hooks.ownSession)();
        return this._me === me;
      } catch (/** @type {any} */ e) {
        if (this._me !== me) return false;
        if (e?.fatal) {
          this._hooks.fatal(e);
          return false;
        }
        const delayMs = backoffDelay(attempt, this._opts.reconnect);
        this._hooks.reconnecting({ attempt, delayMs, error: e instanceof Error ? e : new Error(String(e)) });
        await new Promise((r) => setTimeout(r, delayMs));
        if (this._me !== me) return false;
      }
    }
  }

  /** @param {string} me */
  _lead(me) {
    if (this._me !== me || this._stopped) return;
    this._hooks.debug('shared: this tab leads; opening the shared connection');
    this._hub = new Hub(this, me);
    this._hub.start();
  }

  /** A message on one of this tab's channels (or from its own hub). */
  _receive(m) {
    if (!m || typeof m !== 'object' || (m.to && m.to !== this._me) || m.from === undefined) return;
    if (HUB_TYPES.has(m.t)) {
      if (this._hub) this._hub.receive(m);
      return;
    }
    this._member(m);
  }

  /** A message of a hub to this tab. */
  _member(m) {
    switch (m.t) {
      case 'leader':
      case 'welcome':
        this._follow(m.from, m.tab);
        if (m.t === 'leader') this._toHub({ t: 'join' });
        if (m.live) this._attach(m);
        return;
      case 'live':
        this._follow(m.from, m.tab);
        this._attach(m);
        return;
      case 'down':
        if (m.from === this._leader) this._down(m.detail);
        return;
      case 'fatal':
        if (m.from === this._leader) this._hooks.fatal(new Error(m.error));
        return;
      case 'missing': {
        // The leader's session found no queue for this tab (it expired):
        // this tab's own session creates it again, then the leader renews.
        if (m.from !== this._leader || !this._sessions) return;
        const me = this._me;
        void this._ownSession(me).then((ok) => {
          if (ok && this._me === me) this._toHub({ t: 'join' });
        });
        return;
      }
      case 'msg': {
        if (m.from !== this._leader || m.lgen !== this._lgen || !this._liveGen) {
          this._hooks.debug(`shared: a MESSAGE of connection ${m.lgen} dropped (following ${this._lgen}, live ${this._liveGen}, leader ${m.from === this._leader ? 'same' : 'other'})`);
          return;
        }
        const cb = this._subs.get(m.sub);
        if (cb) cb(this._frame(m));
        else this._hooks.debug(`shared: a MESSAGE for ${m.sub}, which this tab has not subscribed on connection ${m.lgen}: dropped`);
        return;
      }
      case 'receipt': {
        if (m.from !== this._leader || m.lgen !== this._lgen) return;
        const cb = this._receipts.get(m.id);
        this._receipts.delete(m.id);
        cb?.({ command: 'RECEIPT', headers: { 'receipt-id': m.id }, body: '', isBinaryBody: false, binaryBody: new Uint8Array() });
        return;
      }
    }
  }

  /**
   * Follow the hub `leader` (no-op if already): whatever was attached to the
   * previous one is stale now.
   * @param {string} leader @param {string} tab
   */
  _follow(leader, tab) {
    if (this._stopped || leader === this._leader) return;
    const had = this._leader;
    this._leader = leader;
    this._leaderTab = tab;
    this._toLeader?.close();
    this._toLeader = leader === this._me ? null : this._newChannel(`${this._base}:h:${leader}`);
    if (had !== null && this._liveGen) this._down({ attempt: this._attempt, delayMs: 0, error: 'shared connection: the leader tab changed' });
    this._lgen = 0;
    this._hooks.debug(`shared: following the leader tab ${tab}${leader === this._me ? ' (this tab)' : ''}`);
    this._hooks.leader({ tabId: tab, self: leader === this._me });
  }

  /** The leader's connection `m.lgen` is CONNECTED: subscribe this tab's queues on it. */
  _attach(m) {
    if (this._stopped || m.from !== this._leader || m.lgen === this._lgen) return;
    this._lgen = m.lgen;
    this._attempt = m.attempt ?? 0;
    const gen = ++this._gen;
    this._liveGen = gen;
    this._subs.clear();
    this._receipts.clear();
    this._conn = this._connection(gen, m.lgen);
    const offlineSince = this._downSince;
    this._hooks.subscribe(this._conn, gen).then(() => {
      if (gen !== this._liveGen) return;
      this._downSince = 0;
      this._hooks.connected({ attempt: this._attempt, url: m.url }, offlineSince);
    });
  }

  /** @param {{attempt: number, delayMs: number, error: string, url?: string}} d */
  _down(d) {
    if (this._stopped) return;
    if (this._liveGen) {
      this._downSince = Date.now();
      this._gen++;
    }
    this._liveGen = 0;
    this._lgen = 0;
    this._subs.clear();
    this._receipts.clear();
    this._attempt = d.attempt;
    const detail = { attempt: d.attempt, delayMs: d.delayMs, error: new Error(d.error), ...(d.url === undefined ? {} : { url: d.url }) };
    this._hooks.reconnecting(detail);
  }

  /** To the hub this tab follows. */
  _toHub(m) {
    m.from = this._me;
    m.tab = this._hooks.tabId();
    if (this._hub && this._leader === this._me) {
      const hub = this._hub;
      queueMicrotask(() => hub.receive(m));
    } else {
      try {
        this._toLeader?.postMessage(m);
      } catch (e) {
        this._hooks.debug(`shared: posting to the leader failed: ${e}`);
      }
    }
  }

  /**
   * The Connection this tab's subscriptions use while attached as `gen`:
   * every request goes to the hub, tagged with the leader's lgen.
   * @param {number} gen @param {number} lgen
   * @returns {Connection}
   */
  _connection(gen, lgen) {
    const self = this;
    const live = () => gen === self._liveGen;
    return {
      get connected() {
        return live();
      },
      subscribe(destination, callback, headers = {}) {
        const id = headers.id ?? `sub-${generateTabId()}`;
        if (live()) {
          self._subs.set(id, callback);
          self._toHub({ t: 'sub', lgen, destination, headers: { ...headers, id } });
        }
        return { id, unsubscribe: () => this.unsubscribe(id) };
      },
      unsubscribe(id) {
        if (!live()) return;
        self._subs.delete(id);
        self._toHub({ t: 'unsub', lgen, id });
      },
      watchForReceipt(receipt, callback) {
        if (live()) self._receipts.set(receipt, callback);
      },
      publish({ destination, headers = {}, body, binaryBody }) {
        // As stompjs does without a connection: the caller sends it again later.
        if (!live()) throw new TypeError('There is no underlying STOMP connection');
        self._toHub({ t: 'send', lgen, destination, headers, body: binaryBody ?? body ?? '' });
      },
    };
  }

  /** A MESSAGE frame as stompjs gives it, relayed: ack()/nack() go back to the hub. */
  _frame(m) {
    const self = this;
    const lgen = m.lgen;
    /** @param {boolean} nack @param {Record<string, string>} [headers] */
    const settle = (nack, headers = {}) => self._toHub({ t: 'ack', lgen, sub: m.hubSub, id: m.ackId, nack, headers });
    const binary = m.body instanceof Uint8Array;
    return {
      command: 'MESSAGE',
      headers: m.headers,
      isBinaryBody: binary,
      get body() {
        return binary ? new TextDecoder().decode(m.body) : m.body;
      },
      get binaryBody() {
        return binary ? m.body : new TextEncoder().encode(m.body);
      },
      ack: (/** @type {Record<string, string>} */ headers) => settle(false, headers),
      nack: (/** @type {Record<string, string>} */ headers) => settle(true, headers),
    };
  }
}

/**
 * @typedef {object} HubSub  one tab's subscription on the shared connection
 * @property {string} hubId   its STOMP subscription id on the shared connection
 * @property {string} member  the tab's member id
 * @property {string} id      the tab's own subscription id
 * @property {Set<string>} unacked  ack ids delivered and not yet acked/nacked
 */

/**
 * The leader's side: the one StompTransport, and every tab's subscriptions on it.
 */
class Hub {
  /** @param {SharedTransport} owner @param {string} me */
  constructor(owner, me) {
    this._owner = owner;
    this._me = me;
    this._base = owner._base;
    this._stopped = false;
    /** @type {Map<string, HubSub>} by hubId */
    this._subs = new Map();
    /** @type {Map<string, {tab: string, unwatch: () => void, out: BroadcastChannel|null}>} */
    this._members = new Map();
    this._group = owner._group;
    this._inbox = owner._newChannel(`${this._base}:h:${me}`);
    this._inbox.onmessage = (ev) => {
      const m = ev.data;
      if (m && typeof m === 'object' && HUB_TYPES.has(m.t)) this.receive(m);
    };
    /** @type {Map<string, string>} hub receipt of a SUBSCRIBE not yet confirmed -> member */
    this._pending = new Map();
    /** @type {Map<string, {strikes: number, until: number}>} members whose SUBSCRIBE was pending when the broker sent an ERROR */
    this._suspects = new Map();
    /** @type {{attempt: number, url: string|undefined}|null} the live connection's detail */
    this._live = null;
    /** @type {Set<string>|null} tab sessions: the queues and streams the connection's token reads */
    this._granted = null;
    /** @type {Set<string>|null} tab sessions: the tabs whose queue it reads */
    this._grantedTabs = null;
    this._firstPrepare = true;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this._renewTimer = null;
    this._lastRenew = 0;
    const hooks = owner._hooks;
    this._transport = new StompTransport(
      { ...owner._opts, unhandled: (frame) => this._unhandled(frame) },
      {
        prepare: () => (owner._sessions ? this._prepareSessions() : hooks.prepare()),
        // Each tab subscribes its own queues once told the connection is live.
        subscribe: () => Promise.resolve(),
        connected: (detail) => {
          this._live = detail;
          this._broadcast({ t: 'live', lgen: this._transport.liveGen, attempt: detail.attempt, url: detail.url });
        },
        reconnecting: (detail) => {
          this._live = null;
          this._blame(detail.error);
          this._subs.clear(); // the broker forgot them with the connection
          this._broadcast({ t: 'down', detail: { attempt: detail.attempt, delayMs: detail.delayMs, error: detail.error.message, url: detail.url } });
        },
        fatal: (error) => this._broadcast({ t: 'fatal', error: error.message }),
        debug: (m) => hooks.debug(m),
      },
    );
  }

  start() {
    this._broadcast({ t: 'leader', tab: this._owner._hooks.tabId() });
    this._transport.start();
    void this._transport.open();
  }

  /**
   * Tab sessions: a token for every tab that joined (after a short wait for
   * their joins on the first attempt); a tab the server found no queue for
   * is told to get its own session again.
   * @returns {Promise<Target|{fatal: Error}>}
   */
  async _prepareSessions() {
    if (this._firstPrepare) {
      this._firstPrepare = false;
      await new Promise((r) => setTimeout(r, JOIN_WINDOW_MS));
    }
    const tabs = [...new Set([...this._members].filter(([id, m]) => id !== this._me && m.tab).map(([, m]) => m.tab))];
    const t = await /** @type {NonNullable<SharedHooks['prepareLeader']>} */ (this._owner._hooks.prepareLeader)(tabs);
    if ('fatal' in t) return t;
    this._granted = new Set(t.granted);
    this._grantedTabs = new Set(t.grantedTabs);
    for (const [id, m] of this._members) if (t.missing.includes(m.tab)) this._to(id, m, { t: 'missing' });
    return { urls: t.urls, connectHeaders: t.connectHeaders };
  }

  /**
   * Tab sessions: a tab joined whose queue the token does not read:
   * reconnect with a new token (RabbitMQ checks a token at CONNECT; a
   * Web-STOMP connection cannot take a new one). Every tab resubscribes; what
   * was in flight comes again and is de-duplicated.
   */
  _renew() {
    if (this._renewTimer || this._stopped) return;
    const wait = Math.max(RENEW_DEBOUNCE_MS, this._lastRenew + RENEW_MIN_INTERVAL_MS - Date.now());
    this._renewTimer = setTimeout(() => {
      this._renewTimer = null;
      if (this._stopped) return;
      this._lastRenew = Date.now();
      this._live = null;
      this._subs.clear();
      this._pending.clear();
      this._broadcast({ t: 'down', detail: { attempt: 0, delayMs: 0, error: 'shared connection: a tab joined; reconnecting with a token that reads its queue' } });
      void this._transport.stop()();
      this._transport.start();
      void this._transport.open();
    }, wait);
  }

  /** Step down: no more connection; the broker requeues everything unacked. */
  stop() {
    this._stopped = true;
    if (this._renewTimer) clearTimeout(this._renewTimer);
    this._broadcast({ t: 'down', detail: { attempt: 0, delayMs: 0, error: 'shared connection: the leader tab left' } });
    for (const m of this._members.values()) {
      m.unwatch();
      m.out?.close();
    }
    this._members.clear();
    this._inbox.close();
    return this._transport.stop();
  }

  /** A tab's request. */
  receive(m) {
    if (this._stopped) return;
    const from = m.from;
    if (typeof from !== 'string' || !from) return;
    if (m.t === 'bye') {
      this._gone(from);
      return;
    }
    const member = this._member(from, m.tab);
    if (m.t === 'join') {
      if (this._grantedTabs && this._live && !this._grantedTabs.has(member.tab)) this._renew();
      const live = this._live && this._transport.liveGen;
      this._to(from, member, { t: 'welcome', tab: this._owner._hooks.tabId(), live: !!live, lgen: live || 0, attempt: this._live?.attempt, url: this._live?.url });
      return;
    }
    const conn = this._transport.client;
    if (!conn || m.lgen !== this._transport.liveGen || !this._transport.canAck(m.lgen)) {
      this._owner._hooks.debug(`shared: hub: ${m.t} of tab ${member.tab} for connection ${m.lgen} ignored (live ${this._transport.liveGen})`);
      return;
    }
    switch (m.t) {
      case 'sub': {
        if (this._granted && !this._granted.has(String(m.destination).replace(/^\/amq\/queue\//, ''))) {
          // Not in the token: the broker would refuse it and end the
          // connection for every tab. A new token first; the tab subscribes
          // again on the new connection.
          this._renew();
          return;
        }
        const suspect = this._suspects.get(from);
        if (suspect && Date.now() < suspect.until) {
          // Its last SUBSCRIBE may have been the one the broker refused
          // (which ends the connection for every tab): again only after its back-off.
          setTimeout(() => this.receive(m), suspect.until - Date.now());
          return;
        }
        // Unique per tab: the tab's id when it names the tab already (headers
        // mode: the queue name, so the consumer tag is the one the tab's own
        // connection would have), else with the tab id added (tab sessions:
        // 'events' in every tab). The same id again: this tab subscribes
        // anew, or a reloaded tab's new document replaces its old one (same
        // tab id, same queue) whose departure has not been seen yet.
        const hubId = member.tab && !String(m.headers.id).includes(member.tab) ? `${m.headers.id}.${member.tab}` : m.headers.id;
        const old = this._subs.get(hubId);
        if (old) this._release(old);
        /** @type {HubSub} */
        const s = { hubId, member: from, id: m.headers.id, unacked: new Set() };
        this._subs.set(hubId, s);
        /** @type {Record<string, string>} */
        const headers = { ...m.headers, id: hubId };
        if (m.headers.receipt) {
          const receipt = `${hubId}~${m.headers.receipt}`;
          headers.receipt = receipt;
          const lgen = m.lgen;
          this._pending.set(receipt, from);
          conn.watchForReceipt(receipt, () => {
            this._pending.delete(receipt);
            this._suspects.delete(from);
            this._to(from, member, { t: 'receipt', lgen, id: m.headers.receipt });
          });
        }
        conn.subscribe(m.destination, (frame) => this._deliver(s, m.lgen, frame), headers);
        return;
      }
      case 'unsub':
        for (const s of this._subs.values()) if (s.member === from && s.id === m.id) this._release(s);
        return;
      case 'ack': {
        const s = this._subs.get(m.sub);
        if (!s || s.member !== from || !s.unacked.delete(m.id)) return;
        if (m.nack) conn.nack(m.id, m.sub, m.headers);
        else conn.ack(m.id, m.sub, m.headers);
        return;
      }
      case 'send': {
        /** @type {Record<string, string>} */
        const headers = { ...m.headers };
        if (headers.receipt) {
          const theirs = headers.receipt;
          headers.receipt = `${from}~${theirs}`;
          const lgen = m.lgen;
          conn.watchForReceipt(headers.receipt, () => this._to(from, member, { t: 'receipt', lgen, id: theirs }));
        }
        if (m.body instanceof Uint8Array) conn.publish({ destination: m.destination, headers, binaryBody: m.body });
        else conn.publish({ destination: m.destination, headers, body: m.body });
        return;
      }
    }
  }

  /** The member `from`, registered (and its member lock watched) on first sight. */
  _member(from, tab) {
    let member = this._members.get(from);
    if (!member) {
      const own = from === this._me;
      member = {
        tab: String(tab ?? ''),
        out: own ? null : this._owner._newChannel(`${this._base}:m:${from}`),
        unwatch: own ? () => {} : watchLock(this._owner._locks, `${this._base}:m:${from}`, () => this._gone(from)),
      };
      this._members.set(from, member);
    }
    return member;
  }

  /**
   * The connection ended. A STOMP ERROR with SUBSCRIBEs unconfirmed: one of
   * them was likely refused (a missing exchange, other queue arguments, no
   * permission), and RabbitMQ ends the connection on it, for every tab. The
   * tabs that sent them subscribe again on the next connection only after a
   * back-off of their own (growing while it happens again), so one tab's bad
   * subscription costs the others a reconnect now and then, not a loop.
   * @param {Error & {frame?: any}} error
   */
  _blame(error) {
    const members = new Set(this._pending.values());
    this._pending.clear();
    // RabbitMQ 3.10.8 loses the ERROR of a refused SUBSCRIBE: the socket just closes ("STOMP died").
    if (!error?.frame && !/STOMP died/.test(error?.message ?? '')) return;
    for (const member of members) {
      const strikes = (this._suspects.get(member)?.strikes ?? 0) + 1;
      // At least twice the first reconnect delay (per strike): the other
      // tabs are subscribed again before it tries.
      const delayMs = Math.max(backoffDelay(strikes, this._owner._opts.reconnect), 2 * this._owner._opts.reconnect.initialMs * Math.min(strikes, 8));
      this._suspects.set(member, { strikes, until: Date.now() + delayMs });
      this._owner._hooks.debug(`shared: a SUBSCRIBE of tab ${this._members.get(member)?.tab} was pending when the broker sent ${error.message}; its subscriptions wait ${delayMs} ms`);
    }
  }

  /** A tab left (bye) or its document is gone (its member lock was released). */
  _gone(from) {
    const member = this._members.get(from);
    if (!member) return;
    this._members.delete(from);
    this._suspects.delete(from);
    member.unwatch();
    member.out?.close();
    for (const s of [...this._subs.values()]) if (s.member === from) this._release(s);
    this._owner._hooks.debug(`shared: tab ${member.tab} left`);
  }

  /**
   * Cancel a tab's subscription and hand back what it had not acked
   * (NACK, requeue): otherwise it stays unacked on this connection, out of
   * reach of that tab's next subscription, until the connection ends.
   * @param {HubSub} s
   */
  _release(s) {
    this._subs.delete(s.hubId);
    const conn = this._transport.client;
    if (!conn || !this._transport.liveGen) return;
    try {
      conn.unsubscribe(s.hubId);
      for (const id of s.unacked) conn.nack(id, s.hubId, { requeue: 'true' });
    } catch (e) {
      this._owner._hooks.debug(`shared: releasing ${s.hubId} failed: ${e}`);
    }
    s.unacked.clear();
  }

  /** A MESSAGE for a subscription no tab has any more: back to its queue. */
  _unhandled(frame) {
    try {
      frame.nack({ requeue: 'true' });
    } catch {
      // the connection is gone: the broker requeues it anyway
    }
  }

  /** @param {HubSub} s @param {number} lgen @param {any} frame */
  _deliver(s, lgen, frame) {
    const ackId = frame.headers.ack ?? frame.headers['message-id'];
    s.unacked.add(ackId);
    const member = this._members.get(s.member);
    if (!member) {
      this._owner._hooks.debug(`shared: hub: a MESSAGE on ${s.hubId}, whose tab is gone`);
      return;
    }
    this._to(s.member, member, {
      t: 'msg',
      lgen,
      sub: s.id,
      hubSub: s.hubId,
      ackId,
      headers: { ...frame.headers, subscription: s.id },
      body: frame.isBinaryBody ? frame.binaryBody : frame.body,
    });
  }

  /** To one tab: its inbox, or a direct call for this tab's own member. */
  _to(to, member, m) {
    m.from = this._me;
    m.to = to;
    if (to === this._me) {
      queueMicrotask(() => this._owner._receive(m));
      return;
    }
    try {
      member.out?.postMessage(m);
    } catch (e) {
      this._owner._hooks.debug(`shared: posting to a tab failed: ${e}`);
    }
  }

  /** To every tab of the group, this one included. */
  _broadcast(m) {
    m.from = this._me;
    m.tab = this._owner._hooks.tabId();
    try {
      this._group?.postMessage(m);
    } catch (e) {
      this._owner._hooks.debug(`shared: broadcast failed: ${e}`);
    }
    queueMicrotask(() => this._owner._receive(m));
  }
}
