// Shared mode's election: which tab of a browser holds the one STOMP
// connection of its group (same origin, same broker, vhost and user). The
// Web Locks API decides: every tab of the group asks for the group's lock,
// the one holding it is the leader, the others wait in the lock's queue, and
// when the leader's document goes (closed, reloaded, crashed, discarded) the
// browser releases its lock and the next tab in the queue gets it. Lock
// acquisition is leadership: nobody has to notice a dead leader, the browser
// does.
//
// The same mechanism tells a leader that a follower is gone: every tab holds
// a lock of its own (its member lock) for as long as it takes part; the
// leader asks for it too, and gets it only when that tab's document is gone.

/** @typedef {{request: Function}} LockManagerLike  navigator.locks (or a test double) */

/**
 * Whether this browser can share one connection between tabs: Web Locks and
 * BroadcastChannel. Without either, every tab connects on its own.
 * @param {any} [g]
 * @returns {LockManagerLike|null}
 */
export function sharedLocks(g = globalThis) {
  const locks = g.navigator?.locks;
  if (!locks || typeof locks.request !== 'function' || typeof g.BroadcastChannel !== 'function') return null;
  return locks;
}

/**
 * One tab's place in a group's election. join() queues for the lock;
 * onLeader runs once the lock is granted; leave() gives it back (or leaves
 * the queue). A tab that left can join again.
 */
export class Election {
  /**
   * @param {LockManagerLike} locks
   * @param {string} name  the group's lock name
   * @param {{onLeader: () => void, debug: (msg: string) => void}} hooks
   */
  constructor(locks, name, hooks) {
    this._locks = locks;
    this._name = name;
    this._hooks = hooks;
    /** @type {AbortController|null} while queued or leading */
    this._abort = null;
    /** @type {(() => void)|null} releases the held lock */
    this._release = null;
  }

  /** Whether this tab holds the lock. */
  get leading() {
    return this._release !== null;
  }

  /** Queue for the lock (no-op while queued or leading). */
  join() {
    if (this._abort) return;
    const abort = new AbortController();
    this._abort = abort;
    this._locks
      .request(this._name, { signal: abort.signal }, () => {
        if (abort.signal.aborted) return undefined; // left while the grant was on its way
        /** @type {Promise<void>} */
        const held = new Promise((resolve) => {
          this._release = () => {
            this._release = null;
            resolve();
          };
        });
        this._hooks.debug(`shared: this tab holds ${this._name}`);
        this._hooks.onLeader();
        return held;
      })
      .catch((/** @type {any} */ e) => {
        if (e?.name !== 'AbortError') this._hooks.debug(`shared: lock request failed: ${e?.message ?? e}`);
      });
  }

  /** Give the lock back, or leave the queue. */
  leave() {
    const abort = this._abort;
    this._abort = null;
    abort?.abort();
    const release = this._release;
    if (release) release();
  }
}

/**
 * Hold a lock until release() (a tab's member lock). Resolves once held.
 * @param {LockManagerLike} locks
 * @param {string} name
 * @returns {Promise<() => void>} release
 */
export function holdLock(locks, name) {
  return new Promise((granted, failed) => {
    locks
      .request(name, () => new Promise((release) => granted(() => release(undefined))))
      .catch(failed);
  });
}

/**
 * Call gone() once nobody holds the lock `name` any more (the tab holding it
 * closed): a leader's watch on a follower's member lock. The returned
 * function stops watching.
 * @param {LockManagerLike} locks
 * @param {string} name
 * @param {() => void} gone
 * @returns {() => void}
 */
export function watchLock(locks, name, gone) {
  const abort = new AbortController();
  locks
    .request(name, { signal: abort.signal }, () => {
      if (!abort.signal.aborted) gone();
    })
    .catch(() => {});
  return () => abort.abort();
}
