// This tab as the client sees it: its id (kept in sessionStorage, so a reload
// keeps it and its queues), the storage the client keeps per tab (de-dup
// windows, stream offsets), and the duplicated-tab check that gives a copied
// tab an id of its own.

import { generateTabId, isValidTabId, onClaim } from './internal.js';

/** @import { StorageLike } from './typedefs.js' */

/** Random id of this document; claims from the same document are ignored. */
const DOC_ID = generateTabId();
const CHANNEL_NAME = 'durablews.tab-claims';

/**
 * The tab's id and storage. Keys are `<storageKey>` for the id and
 * `<storageKey>.<suffix>` for everything else the client stores.
 */
export class Tab {
  /**
   * @param {object} opts
   * @param {StorageLike} [opts.storage]  default: sessionStorage, else memory
   * @param {string} opts.storageKey
   * @param {number} opts.duplicateTabCheckMs  0 disables the duplicated-tab check
   * @param {(msg: string) => void} opts.debug
   * @param {() => void} opts.renewed  called when the check gave this tab a new id
   *   (before it is logged): what the client kept for the old id is not this tab's
   */
  constructor({ storage, storageKey, duplicateTabCheckMs, debug, renewed }) {
    this.storage = storage ?? defaultStorage();
    this.storageKey = storageKey;
    this._checkMs = duplicateTabCheckMs;
    this._debug = debug;
    this._renewed = renewed;
    /** @type {Promise<void>|null} */
    this._claim = null;
    /** @type {BroadcastChannel|null} */
    this._channel = null;
    this._id = this._load();
  }

  /** The tab id. */
  get id() {
    return this._id;
  }

  /**
   * Take the id a tab session names (the server's queue is that tab's).
   * @param {string} tabId
   */
  adopt(tabId) {
    if (tabId === this._id) return;
    this._debug(`tab session: tab id ${this._id} -> ${tabId}`);
    this._id = tabId;
    this._store(tabId);
  }

  /**
   * The JSON stored under `<storageKey>.<suffix>`, or null (none, unreadable,
   * or storage unavailable).
   * @param {string} suffix
   */
  read(suffix) {
    return readJSON(this.storage, `${this.storageKey}.${suffix}`);
  }

  /**
   * Store value as JSON under `<storageKey>.<suffix>` (if storage is full or
   * unavailable, it lives as long as the page).
   * @param {string} suffix
   * @param {any} value
   */
  write(suffix, value) {
    writeJSON(this.storage, `${this.storageKey}.${suffix}`, value);
  }

  // Duplicated-tab detection: "Duplicate tab" copies sessionStorage, so two
  // tabs would share a tab id and compete on the same queues. Announce our id
  // on a BroadcastChannel; a live tab that owns it answers 'taken' and we pick
  // a new one. The channel stays open (until release()) to answer later claims.
  /**
   * Resolves once this tab owns its id (at once without BroadcastChannel or
   * with the check disabled).
   * @returns {Promise<void>}
   */
  claim() {
    if (this._claim) return this._claim;
    if (typeof BroadcastChannel === 'undefined' || !(this._checkMs > 0)) {
      this._claim = Promise.resolve();
      return this._claim;
    }
    const ch = new BroadcastChannel(CHANNEL_NAME);
    this._channel = ch;
    const me = { tabId: this._id, nonce: generateTabId(), owned: false };
    this._claim = new Promise((resolve) => {
      const own = () => {
        if (me.owned) return;
        me.owned = true;
        clearTimeout(timer);
        resolve();
      };
      const renew = () => {
        const old = this._id;
        this._id = generateTabId();
        this._store(this._id);
        me.tabId = this._id;
        this._renewed();
        this._debug(`duplicated tab detected: tab id ${old} -> ${this._id}`);
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
      const timer = setTimeout(own, this._checkMs);
      ch.postMessage({ type: 'claim', tabId: me.tabId, nonce: me.nonce, doc: DOC_ID });
    });
    return this._claim;
  }

  /** Stop answering claims (close()): the next connect() claims again. */
  release() {
    if (this._channel) this._channel.close();
    this._channel = null;
    this._claim = null;
  }

  _load() {
    let id = null;
    try {
      id = this.storage.getItem(this.storageKey);
    } catch {
      // storage unavailable
    }
    if (!isValidTabId(id)) {
      id = generateTabId();
      this._store(id);
    }
    return id;
  }

  /** @param {string} id */
  _store(id) {
    try {
      this.storage.setItem(this.storageKey, id);
    } catch {
      // storage full or unavailable: the id lives as long as this page
    }
  }
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
