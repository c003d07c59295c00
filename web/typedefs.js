// The types of the public API: options, events, messages, states. JSDoc only
// (no code); the entry point durablews.js re-exports every one of them, and
// types/durablews.d.ts carries them to TypeScript applications.

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
 * @property {string} [bindingKey='']  headers mode: e.g. 'customer.42.#' ('' for fanout)
 * @property {number} [expiresMs=3600000]  headers mode: x-expires of the queue
 * @property {number} [prefetch=10]  unacked messages in flight, 1..1000
 * @property {{attempts?: number, initialMs?: number, maxMs?: number}} [retry]
 *   handler calls per message before onError decides (default 3) and the
 *   back-off between them (default 200 ms .. 5 s, full jitter)
 * @property {number} [handlerTimeoutMs=30000]  a handler that has not settled
 *   by then counts as failed with a {@link HandlerTimeoutError} (0: no limit)
 * @property {(err: any, msg: DurableMessage, info: {attempts: number}) =>
 *   (FailureAction|void|Promise<FailureAction|void>)} [onError]
 *   decides after the last attempt; undefined (or no onError) parks the message
 * @property {boolean} [receipts]  send a delivery receipt for every message
 *   this subscription handled (see {@link ReceiptOptions}); default: true for
 *   a per-tab queue, false for a stream. Sent only where the client has a
 *   destination (the session's `receipts`, or headers mode's receipts.userKey);
 *   true without one in headers mode throws
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
 * @typedef {object} ReceiptEvent  the 'receipt' event: the broker confirmed a
 *   batch of this tab's delivery receipts (the service will get them)
 * @property {string} tabId  the tab they were sent for (the routing key's second word)
 * @property {{id: string, subscription: string, handledAt: number}[]} receipts
 *   the messages: id, subscription name, when their handlers resolved (ms since the epoch)
 *
 * @typedef {object} ClientStats  client-level counters since creation
 * @property {number} receiptsSent       receipts sent (a receipt sent again after a reconnect or reload counts again)
 * @property {number} receiptsConfirmed receipts whose SEND the broker confirmed (RECEIPT)
 * @property {number} receiptsPending    receipts not confirmed yet: waiting for their ACK, to be sent, or sent without RECEIPT so far (kept in storage)
 * @property {number} receiptsDropped    receipts dropped unsent because more than receipts.maxPending were unconfirmed
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
 * @typedef {object} ReceiptOptions
 *   delivery receipts (docs/receipts.md): after a handler resolved and the
 *   message was acked, the tab sends the message's id to the service (one
 *   STOMP SEND per batch, confirmed by a RECEIPT; kept in storage until then;
 *   at least once)
 * @property {string} [userKey]  headers mode: the routing key is
 *   `<userKey>.<tabId>` ([A-Za-z0-9_-]{1,64}); without it no receipts are sent.
 *   Ignored in tab-session mode (the session's `receipts` names the destination)
 * @property {string} [exchange='durablews.receipts']  headers mode: the topic
 *   exchange (must exist: the service declares it); ignored in tab-session mode
 * @property {number} [flushMs=20]  a receipt waits at most this long for others to share its SEND
 * @property {number} [maxBatch=100]  receipts per SEND (1..1000): a full batch goes at once
 * @property {number} [maxPending=1000]  unconfirmed receipts kept (maxBatch..20000);
 *   beyond it the oldest unsent ones are dropped (`stats.receiptsDropped`)
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
 * @property {boolean|string} [shared=true]  shared mode: the tabs of this browser
 *   (same origin, URL list, vhost and login) share one STOMP connection, held
 *   by one of them (Web Locks election) and relayed over BroadcastChannel; a
 *   string names the group instead (needed with connectHeaders()); with tab
 *   sessions the group is the endpoint and the user. false, or a browser
 *   without Web Locks or BroadcastChannel: a connection per tab ('own'). See README
 * @property {ReceiptOptions} [receipts]  delivery receipts: `userKey` turns them on
 *   in headers mode; tab-session mode sends them when the session names a destination
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
 * @property {[ReceiptEvent]} receipt
 * @property {[ClientMode]} mode  this tab became the leader, or stopped being it
 * @property {[{tabId: string, self: boolean}]} leader  shared mode: the tab holding the
 *   shared connection changed (self: it is this tab)
 */

/**
 * How a tab reaches the broker (client.mode).
 * @typedef {'own'|'shared-leader'|'shared-follower'} ClientMode
 */

/**
 * The part of the Web Storage API the client uses (sessionStorage fits).
 * @typedef {object} StorageLike
 * @property {(key: string) => (string|null)} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} [removeItem]
 */

export {};
