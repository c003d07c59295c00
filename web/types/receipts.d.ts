/**
 * The wait before resending after n connections in a row ended with receipts
 * unconfirmed (n >= 1 here: the first resend goes at once): exponential with
 * equal jitter, so at least half of 1 s, 2 s, 4 s, ... 5 min.
 * @param {number} n
 */
export function resendDelay(n: number, random?: () => number): number;
/**
 * One receipt, as stored and as sent (the body's `receipts` entries).
 * @typedef {object} Receipt
 * @property {string} id      the message id (de-dup id)
 * @property {string} sub     the subscription's name
 * @property {number} at      ms since the epoch: when the handlers resolved
 * @property {string} [stream]  stream subscriptions
 * @property {number} [offset]  stream subscriptions
 */
/**
 * @typedef {object} ReceiptSettings  the `receipts` option, validated
 * @property {string|null} userKey  headers mode: the routing key's first word; null: no receipts (tab-session mode: always null, the session names the destination)
 * @property {string} exchange
 * @property {number} flushMs
 * @property {number} maxBatch
 * @property {number} maxPending
 */
/**
 * @typedef {object} ReceiptHooks  how the sender asks the client
 * @property {Tab} tab  its storage
 * @property {() => ({destination: string, tabId: string}|null)} target  where
 *   this tab's receipts go now; null: nowhere (none are recorded)
 * @property {() => ({connection: Connection, gen: number}|null)} live  the
 *   connection that is CONNECTED now, else null
 * @property {(event: ReceiptEvent) => void} confirmed  a batch was confirmed
 * @property {(msg: string) => void} debug
 */
/**
 * Validates the `receipts` option. Tab-session mode ignores `userKey` and
 * `exchange` (the session names the destination).
 * @param {ClientOptions} opts
 * @param {boolean} sessionMode
 * @returns {ReceiptSettings}
 */
export function receiptSettings(opts: ClientOptions, sessionMode: boolean): ReceiptSettings;
/** @import { ClientOptions, ClientStats, ReceiptEvent } from './typedefs.js' */
/** @import { Tab } from './tab.js' */
/** @import { Connection } from './transport.js' */
/** Where the unconfirmed receipts live: `<storageKey>.receipts.pending`. */
export const RECEIPTS_STORAGE_SUFFIX: "receipts.pending";
/** Upper bound of maxBatch: one SEND stays a few tens of KB. */
export const MAX_RECEIPT_BATCH: 1000;
/** Upper bound of maxPending: sessionStorage holds about 5 MB per origin. */
export const MAX_RECEIPTS_PENDING: 20000;
/**
 * The receipt sender of a client. A receipt is one of:
 * - held: handled, but its ACK could not be written (the connection had
 *   ended); released when the redelivered copy is acked as a duplicate;
 * - pending: handled and acked, not sent yet;
 * - in flight: sent, its SEND's RECEIPT not arrived yet.
 * All three are in storage; a RECEIPT removes its batch.
 */
export class ReceiptSender {
    /**
     * @param {ReceiptSettings} settings
     * @param {ReceiptHooks} hooks
     */
    constructor(settings: ReceiptSettings, hooks: ReceiptHooks);
    /** @returns {ClientStats} */
    get stats(): ClientStats;
    /**
     * A message's handlers resolved. `acked`: its ACK was written (the
     * receipt is sent); otherwise it is held until release().
     * @param {Receipt} r
     * @param {boolean} acked
     */
    record(r: Receipt, acked: boolean): void;
    /**
     * The redelivered copy of a message was acked without calling its handlers
     * (a duplicate): a receipt held for it is sent now.
     * @param {string} sub
     * @param {string|undefined} id
     */
    release(sub: string, id: string | undefined): void;
    /**
     * A connection is CONNECTED with every subscription confirmed: batches
     * sent on an earlier one never got their RECEIPT and go out again.
     * @param {number} gen  the connection's generation
     */
    connected(gen: number): void;
    /** The client closes: send what is pending now (a close() or pagehide), no timers. */
    stop(): void;
    /** Forget every receipt: this tab became another tab (a duplicated tab's copies are the original's). */
    clear(): void;
}
/**
 * One receipt, as stored and as sent (the body's `receipts` entries).
 */
export type Receipt = {
    /**
     * the message id (de-dup id)
     */
    id: string;
    /**
     * the subscription's name
     */
    sub: string;
    /**
     * ms since the epoch: when the handlers resolved
     */
    at: number;
    /**
     * stream subscriptions
     */
    stream?: string;
    /**
     * stream subscriptions
     */
    offset?: number;
};
/**
 * the `receipts` option, validated
 */
export type ReceiptSettings = {
    /**
     * headers mode: the routing key's first word; null: no receipts (tab-session mode: always null, the session names the destination)
     */
    userKey: string | null;
    exchange: string;
    flushMs: number;
    maxBatch: number;
    maxPending: number;
};
/**
 * how the sender asks the client
 */
export type ReceiptHooks = {
    /**
     * its storage
     */
    tab: Tab;
    /**
     * where
     * this tab's receipts go now; null: nowhere (none are recorded)
     */
    target: () => ({
        destination: string;
        tabId: string;
    } | null);
    /**
     * the
     * connection that is CONNECTED now, else null
     */
    live: () => ({
        connection: Connection;
        gen: number;
    } | null);
    /**
     * a batch was confirmed
     */
    confirmed: (event: ReceiptEvent) => void;
    debug: (msg: string) => void;
};
import type { ClientOptions } from './typedefs.js';
import type { ClientStats } from './typedefs.js';
import type { Connection } from './transport.js';
import type { Tab } from './tab.js';
import type { ReceiptEvent } from './typedefs.js';
