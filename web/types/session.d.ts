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
export function sessionSettings(opts: ClientOptions): SessionSettings | null;
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
    constructor(settings: SessionSettings, tab: Tab, debug: (msg: string) => void);
    /** @type {ParsedSession|null} the newest session, fetched or prepared */
    current: ParsedSession | null;
    /**
     * The prepared session if it is still good for a connection, once; it
     * becomes the current one. Null when there is none (ask with fetch()).
     * @returns {ParsedSession|null}
     */
    takePrepared(): ParsedSession | null;
    /** Drop the prepared session: it was made for another tab (this one was a duplicate). */
    forgetPrepared(): void;
    /**
     * Whether a session since the last call had to create the queue again
     * (it was gone: expired, deleted, lost).
     */
    takeQueueReset(): boolean;
    /**
     * POST to the session endpoint; on success the session is the current one
     * and its tab id the tab's. Throws SessionError.
     * @param {string[]} [tabs]  shared mode's leader: the other tabs whose queues the token should read too
     * @returns {Promise<ParsedSession>}
     */
    fetch(tabs?: string[]): Promise<ParsedSession>;
}
/**
 * the `session` option, validated
 */
export type SessionSettings = {
    url: string;
    bindings: {
        exchange: string;
        key: string;
    }[] | undefined;
    fetch: typeof fetch;
    getHeaders: (() => (Record<string, string> | Promise<Record<string, string>>)) | undefined;
    timeoutMs: number;
    initial: object | string | undefined;
};
import type { ClientOptions } from './typedefs.js';
import type { Tab } from './tab.js';
import type { ParsedSession } from './internal.js';
