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
import type { DurableClient } from './client.js';
import type { DurableMessage } from './typedefs.js';
import type { FailureAction } from './typedefs.js';
import { DedupWindow } from './internal.js';
import type { SubscriptionStats } from './typedefs.js';
import type { Connection } from './transport.js';
import type { SubscribeOptions } from './typedefs.js';
