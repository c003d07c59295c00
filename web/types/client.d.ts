/** @import { ClientEvents, ClientMode, ClientOptions, ClientStats, ConnectionState, DurableMessage, StateDetail, SubscribeOptions } from './typedefs.js' */
/** @import { ParsedSession } from './internal.js' */
/** @import { Target } from './transport.js' */
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
 * - Delivery receipts (docs/receipts.md): after a handler resolved and the
 *   ACK was written, the tab tells the service so, batched, kept in storage
 *   until the broker confirmed them (receipts.js).
 */
export class DurableClient {
    /** @param {ClientOptions} opts */
    constructor(opts?: ClientOptions);
    /** This tab's id (see README: duplicated tabs get a new one on connect()). */
    get tabId(): string;
    /**
     * How this tab reaches the broker: 'own' (a connection of its own),
     * 'shared-leader' (this tab holds the connection its browser's tabs share)
     * or 'shared-follower' (another tab of this browser holds it). See README,
     * "Shared mode".
     * @returns {ClientMode}
     */
    get mode(): ClientMode;
    /**
     * Shared mode: the tab id of the tab holding the shared connection (this
     * tab's own id when it leads); null in 'own' mode or before a leader is known.
     * @returns {string|null}
     */
    get leader(): string | null;
    /** @returns {ConnectionState} */
    get state(): ConnectionState;
    /**
     * Client-level counters (delivery receipts; see {@link ClientStats}).
     * @returns {ClientStats}
     */
    get stats(): ClientStats;
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
     * {@link FailedEvent}; 'gap' {@link GapEvent}; 'receipt' {@link ReceiptEvent}.
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
import { StompTransport } from './transport.js';
import { SharedTransport } from './shared-transport.js';
import type { ParsedSession } from './internal.js';
import type { ClientMode } from './typedefs.js';
import { Tab } from './tab.js';
import { TabSessions } from './session.js';
import { ReceiptSender } from './receipts.js';
import type { DurableMessage } from './typedefs.js';
import { Subscription } from './subscription.js';
import type { ConnectionState } from './typedefs.js';
import type { ClientStats } from './typedefs.js';
import type { StateDetail } from './typedefs.js';
import type { ClientEvents } from './typedefs.js';
import type { SubscribeOptions } from './typedefs.js';
import type { Target } from './transport.js';
import type { ClientOptions } from './typedefs.js';
