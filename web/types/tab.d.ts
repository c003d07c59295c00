/**
 * A Storage-like in-memory map (for tests, or when sessionStorage is unavailable).
 * @returns {StorageLike & {removeItem: (key: string) => void}}
 */
export function memoryStorage(): StorageLike & {
    removeItem: (key: string) => void;
};
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
    constructor({ storage, storageKey, duplicateTabCheckMs, debug, renewed }: {
        storage?: StorageLike;
        storageKey: string;
        duplicateTabCheckMs: number;
        debug: (msg: string) => void;
        renewed: () => void;
    });
    storage: StorageLike;
    storageKey: string;
    /** The tab id. */
    get id(): string;
    /**
     * Take the id a tab session names (the server's queue is that tab's).
     * @param {string} tabId
     */
    adopt(tabId: string): void;
    /**
     * The JSON stored under `<storageKey>.<suffix>`, or null (none, unreadable,
     * or storage unavailable).
     * @param {string} suffix
     */
    read(suffix: string): any;
    /**
     * Store value as JSON under `<storageKey>.<suffix>` (if storage is full or
     * unavailable, it lives as long as the page).
     * @param {string} suffix
     * @param {any} value
     */
    write(suffix: string, value: any): void;
    /**
     * Resolves once this tab owns its id (at once without BroadcastChannel or
     * with the check disabled).
     * @returns {Promise<void>}
     */
    claim(): Promise<void>;
    /** Stop answering claims (close()): the next connect() claims again. */
    release(): void;
}
import type { StorageLike } from './typedefs.js';
