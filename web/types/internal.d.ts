/**
 * Exponential back-off with full jitter ("AWS full jitter"):
 * delay = random() * min(maxMs, initialMs * 2^(attempt-1)).
 *
 * @param {number} attempt  1 for the first retry, 2 for the second, ...
 * @param {{initialMs?: number, maxMs?: number}} [opts]
 * @param {() => number} [random]  returns a number in [0, 1)
 * @returns {number} delay in whole milliseconds, 0 <= delay <= maxMs
 */
export function backoffDelay(attempt: number, opts?: {
    initialMs?: number;
    maxMs?: number;
}, random?: () => number): number;
/**
 * Create a random tab id: 26 lowercase base32 characters (130 bits of which 128
 * are random). Only [a-z2-7], so it is safe in queue names and never contains
 * the '-' separator.
 *
 * @param {(buf: Uint8Array) => Uint8Array} [getRandomValues]
 *   defaults to crypto.getRandomValues (available in insecure contexts too,
 *   unlike crypto.randomUUID)
 */
export function generateTabId(getRandomValues?: (buf: Uint8Array) => Uint8Array): string;
/** @param {unknown} id @returns {boolean} */
export function isValidTabId(id: unknown): boolean;
/**
 * Derive the per-tab queue name `<prefix>-<tabId>-<name>`.
 *
 * @param {string} prefix  e.g. 'tab' or 'tab-alice' ([A-Za-z0-9_.-])
 * @param {string} tabId   see generateTabId
 * @param {string} name    subscription name ([A-Za-z0-9_.-])
 * @returns {string}
 * @throws {TypeError} on invalid characters or a name longer than 255 bytes
 */
export function queueName(prefix: string, tabId: string, name: string): string;
/**
 * STOMP destination for an exchange subscription: `/exchange/<exchange>/<bindingKey>`.
 * An empty bindingKey (fanout) gives `/exchange/<exchange>`.
 * @param {string} exchange
 * @param {string} [bindingKey]
 */
export function exchangeDestination(exchange: string, bindingKey?: string): string;
/**
 * @typedef {object} SubscribeSpec
 * @property {string} exchange      durable exchange the Go side publishes to (must exist)
 * @property {string} [bindingKey]  e.g. 'customer.42.#' ('' for fanout)
 * @property {string} name          subscription name, part of the queue name
 * @property {number} [expiresMs]   x-expires of the queue (default 3600000)
 * @property {number} [prefetch]    prefetch-count (default 10, 1..1000)
 */
/**
 * Normalise and validate a subscription spec. Returns a frozen object.
 * @param {SubscribeSpec} spec
 */
export function normalizeSpec(spec: SubscribeSpec): Readonly<{
    exchange: string;
    bindingKey: string;
    name: string;
    expiresMs: number;
    prefetch: number;
    destination: string;
}>;
/**
 * SUBSCRIBE headers for a durable per-tab queue. Every value is a string, and
 * the result depends only on (spec, queue name), so it is identical across
 * reconnects (a changed x-expires would make RabbitMQ close the connection with
 * PRECONDITION_FAILED). `destination` is included; stompjs takes it separately.
 *
 * `exclusive: 'false'` is what keeps the queue when the tab is away: RabbitMQ 4.x
 * makes an `/exchange/` subscription's queue exclusive (deleted with the
 * connection) unless the frame says otherwise, even with `durable` and
 * `auto-delete: false`; 3.10 ignores the header and keeps it either way
 * (measured on 3.10.8, 4.0.5, 4.3.6; rabbitmq-server#13009).
 *
 * @param {ReturnType<typeof normalizeSpec>} spec
 * @param {string} queue  see queueName()
 * @returns {Record<string, string>}
 */
export function subscribeHeaders(spec: ReturnType<typeof normalizeSpec>, queue: string): Record<string, string>;
/**
 * The id used for de-duplication: `amqp-message-id` (the Watermill UUID set as
 * AMQP message_id by the Go publisher), falling back to Watermill's
 * `_watermill_message_uuid` header. Undefined if neither is present; such
 * messages are never treated as duplicates.
 * @param {Record<string, string>} headers
 * @returns {string|undefined}
 */
export function messageKey(headers: Record<string, string>): string | undefined;
/**
 * Decide what to do when a tab-id claim arrives on the BroadcastChannel
 * (duplicated-tab detection). Tabs with the same id are duplicates (Chrome
 * "Duplicate tab" copies sessionStorage). The tab that owns the id answers
 * 'taken'; if both are still claiming, the lower nonce wins.
 *
 * @param {{tabId: string, nonce: string, owned: boolean}} me
 * @param {{tabId: string, nonce: string}} claim  the other tab's claim
 * @returns {'ignore'|'reply-taken'|'yield'}
 *   'reply-taken': tell the other tab to pick a new id;
 *   'yield': this tab must pick a new id itself.
 */
export function onClaim(me: {
    tabId: string;
    nonce: string;
    owned: boolean;
}, claim: {
    tabId: string;
    nonce: string;
}): "ignore" | "reply-taken" | "yield";
/**
 * Normalizes a subscribe() spec in tab-session mode: only name, prefetch (and
 * onError, handled by the caller). The queue, its bindings and its arguments
 * are the server's (see ClientOptions.session), so exchange, bindingKey and
 * expiresMs are refused rather than silently ignored.
 * @param {any} spec
 */
export function normalizeSessionSpec(spec: any): Readonly<{
    name: any;
    prefetch: any;
    session: true;
}>;
/**
 * SUBSCRIBE headers in tab-session mode: the server-declared queue's
 * destination, an explicit stable id, client-individual acks and a prefetch.
 * Nothing that declares (no x-queue-name, durable, x-expires): the token has no
 * configure permission, and RabbitMQ 3.10.8 answers a refused SUBSCRIBE by
 * closing the socket.
 * @param {{name: string, prefetch: number}} spec
 * @param {string} destination  `/amq/queue/<queue>` from the session response
 * @returns {Record<string, string>}
 */
export function sessionSubscribeHeaders(spec: {
    name: string;
    prefetch: number;
}, destination: string): Record<string, string>;
/**
 * Whether a failed session request is final: 4xx (401 log in again, 403 not
 * allowed, 400/405/415 a client or deployment bug) except 408 and 429. 5xx,
 * network errors and malformed responses are retried with back-off.
 * @param {number} status  HTTP status, 0 for a network error
 */
export function sessionErrorIsFatal(status: number): boolean;
/**
 * @typedef {object} ParsedSession
 * @property {string} tabId
 * @property {string} url
 * @property {string[]} urls     every node's Web-STOMP URL (`urls`), else [url]
 * @property {Map<string, {destination: string, start: StreamPosition|undefined}>} streams
 *   the streams this session grants (`streams: [{name, destination, start?}]`)
 * @property {string} vhost
 * @property {string} queue
 * @property {string} destination
 * @property {string} token
 * @property {number} expiresAt   ms since the epoch (NaN if absent)
 * @property {number} renewInMs
 * @property {boolean} queueCreated
 * @property {{tabId: string, queue: string, destination: string}[]} tabs  a shared-mode
 *   leader's session: the other tabs whose queues its token reads too (`tabs`)
 * @property {string[]} missingTabs  the requested tabs without a queue (`missing_tabs`)
 * @property {{destination: string, userKey: string}|null} receipts  where this tab
 *   sends its delivery receipts (`receipts: {destination, user_key}`), null without
 */
/**
 * Checks a 200 session response (see the Go package tabsession) and
 * returns the fields the client uses. Throws a TypeError naming the bad field.
 * @param {any} s
 * @returns {ParsedSession}
 */
export function parseSession(s: any): ParsedSession;
/**
 * The destination of a tab's receipts in headers mode:
 * `/exchange/<exchange>/<userKey>.<tabId>` (docs/receipts.md).
 * @param {string} exchange
 * @param {string} userKey
 * @param {string} tabId
 */
export function receiptDestination(exchange: string, userKey: string, tabId: string): string;
/**
 * The routing key a message was published with: the Go side's `routing_key`
 * metadata header if present, otherwise taken from the STOMP `destination`
 * RabbitMQ sets on every MESSAGE (`/exchange/<exchange>/<routing key>`,
 * `/topic/<key>`, or `/queue/<key>` for the default exchange). '' if unknown.
 * @param {Record<string, string>} headers
 * @returns {string}
 */
export function routingKeyOf(headers: Record<string, string>): string;
/**
 * Compile an AMQP topic pattern (`*` one word, `#` zero or more words, words
 * separated by '.') into a predicate on routing keys, as a topic exchange
 * matches them.
 * @param {string} pattern e.g. 'customer.*.order_paid' or 'customer.42.#'
 * @returns {(routingKey: string) => boolean}
 */
export function topicMatcher(pattern: string): (routingKey: string) => boolean;
/**
 * Retry settings of a subscription, validated, with defaults.
 * @param {{attempts?: number, initialMs?: number, maxMs?: number}|undefined} r
 * @returns {{attempts: number, initialMs: number, maxMs: number}}
 */
export function normalizeRetry(r?: {
    attempts?: number;
    initialMs?: number;
    maxMs?: number;
} | undefined): {
    attempts: number;
    initialMs: number;
    maxMs: number;
};
/**
 * The handler time-out: a non-negative integer of milliseconds, 0 = none.
 * @param {unknown} ms
 * @returns {number}
 */
export function normalizeTimeout(ms: unknown, name?: string): number;
/**
 * A validated list of Web-STOMP URLs: `url` may be one URL or a list of them
 * (one per cluster node, or one load-balanced URL).
 * @param {unknown} url
 * @param {string} [prefix]  starts the error message, e.g. 'DurableClient: '
 * @param {string} [field]   the field's name in the error message
 * @returns {string[]}
 */
export function urlList(url: unknown, prefix?: string, field?: string): string[];
/**
 * Where a tab starts reading a stream it has no offset for yet:
 * `{kind: 'last', offset}` (the server's broadcast.EndPosition, `{last: N}`:
 * the page's state includes offset N), `{kind: 'timestamp', ts}` (whole unix
 * seconds, `{timestamp: S}`), `{kind: 'first'}` (`'first'` or `{first: true}`)
 * or `{kind: 'next'}` (`'next'`, the default: only what is published from now).
 * @typedef {{kind: 'last', offset: number}|{kind: 'timestamp', ts: number}|{kind: 'first'}|{kind: 'next'}} StreamPosition
 */
/**
 * Parses a stream start position as the server (package broadcast's
 * Position JSON) or the page gives it. Throws a TypeError naming `what`.
 * @param {unknown} p
 * @param {string} [what]
 * @returns {StreamPosition}
 */
export function parsePosition(p: unknown, what?: string): StreamPosition;
/**
 * The SUBSCRIBE header x-stream-offset for a position: `offset=N` (a tab
 * that handled N asks for N again, see package broadcast: offsets are not
 * dense, so only the repeated frame tells "nothing missed" from a gap),
 * `timestamp=S`, `first` or `next`.
 * @param {StreamPosition} pos
 */
export function streamOffsetHeader(pos: StreamPosition): string;
/** The STOMP destination of a stream: `/amq/queue/<stream>` (never /queue/, which declares). */
export function streamDestination(stream: any): string;
/**
 * Normalises a stream subscription spec (`{stream, name?, prefetch?, start?}`):
 * both modes; the destination is derived in headers mode and comes from the
 * session in tab-session mode.
 * @param {any} spec
 */
export function normalizeStreamSpec(spec: any): Readonly<{
    stream: any;
    name: string;
    prefetch: any;
    start: StreamPosition;
}>;
/**
 * SUBSCRIBE headers of a stream subscription (both modes): the stream's
 * destination, a stable id, client-individual acks (credit only: the broker
 * stores no offset), the prefetch the broker requires for streams, and where
 * to start.
 * @param {{stream: string, prefetch: number}} spec
 * @param {string} destination
 * @param {StreamPosition} pos
 * @returns {Record<string, string>}
 */
export function streamSubscribeHeaders(spec: {
    stream: string;
    prefetch: number;
}, destination: string, pos: StreamPosition): Record<string, string>;
/**
 * The offset of a stream MESSAGE (`x-stream-offset`), or undefined if the
 * header is missing or not a non-negative integer.
 * @param {Record<string, string>} headers
 * @returns {number|undefined}
 */
export function streamOffsetOf(headers: Record<string, string>): number | undefined;
/**
 * The tab's side of the stream protocol (package broadcast) for one MESSAGE,
 * before its id is looked at: `gap` when this is the first MESSAGE of a
 * subscription that asked for `offset=<last>` and it is beyond last+1
 * (retention removed offsets last+1 .. offset-1 while the tab was away);
 * `skip` when the tab already handled this offset (a resume repeats the last
 * handled frame).
 * @param {StreamPosition} want   what the SUBSCRIBE asked for
 * @param {number|null} last      the last handled offset (null: none yet)
 * @param {boolean} first         the first MESSAGE of this SUBSCRIBE
 * @param {number} offset
 * @returns {{gap: {from: number, to: number}|null, skip: boolean}}
 */
export function streamStep(want: StreamPosition, last: number | null, first: boolean, offset: number): {
    gap: {
        from: number;
        to: number;
    } | null;
    skip: boolean;
};
/** Upper bound for prefetch-count; a browser tab has no business holding more. */
export const MAX_PREFETCH: 1000;
/** RabbitMQ's limit for queue names, in UTF-8 bytes. */
export const MAX_QUEUE_NAME_BYTES: 255;
/**
 * A bounded set of recently seen message ids. Oldest ids are evicted first
 * (insertion order; re-adding an id refreshes it).
 */
export class DedupWindow {
    /** @param {number} size maximum number of ids remembered (0 disables) */
    constructor(size?: number);
    size: number;
    /** @param {string|undefined} id @returns {boolean} */
    has(id: string | undefined): boolean;
    /** Remember id (no-op for empty ids or size 0). @param {string|undefined} id */
    add(id: string | undefined): void;
    /** Forget every id. */
    clear(): void;
    /** The ids, oldest first (what {@link DedupWindow#load} takes back). @returns {string[]} */
    ids(): string[];
    /**
     * Add ids saved by {@link DedupWindow#ids}, oldest first; anything that is
     * not an array of non-empty strings is ignored (storage written by another
     * version, or by hand).
     * @param {unknown} ids
     */
    load(ids: unknown): void;
    get length(): number;
}
/** Major version of the tab-session JSON this client understands (the `v` field). */
export const SESSION_VERSION: 1;
/** A receipts user key (docs/receipts.md): the routing key's first word. */
export const RECEIPT_USER_KEY_RE: RegExp;
export type SubscribeSpec = {
    /**
     * durable exchange the Go side publishes to (must exist)
     */
    exchange: string;
    /**
     * e.g. 'customer.42.#' ('' for fanout)
     */
    bindingKey?: string;
    /**
     * subscription name, part of the queue name
     */
    name: string;
    /**
     * x-expires of the queue (default 3600000)
     */
    expiresMs?: number;
    /**
     * prefetch-count (default 10, 1..1000)
     */
    prefetch?: number;
};
export type ParsedSession = {
    tabId: string;
    url: string;
    /**
     * every node's Web-STOMP URL (`urls`), else [url]
     */
    urls: string[];
    /**
     *   the streams this session grants (`streams: [{name, destination, start?}]`)
     */
    streams: Map<string, {
        destination: string;
        start: StreamPosition | undefined;
    }>;
    vhost: string;
    queue: string;
    destination: string;
    token: string;
    /**
     * ms since the epoch (NaN if absent)
     */
    expiresAt: number;
    renewInMs: number;
    queueCreated: boolean;
    /**
     * a shared-mode
     * leader's session: the other tabs whose queues its token reads too (`tabs`)
     */
    tabs: {
        tabId: string;
        queue: string;
        destination: string;
    }[];
    /**
     * the requested tabs without a queue (`missing_tabs`)
     */
    missingTabs: string[];
    /**
     * where this tab
     * sends its delivery receipts (`receipts: {destination, user_key}`), null without
     */
    receipts: {
        destination: string;
        userKey: string;
    } | null;
};
/**
 * Where a tab starts reading a stream it has no offset for yet:
 * `{kind: 'last', offset}` (the server's broadcast.EndPosition, `{last: N}`:
 * the page's state includes offset N), `{kind: 'timestamp', ts}` (whole unix
 * seconds, `{timestamp: S}`), `{kind: 'first'}` (`'first'` or `{first: true}`)
 * or `{kind: 'next'}` (`'next'`, the default: only what is published from now).
 */
export type StreamPosition = {
    kind: "last";
    offset: number;
} | {
    kind: "timestamp";
    ts: number;
} | {
    kind: "first";
} | {
    kind: "next";
};
