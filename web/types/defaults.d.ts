/**
 * The defaults of `new DurableClient(options)` (top level), of its
 * `session` option (`session`), of its `receipts` option (`receipts`), and
 * of `client.subscribe(spec)` (`subscribe`).
 * Frozen: read it, don't change it (pass options instead).
 */
export const DEFAULTS: Readonly<{
    vhost: string;
    heartbeatMs: number;
    heartbeatWorker: boolean;
    reconnect: {
        initialMs: number;
        maxMs: number;
    };
    stableMs: number;
    connectTimeoutMs: number;
    storageKey: string;
    queuePrefix: string;
    dedupWindow: number;
    duplicateTabCheckMs: number;
    shared: boolean;
    session: {
        timeoutMs: number;
    };
    receipts: {
        exchange: string;
        flushMs: number;
        maxBatch: number;
        maxPending: number;
    };
    subscribe: {
        bindingKey: string;
        expiresMs: number;
        prefetch: number;
        retry: {
            attempts: number;
            initialMs: number;
            maxMs: number;
        };
        handlerTimeoutMs: number;
    };
}>;
