// Tab sessions (tab-session mode): the `session` option, the session the
// server prepared while rendering the page, the requests to the
// application's endpoint before every connection attempt, and the newest
// session, which names this tab's queue, the streams it may read and the
// token to connect with.

import { DEFAULTS } from './defaults.js';
import { SessionError, sessionTimeoutError } from './errors.js';
import { normalizeTimeout, parseSession, sessionErrorIsFatal } from './internal.js';

/** @import { ClientOptions } from './typedefs.js' */
/** @import { ParsedSession } from './internal.js' */
/** @import { Tab } from './tab.js' */

/** A prepared session closer than this to its expiry is not used (its token may be gone at CONNECT). */
const PREPARED_MARGIN_MS = 5000;

/**
 * @typedef {object} SessionSettings  the `session` option, validated
 * @property {string} url
 * @property {{exchange: string, key: string}[]|undefined} bindings
 * @property {typeof fetch} fetch
 * @property {(() => (Record<string, string>|Promise<Record<string, string>>))|undefined} getHeaders
 * @property {number} timeoutMs
 * @property {object|string|undefined} initial
 */

/**
 * Validates the options of tab-session mode; null without `session`.
 * @param {ClientOptions} opts
 * @returns {SessionSettings|null}
 */
export function sessionSettings(opts) {
  if (opts.session === undefined) return null;
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
  return {
    url: so.url,
    bindings: so.bindings,
    // Called as a plain function: window.fetch throws "Illegal invocation"
    // when called as a method of another object.
    fetch: so.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    getHeaders: so.getHeaders,
    timeoutMs: normalizeTimeout(so.timeoutMs ?? DEFAULTS.session.timeoutMs, 'session.timeoutMs'),
    initial: so.initial,
  };
}

/**
 * The tab's sessions: where the next connection attempt gets its queue,
 * streams and token from. A session's tab id becomes the tab's id.
 */
export class TabSessions {
  /**
   * @param {SessionSettings} settings  see sessionSettings()
   * @param {Tab} tab
   * @param {(msg: string) => void} debug
   */
  constructor(settings, tab, debug) {
    this._settings = settings;
    this._tab = tab;
    this._debug = debug;
    /** @type {ParsedSession|null} the newest session, fetched or prepared */
    this.current = null;
    /** a session since the previous one created the queue again; reported with the next 'connected' */
    this._queueReset = false;
    /** @type {ParsedSession|null} a session the server prepared at render time, for the first connection only */
    this._initial = null;
    if (settings.initial !== undefined) {
      let init = settings.initial;
      try {
        if (typeof init === 'string') init = JSON.parse(init);
        this._initial = parseSession(init);
      } catch (e) {
        throw new TypeError(`DurableClient: session.initial is not a usable tab session: ${e.message}`);
      }
      // Its queue is this tab's from now on (the server made it for this page).
      tab.adopt(this._initial.tabId);
    }
  }

  /**
   * The prepared session if it is still good for a connection, once; it
   * becomes the current one. Null when there is none (ask with fetch()).
   * @returns {ParsedSession|null}
   */
  takePrepared() {
    const s = this._initial;
    this._initial = null;
    // A page kept open (or restored) long after its render: the token may be
    // gone, so ask for a fresh session instead of failing one attempt.
    if (s && !(s.expiresAt - Date.now() > PREPARED_MARGIN_MS)) {
      this._debug('prepared tab session expired; requesting a new one');
      return null;
    }
    return s ? this._use(s) : null;
  }

  /** Drop the prepared session: it was made for another tab (this one was a duplicate). */
  forgetPrepared() {
    this._initial = null;
  }

  /**
   * Whether a session since the last call had to create the queue again
   * (it was gone: expired, deleted, lost).
   */
  takeQueueReset() {
    const r = this._queueReset;
    this._queueReset = false;
    return r;
  }

  /**
   * POST to the session endpoint; on success the session is the current one
   * and its tab id the tab's. Throws SessionError.
   * @param {string[]} [tabs]  shared mode's leader: the other tabs whose queues the token should read too
   * @returns {Promise<ParsedSession>}
   */
  async fetch(tabs) {
    const so = this._settings;
    /** @type {{tab_id: string, bindings?: {exchange: string, key: string}[], tabs?: string[]}} */
    const body = { tab_id: this._tab.id };
    if (so.bindings) body.bindings = so.bindings;
    if (tabs && tabs.length > 0) body.tabs = tabs;
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
    return this._use(s);
  }

  /**
   * Remember a session (fetched or prepared) and the tab id it names.
   * @param {ParsedSession} s
   */
  _use(s) {
    this._tab.adopt(s.tabId);
    // The first session of this client creating the queue is normal; a
    // later one means the queue had been lost in between.
    if (s.queueCreated && this.current !== null) this._queueReset = true;
    this.current = s;
    return s;
  }
}
