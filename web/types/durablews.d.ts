/**
 * The part of the Web Storage API the client uses (sessionStorage fits).
 * @typedef {object} StorageLike
 * @property {(key: string) => (string|null)} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} [removeItem]
 */
/**
 * A Storage-like in-memory map (for tests, or when sessionStorage is unavailable).
 * @returns {StorageLike & {removeItem: (key: string) => void}}
 */
export function memoryStorage(): StorageLike & {
    removeItem: (key: string) => void;
};
export { DEFAULTS };
/**
 * @typedef {'connecting'|'connected'|'reconnecting'|'closed'} ConnectionState
 *
 * @typedef {object} StateDetail
 * @property {number} attempt   failed attempts since the last stable connection
 * @property {number} [delayMs] 'reconnecting' only: wait before the next attempt
 * @property {Error} [error]    'reconnecting': why the last connection ended
 *   (STOMP ERROR frame, WebSocket close code/reason, a connectHeaders() rejection,
 *   or a failed session request); 'closed': set only when the client gave up by
 *   itself (a {@link SessionError} with `fatal: true`, e.g. HTTP 401/403)
 * @property {boolean} [fatal]  'closed' only: true when the client closed itself
 *   because of `error` (it does not retry; call connect() again, e.g. after login)
 * @property {boolean} [queueReset] 'connected' only: this tab's queue was gone and
 *   has been created again, so messages published while it was missing never
 *   arrive: reload the page's state. Tab-session mode: exact, the server had to
 *   create the queue since this client's previous session (it expired while the
 *   tab was away longer than its x-expires, an operator deleted it, or the broker
 *   lost it). Headers mode: an estimate, nothing was heard from the broker for at
 *   least the shortest subscription's expiresMs (the queue has expired, or is
 *   about to); a deleted or lost queue cannot be seen there.
 *
 * @property {string} [url] 'connected': the Web-STOMP URL of this connection;
 *   'reconnecting': the URL of the attempt that ended (the next attempt uses
 *   the next URL of the list)
 *
 * @property {'pagehide'|'freeze'} [reason] 'closed' only: the page was hidden
 *   (navigation, back/forward cache) or frozen; the client connects again by
 *   itself on pageshow/resume
 *
 * @typedef {object} DurableMessage
 * @property {string|undefined} id  `amqp-message-id` (the Watermill UUID), or the
 *   `_watermill_message_uuid` header; used for de-duplication
 * @property {string} body          the body decoded as UTF-8
 * @property {() => Uint8Array} bytes  the body's bytes as received (binary
 *   WebSocket frames, `web_stomp.ws_frame = binary`, keep non-UTF-8 bytes intact)
 * @property {() => any} json       JSON.parse(body); works detached (`const {json} = msg`)
 * @property {Record<string,string>} headers all STOMP headers (AMQP properties
 *   and the Go side's metadata, e.g. `routing_key`, `correlation_id`)
 * @property {string} routingKey    the routing key it was published with ('' if unknown)
 * @property {boolean} redelivered  the broker delivered it before (unacked then)
 * @property {string} subscription the subscription name
 * @property {number} [offset]     stream subscriptions: the message's offset in the stream
 * @property {string} [stream]     stream subscriptions: the stream's name
 *
 * @typedef {'ack'|'park'|'retry'} FailureAction
 *   what happens to a message whose handler failed retry.attempts times:
 *   'ack' acknowledge and drop it; 'park' NACK it without requeue (the broker
 *   dead-letters it to the queue's dead-letter exchange, or discards it) and go
 *   on; 'retry' keep it and try another round. On a stream (which cannot take
 *   a NACK) 'park' acks it and moves on: the stream still holds it at
 *   msg.offset, so the page may keep that offset and read it again elsewhere
 *
 * @typedef {'next'|'first'|{last: number}|{timestamp: number}|{first: true}} StartPosition
 *   where a stream subscription starts when the tab has no offset for it yet:
 *   the JSON of the Go side's broadcast.Position ({last: N}: the page's state
 *   includes offset N; {timestamp: S}: unix seconds), or 'next'/'first'
 *
 * @typedef {object} SubscribeOptions
 * @property {string} [name]  [A-Za-z0-9_.-], unique per client, part of the queue
 *   name; required except for streams (default: the stream's name)
 * @property {string} [stream]  subscribe to this RabbitMQ stream (a broadcast
 *   many tabs share) instead of a per-tab queue: resumes at the offset this tab
 *   handled last (sessionStorage), reports a 'gap' when retention removed what
 *   it missed, never NACKs; both modes (tab-session mode: the session must
 *   grant it, see README)
 * @property {StartPosition} [start]  streams: where to start while the tab has
 *   no offset (default: the session's start for the stream, else 'next')
 * @property {string} [exchange]    headers mode: the exchange (must exist)
 * @property {string} [bindingKey]  headers mode: e.g. 'customer.42.#' ('' for fanout)
 * @property {number} [expiresMs]   headers mode: x-expires of the queue (default 3600000)
 * @property {number} [prefetch]    unacked messages in flight (default 10, 1..1000)
 * @property {{attempts?: number, initialMs?: number, maxMs?: number}} [retry]
 *   handler calls per message before onError decides (default 3) and the
 *   back-off between them (default 200 ms .. 5 s, full jitter)
 * @property {number} [handlerTimeoutMs=30000]  a handler that has not settled
 *   by then counts as failed with a {@link HandlerTimeoutError} (0: no limit)
 * @property {(err: any, msg: DurableMessage, info: {attempts: number}) =>
 *   (FailureAction|void|Promise<FailureAction|void>)} [onError]
 *   decides after the last attempt; undefined (or no onError) parks the message
 *
 * @typedef {object} SubscriptionStats
 * @property {number} delivered  MESSAGE frames received
 * @property {number} handled    messages whose handlers resolved
 * @property {number} duplicates dropped (and acked) as already handled
 * @property {number} failed     failed handler attempts (time-outs included)
 * @property {number} timeouts   attempts that hit handlerTimeoutMs
 * @property {number} retries    attempts repeated after a failure
 * @property {number} dropped    acked without success (onError said 'ack')
 * @property {number} parked     NACKed without requeue after failing
 * @property {number} unrouted   acked because no handler or pattern wanted them
 * @property {number} acked      ACK frames sent
 * @property {number} stale      dropped because their connection ended (the broker redelivers them)
 * @property {number} skipped    streams: acked without handling, offset already handled (a resume repeats the last one)
 * @property {number} gaps       streams: gaps reported (see the 'gap' event)
 *
 * @typedef {object} GapEvent  the 'gap' event: offsets `from`..`to` of `stream`
 *   may have held messages this tab will never get (retention removed them while
 *   it was away); the subscription carries on at `to + 1`. Offsets are not
 *   dense: a range says "possibly lost", not how many
 * @property {string} subscription
 * @property {string} stream
 * @property {number} from
 * @property {number} to
 *
 * @typedef {object} RetryEvent  the 'retry' event: a handler attempt failed, another follows
 * @property {string} subscription
 * @property {string|undefined} id
 * @property {number} attempt   the attempt that failed (1-based)
 * @property {number} delayMs   wait before the next attempt
 * @property {any} error
 * @property {DurableMessage} message
 *
 * @typedef {object} FailedEvent  the 'failed' event: every attempt failed; `action` is what happened
 * @property {string} subscription
 * @property {string|undefined} id
 * @property {number} attempts
 * @property {FailureAction} action
 * @property {any} error
 * @property {DurableMessage} message
 *
 * @typedef {object} SessionOptions
 * @property {string} url  the application's tab-session endpoint (same origin),
 *   e.g. '/api/tab-session'; see the Go package tabsession (Handler)
 * @property {{exchange: string, key: string}[]} [bindings]  ask for only these of
 *   the bindings the server allows (default: all of them); one not allowed is 403
 * @property {typeof fetch} [fetch]  instead of globalThis.fetch (tests, or to wrap it)
 * @property {() => (Record<string, string>|Promise<Record<string, string>>)} [getHeaders]
 *   extra request headers for every session request (a CSRF token, a bearer
 *   token); a rejection counts as a failed attempt
 * @property {number} [timeoutMs=10000]  a session request not answered by then
 *   is abandoned and retried with back-off
 * @property {object|string} [initial]  a session the server prepared while
 *   rendering the page (the session endpoint's JSON, as object or string): the
 *   first connection uses it, so events published after the render are
 *   delivered; reconnects fetch fresh sessions from url
 *
 * @typedef {object} ClientOptions
 * @property {string|string[]} [url]  e.g. 'ws://127.0.0.1:15674/ws', or one URL per
 *   cluster node: the client starts at a random one (so a fleet of tabs spreads
 *   over the nodes) and moves to the next one after every failed attempt (not
 *   with session: the session response names them, `url` or `urls`)
 * @property {SessionOptions} [session]  tab-session mode (recommended for pages
 *   on the Internet): before every connection attempt, POST to session.url for
 *   this tab's server-declared queue and a short-lived read-only token; see README
 * @property {string} [login]
 * @property {string} [passcode]
 * @property {string} [vhost='/']   sent as the STOMP `host` header
 * @property {() => Promise<{login?: string, passcode?: string}>} [connectHeaders]
 *   called before every connection attempt (e.g. to fetch a fresh token); its
 *   result overrides login/passcode; a rejection counts as a failed attempt
 * @property {number} [heartbeatMs=10000]  STOMP heart-beat in both directions
 *   (0 disables; keep it on: Web-STOMP closes idle sockets after 60 s)
 * @property {boolean} [heartbeatWorker=true]  send heart-beats from a Web Worker
 *   (blob: URL) so background-tab timer throttling can't starve them; needs CSP
 *   `worker-src blob:` if the page has a CSP
 * @property {{initialMs?: number, maxMs?: number}} [reconnect]  back-off
 *   (default 500 ms .. 30 s, exponential with full jitter)
 * @property {number} [stableMs=10000]  a connection that was fully subscribed for
 *   this long resets the back-off when it ends
 * @property {number} [connectTimeoutMs=10000]  give up an attempt that has not
 *   received CONNECTED by then
 * @property {StorageLike} [storage=sessionStorage]  where the tab id and the
 *   de-dup windows live
 * @property {string} [storageKey='durablews.tabId']
 * @property {string} [queuePrefix='tab']  queue names are `<queuePrefix>-<tabId>-<name>`
 * @property {number} [dedupWindow=1000]  recent message ids remembered per subscription
 * @property {number} [duplicateTabCheckMs=150]  how long connect() waits for another
 *   tab to object to this tab's id (BroadcastChannel); 0 disables the check
 * @property {(msg: string) => void} [debug]  stompjs debug log
 * @property {(url: string|undefined) => WebSocket} [webSocketFactory]  instead of
 *   opening url (tests, or to wrap the socket); gets the URL to open (the session's
 *   url in tab-session mode); a throw counts as a failed attempt
 */
/**
 * @typedef {object} ClientEvents  what {@link DurableClient#on} can listen to
 * @property {[ConnectionState, StateDetail]} state  every state change
 * @property {[StateDetail]} connecting
 * @property {[StateDetail]} connected
 * @property {[StateDetail]} reconnecting
 * @property {[StateDetail]} closed
 * @property {[RetryEvent]} retry
 * @property {[FailedEvent]} failed
 * @property {[GapEvent]} gap
 */
/**
 * A refused or failed tab-session request. `status` is the HTTP status (0 for a
 * network error or an unusable response), `code` the server's `error` field
 * (e.g. 'unauthenticated', 'forbidden'), `fatal` whether the client gave up
 * (4xx other than 408/429) instead of retrying with back-off.
 */
export class SessionError extends Error {
    /**
     * @param {string} message
     * @param {{status?: number, code?: string, fatal?: boolean, cause?: any}} [opts]
     */
    constructor(message: string, { status, code, fatal, cause }?: {
        status?: number;
        code?: string;
        fatal?: boolean;
        cause?: any;
    });
    status: number;
    code: string;
    fatal: boolean;
}
/** Handler time-out: the error a handler that did not settle in time fails with. */
export class HandlerTimeoutError extends Error {
    /** @param {string} message @param {number} timeoutMs */
    constructor(message: string, timeoutMs: number);
    timeoutMs: number;
}
/**
 * A durable subscription: a per-tab queue bound to an exchange. Create with
 * {@link DurableClient#subscribe}.
 */
export class Subscription {
    /**
     * @internal
     * @param {DurableClient} client
     * @param {any} spec normalised spec
     * @param {((msg: DurableMessage) => (void|Promise<void>))|undefined} handler
     * @param {SubscribeOptions['onError']} onError
     */
    constructor(client: DurableClient, spec: any, handler: ((msg: DurableMessage) => (void | Promise<void>)) | undefined, onError: SubscribeOptions["onError"]);
    /** Subscription name. */
    get name(): any;
    /**
     * The RabbitMQ queue name, `<prefix>-<tabId>-<name>`. It can change once,
     * during the first connect(), if this tab turns out to be a duplicated tab.
     * @returns {string|null}
     */
    get queueName(): string | null;
    /**
     * The exact SUBSCRIBE headers (all strings), identical on every reconnect. In
     * tab-session mode: destination (from the session), id, ack, prefetch-count;
     * null before the first session response.
     * @returns {Record<string, string>|null}
     */
    get headers(): Record<string, string> | null;
    /** The stream's name for a stream subscription, else undefined. */
    get stream(): any;
    /**
     * Stream subscriptions: the offset of the last message this tab handled
     * (kept in storage per tab and stream), or of a server position `{last: N}`
     * once subscribed with it; null before either; undefined for a per-tab queue.
     * @returns {number|null|undefined}
     */
    get lastOffset(): number | null | undefined;
    /**
     * Counters since creation (see {@link SubscriptionStats}).
     * @returns {SubscriptionStats}
     */
    get stats(): SubscriptionStats;
    /**
     * Stop consuming (UNSUBSCRIBE) and never re-subscribe. The queue is not
     * deleted: it expires after `expiresMs` unused, or the backend deletes it.
     * Messages queued locally but not yet handled are dropped unacked (the broker
     * redelivers them if the queue is consumed again).
     */
    unsubscribe(): void;
}
/**
 * Browser client delivering messages from durable per-tab RabbitMQ queues over
 * Web-STOMP, with at-least-once delivery.
 *
 * - Each tab has a stable id (sessionStorage) and each subscription a durable
 *   queue `tab-<tabId>-<name>`, so messages published while the tab is
 *   disconnected or reloading wait in the queue (until `expiresMs` unused).
 * - A message is acked only after its handler resolved. If the handler throws,
 *   the message is left unacked (not nacked, which would redeliver it at once in
 *   a hot loop) and comes back after the next reconnect, unless `onError`
 *   returns 'ack'.
 * - Messages are de-duplicated by `amqp-message-id` within a bounded window.
 * - Reconnects with exponential back-off and full jitter and re-subscribes with
 *   identical headers.
 * - With `session: {url}` (tab-session mode, for pages on the Internet) the
 *   server declares and binds the tab's queue: before every connection attempt
 *   the client POSTs to session.url for it and a fresh read-only token. Without
 *   it the page declares its own queues with shared credentials (trusted
 *   deployments only). See README.md.
 */
export class DurableClient {
    /** @param {ClientOptions} opts */
    constructor(opts?: ClientOptions);
    /** This tab's id (see README: duplicated tabs get a new one on connect()). */
    get tabId(): string;
    /** @returns {ConnectionState} */
    get state(): ConnectionState;
    /**
     * Listen to connection state changes (the same as `on('state', fn)`).
     * @param {(state: ConnectionState, detail: StateDetail) => void} fn
     * @returns {() => void} call to stop listening
     */
    onState(fn: (state: ConnectionState, detail: StateDetail) => void): () => void;
    /**
     * Listen to an event, or handle messages by routing-key pattern.
     *
     * Events: 'state' `(state, detail)`; 'connecting', 'connected',
     * 'reconnecting', 'closed' `(detail)`; 'retry' {@link RetryEvent}; 'failed'
     * {@link FailedEvent}.
     *
     * Any other name is an AMQP topic pattern (`*` one word, `#` any number):
     * `client.on('customer.*.order_paid', async (msg) => ...)` calls the handler
     * for every message of every subscription whose routing key matches, in
     * addition to the subscription's own handler. Each message is acked once all
     * its handlers resolved; if one fails, all of them run again (retries), so
     * keep them idempotent. A message no handler wants is acked
     * (`stats.unrouted`). In tab-session mode patterns need no subscribe():
     * without one, connect() subscribes to the session queue as 'events'.
     *
     * @template {string} K
     * @param {K} name
     * @param {K extends keyof ClientEvents ? (...args: ClientEvents[K]) => void : (msg: DurableMessage) => (void|Promise<void>)} fn
     * @returns {() => void} call to stop listening (or use off)
     */
    on<K extends string>(name: K, fn: K extends keyof ClientEvents ? (...args: ClientEvents[K]) => void : (msg: DurableMessage) => (void | Promise<void>)): () => void;
    /**
     * Like {@link DurableClient#on}, once: the listener is removed after its first call.
     * @template {string} K
     * @param {K} name
     * @param {K extends keyof ClientEvents ? (...args: ClientEvents[K]) => void : (msg: DurableMessage) => (void|Promise<void>)} fn
     * @returns {() => void}
     */
    once<K extends string>(name: K, fn: K extends keyof ClientEvents ? (...args: ClientEvents[K]) => void : (msg: DurableMessage) => (void | Promise<void>)): () => void;
    /**
     * Stop a listener or pattern handler added with on() or once().
     * @param {string} name
     * @param {Function} fn
     */
    off(name: string, fn: Function): void;
    /**
     * A promise for the first 'connected' state: the subscriptions are
     * confirmed. Once resolved it stays resolved (watch 'reconnecting' for
     * later outages). Rejects with the error if the client gives up before
     * (state 'closed' with `fatal`, e.g. a 401 from the session endpoint);
     * after that, ready() waits for the first 'connected' of the next connect().
     * @returns {Promise<void>}
     */
    ready(): Promise<void>;
    /**
     * Subscribe to an exchange through a durable per-tab queue. May be called
     * before or after connect(). Names must be unique per client.
     *
     * A message is acked once its handler (and every matching client.on
     * pattern handler) resolved. A failing one is retried in the tab with
     * back-off (spec.retry, 'retry' events); after the last attempt onError
     * decides (a 'failed' event either way), so the subscription never waits on
     * a poison message.
     *
     * @param {SubscribeOptions} spec  expiresMs (default 3600000) and prefetch
     *   (default 10, max 1000) become queue arguments / consumer settings: keep
     *   them the same across releases, a changed x-expires makes RabbitMQ refuse
     *   the SUBSCRIBE. In tab-session mode only name, prefetch, retry,
     *   handlerTimeoutMs and onError.
     * @param {(msg: DurableMessage) => (void|Promise<void>)} [handler]  acked once it resolves
     * @returns {Subscription}
     */
    subscribe(spec: SubscribeOptions, handler?: (msg: DurableMessage) => (void | Promise<void>)): Subscription;
    /**
     * Start connecting (and keep reconnecting until close()). Resolves once the
     * first attempt has started (after the duplicated-tab check).
     * @returns {Promise<void>}
     */
    connect(): Promise<void>;
    /**
     * Disconnect and stop reconnecting. Unacked messages return to the queues.
     * @returns {Promise<void>}
     */
    close(): Promise<void>;
}
/**
 * The part of the Web Storage API the client uses (sessionStorage fits).
 */
export type StorageLike = {
    getItem: (key: string) => (string | null);
    setItem: (key: string, value: string) => void;
    removeItem?: (key: string) => void;
};
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";
export type StateDetail = {
    /**
     * failed attempts since the last stable connection
     */
    attempt: number;
    /**
     * 'reconnecting' only: wait before the next attempt
     */
    delayMs?: number;
    /**
     * 'reconnecting': why the last connection ended
     * (STOMP ERROR frame, WebSocket close code/reason, a connectHeaders() rejection,
     * or a failed session request); 'closed': set only when the client gave up by
     * itself (a {@link SessionError} with `fatal: true`, e.g. HTTP 401/403)
     */
    error?: Error;
    /**
     * 'closed' only: true when the client closed itself
     * because of `error` (it does not retry; call connect() again, e.g. after login)
     */
    fatal?: boolean;
    /**
     * 'connected' only: this tab's queue was gone and
     * has been created again, so messages published while it was missing never
     * arrive: reload the page's state. Tab-session mode: exact, the server had to
     * create the queue since this client's previous session (it expired while the
     * tab was away longer than its x-expires, an operator deleted it, or the broker
     * lost it). Headers mode: an estimate, nothing was heard from the broker for at
     * least the shortest subscription's expiresMs (the queue has expired, or is
     * about to); a deleted or lost queue cannot be seen there.
     */
    queueReset?: boolean;
    /**
     * 'connected': the Web-STOMP URL of this connection;
     * 'reconnecting': the URL of the attempt that ended (the next attempt uses
     * the next URL of the list)
     */
    url?: string;
    /**
     * 'closed' only: the page was hidden
     * (navigation, back/forward cache) or frozen; the client connects again by
     * itself on pageshow/resume
     */
    reason?: "pagehide" | "freeze";
};
export type DurableMessage = {
    /**
     * `amqp-message-id` (the Watermill UUID), or the
     * `_watermill_message_uuid` header; used for de-duplication
     */
    id: string | undefined;
    /**
     * the body decoded as UTF-8
     */
    body: string;
    /**
     * the body's bytes as received (binary
     * WebSocket frames, `web_stomp.ws_frame = binary`, keep non-UTF-8 bytes intact)
     */
    bytes: () => Uint8Array;
    /**
     * JSON.parse(body); works detached (`const {json} = msg`)
     */
    json: () => any;
    /**
     * all STOMP headers (AMQP properties
     * and the Go side's metadata, e.g. `routing_key`, `correlation_id`)
     */
    headers: Record<string, string>;
    /**
     * the routing key it was published with ('' if unknown)
     */
    routingKey: string;
    /**
     * the broker delivered it before (unacked then)
     */
    redelivered: boolean;
    /**
     * the subscription name
     */
    subscription: string;
    /**
     * stream subscriptions: the message's offset in the stream
     */
    offset?: number;
    /**
     * stream subscriptions: the stream's name
     */
    stream?: string;
};
/**
 * what happens to a message whose handler failed retry.attempts times:
 * 'ack' acknowledge and drop it; 'park' NACK it without requeue (the broker
 * dead-letters it to the queue's dead-letter exchange, or discards it) and go
 * on; 'retry' keep it and try another round. On a stream (which cannot take
 * a NACK) 'park' acks it and moves on: the stream still holds it at
 * msg.offset, so the page may keep that offset and read it again elsewhere
 */
export type FailureAction = "ack" | "park" | "retry";
/**
 * where a stream subscription starts when the tab has no offset for it yet:
 * the JSON of the Go side's broadcast.Position ({last: N}: the page's state
 * includes offset N; {timestamp: S}: unix seconds), or 'next'/'first'
 */
export type StartPosition = "next" | "first" | {
    last: number;
} | {
    timestamp: number;
} | {
    first: true;
};
export type SubscribeOptions = {
    /**
     * [A-Za-z0-9_.-], unique per client, part of the queue
     * name; required except for streams (default: the stream's name)
     */
    name?: string;
    /**
     * subscribe to this RabbitMQ stream (a broadcast
     * many tabs share) instead of a per-tab queue: resumes at the offset this tab
     * handled last (sessionStorage), reports a 'gap' when retention removed what
     * it missed, never NACKs; both modes (tab-session mode: the session must
     * grant it, see README)
     */
    stream?: string;
    /**
     * streams: where to start while the tab has
     * no offset (default: the session's start for the stream, else 'next')
     */
    start?: StartPosition;
    /**
     * headers mode: the exchange (must exist)
     */
    exchange?: string;
    /**
     * headers mode: e.g. 'customer.42.#' ('' for fanout)
     */
    bindingKey?: string;
    /**
     * headers mode: x-expires of the queue (default 3600000)
     */
    expiresMs?: number;
    /**
     * unacked messages in flight (default 10, 1..1000)
     */
    prefetch?: number;
    /**
     * handler calls per message before onError decides (default 3) and the
     * back-off between them (default 200 ms .. 5 s, full jitter)
     */
    retry?: {
        attempts?: number;
        initialMs?: number;
        maxMs?: number;
    };
    /**
     * a handler that has not settled
     * by then counts as failed with a {@link HandlerTimeoutError} (0: no limit)
     */
    handlerTimeoutMs?: number;
    /**
     * decides after the last attempt; undefined (or no onError) parks the message
     */
    onError?: (err: any, msg: DurableMessage, info: {
        attempts: number;
    }) => (FailureAction | void | Promise<FailureAction | void>);
};
export type SubscriptionStats = {
    /**
     * MESSAGE frames received
     */
    delivered: number;
    /**
     * messages whose handlers resolved
     */
    handled: number;
    /**
     * dropped (and acked) as already handled
     */
    duplicates: number;
    /**
     * failed handler attempts (time-outs included)
     */
    failed: number;
    /**
     * attempts that hit handlerTimeoutMs
     */
    timeouts: number;
    /**
     * attempts repeated after a failure
     */
    retries: number;
    /**
     * acked without success (onError said 'ack')
     */
    dropped: number;
    /**
     * NACKed without requeue after failing
     */
    parked: number;
    /**
     * acked because no handler or pattern wanted them
     */
    unrouted: number;
    /**
     * ACK frames sent
     */
    acked: number;
    /**
     * dropped because their connection ended (the broker redelivers them)
     */
    stale: number;
    /**
     * streams: acked without handling, offset already handled (a resume repeats the last one)
     */
    skipped: number;
    /**
     * streams: gaps reported (see the 'gap' event)
     */
    gaps: number;
};
/**
 * the 'gap' event: offsets `from`..`to` of `stream`
 * may have held messages this tab will never get (retention removed them while
 * it was away); the subscription carries on at `to + 1`. Offsets are not
 * dense: a range says "possibly lost", not how many
 */
export type GapEvent = {
    subscription: string;
    stream: string;
    from: number;
    to: number;
};
/**
 * the 'retry' event: a handler attempt failed, another follows
 */
export type RetryEvent = {
    subscription: string;
    id: string | undefined;
    /**
     * the attempt that failed (1-based)
     */
    attempt: number;
    /**
     * wait before the next attempt
     */
    delayMs: number;
    error: any;
    message: DurableMessage;
};
/**
 * the 'failed' event: every attempt failed; `action` is what happened
 */
export type FailedEvent = {
    subscription: string;
    id: string | undefined;
    attempts: number;
    action: FailureAction;
    error: any;
    message: DurableMessage;
};
export type SessionOptions = {
    /**
     * the application's tab-session endpoint (same origin),
     * e.g. '/api/tab-session'; see the Go package tabsession (Handler)
     */
    url: string;
    /**
     * ask for only these of
     * the bindings the server allows (default: all of them); one not allowed is 403
     */
    bindings?: {
        exchange: string;
        key: string;
    }[];
    /**
     * instead of globalThis.fetch (tests, or to wrap it)
     */
    fetch?: typeof fetch;
    /**
     * extra request headers for every session request (a CSRF token, a bearer
     * token); a rejection counts as a failed attempt
     */
    getHeaders?: () => (Record<string, string> | Promise<Record<string, string>>);
    /**
     * a session request not answered by then
     * is abandoned and retried with back-off
     */
    timeoutMs?: number;
    /**
     * a session the server prepared while
     * rendering the page (the session endpoint's JSON, as object or string): the
     * first connection uses it, so events published after the render are
     * delivered; reconnects fetch fresh sessions from url
     */
    initial?: object | string;
};
export type ClientOptions = {
    /**
     * e.g. 'ws://127.0.0.1:15674/ws', or one URL per
     * cluster node: the client starts at a random one (so a fleet of tabs spreads
     * over the nodes) and moves to the next one after every failed attempt (not
     * with session: the session response names them, `url` or `urls`)
     */
    url?: string | string[];
    /**
     * tab-session mode (recommended for pages
     * on the Internet): before every connection attempt, POST to session.url for
     * this tab's server-declared queue and a short-lived read-only token; see README
     */
    session?: SessionOptions;
    login?: string;
    passcode?: string;
    /**
     * sent as the STOMP `host` header
     */
    vhost?: string;
    /**
     * called before every connection attempt (e.g. to fetch a fresh token); its
     * result overrides login/passcode; a rejection counts as a failed attempt
     */
    connectHeaders?: () => Promise<{
        login?: string;
        passcode?: string;
    }>;
    /**
     * STOMP heart-beat in both directions
     * (0 disables; keep it on: Web-STOMP closes idle sockets after 60 s)
     */
    heartbeatMs?: number;
    /**
     * send heart-beats from a Web Worker
     * (blob: URL) so background-tab timer throttling can't starve them; needs CSP
     * `worker-src blob:` if the page has a CSP
     */
    heartbeatWorker?: boolean;
    /**
     * back-off
     * (default 500 ms .. 30 s, exponential with full jitter)
     */
    reconnect?: {
        initialMs?: number;
        maxMs?: number;
    };
    /**
     * a connection that was fully subscribed for
     * this long resets the back-off when it ends
     */
    stableMs?: number;
    /**
     * give up an attempt that has not
     * received CONNECTED by then
     */
    connectTimeoutMs?: number;
    /**
     * where the tab id and the
     * de-dup windows live
     */
    storage?: StorageLike;
    storageKey?: string;
    /**
     * queue names are `<queuePrefix>-<tabId>-<name>`
     */
    queuePrefix?: string;
    /**
     * recent message ids remembered per subscription
     */
    dedupWindow?: number;
    /**
     * how long connect() waits for another
     * tab to object to this tab's id (BroadcastChannel); 0 disables the check
     */
    duplicateTabCheckMs?: number;
    /**
     * stompjs debug log
     */
    debug?: (msg: string) => void;
    /**
     * instead of
     * opening url (tests, or to wrap the socket); gets the URL to open (the session's
     * url in tab-session mode); a throw counts as a failed attempt
     */
    webSocketFactory?: (url: string | undefined) => WebSocket;
};
/**
 * what {@link DurableClient#on} can listen to
 */
export type ClientEvents = {
    /**
     * every state change
     */
    state: [ConnectionState, StateDetail];
    connecting: [StateDetail];
    connected: [StateDetail];
    reconnecting: [StateDetail];
    closed: [StateDetail];
    retry: [RetryEvent];
    failed: [FailedEvent];
    gap: [GapEvent];
};
import { DEFAULTS } from './defaults.js';
import { DedupWindow } from './internal.js';
import { Client } from '@stomp/stompjs';
