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
     * headers mode: x-expires of the queue
     */
    expiresMs?: number;
    /**
     * unacked messages in flight, 1..1000
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
    /**
     * send a delivery receipt for every message
     * this subscription handled (see {@link ReceiptOptions}); default: true for
     * a per-tab queue, false for a stream. Sent only where the client has a
     * destination (the session's `receipts`, or headers mode's receipts.userKey);
     * true without one in headers mode throws
     */
    receipts?: boolean;
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
 * the 'receipt' event: the broker confirmed a
 * batch of this tab's delivery receipts (the service will get them)
 */
export type ReceiptEvent = {
    /**
     * the tab they were sent for (the routing key's second word)
     */
    tabId: string;
    /**
     * the messages: id, subscription name, when their handlers resolved (ms since the epoch)
     */
    receipts: {
        id: string;
        subscription: string;
        handledAt: number;
    }[];
};
/**
 * client-level counters since creation
 */
export type ClientStats = {
    /**
     * receipts sent (a receipt sent again after a reconnect or reload counts again)
     */
    receiptsSent: number;
    /**
     * receipts whose SEND the broker confirmed (RECEIPT)
     */
    receiptsConfirmed: number;
    /**
     * receipts not confirmed yet: waiting for their ACK, to be sent, or sent without RECEIPT so far (kept in storage)
     */
    receiptsPending: number;
    /**
     * receipts dropped unsent because more than receipts.maxPending were unconfirmed
     */
    receiptsDropped: number;
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
/**
 * delivery receipts (docs/receipts.md): after a handler resolved and the
 * message was acked, the tab sends the message's id to the service (one
 * STOMP SEND per batch, confirmed by a RECEIPT; kept in storage until then;
 * at least once)
 */
export type ReceiptOptions = {
    /**
     * headers mode: the routing key is
     * `<userKey>.<tabId>` ([A-Za-z0-9_-]{1,64}); without it no receipts are sent.
     * Ignored in tab-session mode (the session's `receipts` names the destination)
     */
    userKey?: string;
    /**
     * headers mode: the topic
     * exchange (must exist: the service declares it); ignored in tab-session mode
     */
    exchange?: string;
    /**
     * a receipt waits at most this long for others to share its SEND
     */
    flushMs?: number;
    /**
     * receipts per SEND (1..1000): a full batch goes at once
     */
    maxBatch?: number;
    /**
     * unconfirmed receipts kept (maxBatch..20000);
     * beyond it the oldest unsent ones are dropped (`stats.receiptsDropped`)
     */
    maxPending?: number;
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
     * shared mode: the tabs of this browser
     * (same origin, URL list, vhost and login) share one STOMP connection, held
     * by one of them (Web Locks election) and relayed over BroadcastChannel; a
     * string names the group instead (needed with connectHeaders()); with tab
     * sessions the group is the endpoint and the user. false, or a browser
     * without Web Locks or BroadcastChannel: a connection per tab ('own'). See README
     */
    shared?: boolean | string;
    /**
     * delivery receipts: `userKey` turns them on
     * in headers mode; tab-session mode sends them when the session names a destination
     */
    receipts?: ReceiptOptions;
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
    receipt: [ReceiptEvent];
    /**
     * this tab became the leader, or stopped being it
     */
    mode: [ClientMode];
    /**
     * shared mode: the tab holding the
     * shared connection changed (self: it is this tab)
     */
    leader: [{
        tabId: string;
        self: boolean;
    }];
};
/**
 * How a tab reaches the broker (client.mode).
 */
export type ClientMode = "own" | "shared-leader" | "shared-follower";
/**
 * The part of the Web Storage API the client uses (sessionStorage fits).
 */
export type StorageLike = {
    getItem: (key: string) => (string | null);
    setItem: (key: string, value: string) => void;
    removeItem?: (key: string) => void;
};
