/** @typedef {{request: Function}} LockManagerLike  navigator.locks (or a test double) */
/**
 * Whether this browser can share one connection between tabs: Web Locks and
 * BroadcastChannel. Without either, every tab connects on its own.
 * @param {any} [g]
 * @returns {LockManagerLike|null}
 */
export function sharedLocks(g?: any): LockManagerLike | null;
/**
 * Hold a lock until release() (a tab's member lock). Resolves once held.
 * @param {LockManagerLike} locks
 * @param {string} name
 * @returns {Promise<() => void>} release
 */
export function holdLock(locks: LockManagerLike, name: string): Promise<() => void>;
/**
 * Call gone() once nobody holds the lock `name` any more (the tab holding it
 * closed): a leader's watch on a follower's member lock. The returned
 * function stops watching.
 * @param {LockManagerLike} locks
 * @param {string} name
 * @param {() => void} gone
 * @returns {() => void}
 */
export function watchLock(locks: LockManagerLike, name: string, gone: () => void): () => void;
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
    constructor(locks: LockManagerLike, name: string, hooks: {
        onLeader: () => void;
        debug: (msg: string) => void;
    });
    /** Whether this tab holds the lock. */
    get leading(): boolean;
    /** Queue for the lock (no-op while queued or leading). */
    join(): void;
    /** Give the lock back, or leave the queue. */
    leave(): void;
}
/**
 * navigator.locks (or a test double)
 */
export type LockManagerLike = {
    request: Function;
};
