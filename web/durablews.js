// durablews browser client: durable per-tab RabbitMQ Web-STOMP subscriptions
// with at-least-once delivery, ack-after-handler and de-duplication.
//
// Load it without a bundler through an import map, see README.md:
//   <script type="importmap">
//   {"imports": {"@stomp/stompjs": "/web/node_modules/@stomp/stompjs/esm6/index.js"}}
//   </script>
//   <script type="module">import { DurableClient } from '/web/durablews.js';</script>
//
// This file is the package's only entry point: it names the public API. The
// parts live beside it, one file per part (README.md, "Source layout").

export { DurableClient } from './client.js';
export { Subscription } from './subscription.js';
export { SessionError, HandlerTimeoutError } from './errors.js';
export { memoryStorage } from './tab.js';
export { DEFAULTS } from './defaults.js';

/**
 * @typedef {import('./typedefs.js').ConnectionState} ConnectionState
 * @typedef {import('./typedefs.js').ClientMode} ClientMode
 * @typedef {import('./typedefs.js').StateDetail} StateDetail
 * @typedef {import('./typedefs.js').DurableMessage} DurableMessage
 * @typedef {import('./typedefs.js').FailureAction} FailureAction
 * @typedef {import('./typedefs.js').StartPosition} StartPosition
 * @typedef {import('./typedefs.js').SubscribeOptions} SubscribeOptions
 * @typedef {import('./typedefs.js').SubscriptionStats} SubscriptionStats
 * @typedef {import('./typedefs.js').GapEvent} GapEvent
 * @typedef {import('./typedefs.js').ReceiptEvent} ReceiptEvent
 * @typedef {import('./typedefs.js').ReceiptOptions} ReceiptOptions
 * @typedef {import('./typedefs.js').ClientStats} ClientStats
 * @typedef {import('./typedefs.js').RetryEvent} RetryEvent
 * @typedef {import('./typedefs.js').FailedEvent} FailedEvent
 * @typedef {import('./typedefs.js').SessionOptions} SessionOptions
 * @typedef {import('./typedefs.js').ClientOptions} ClientOptions
 * @typedef {import('./typedefs.js').ClientEvents} ClientEvents
 * @typedef {import('./typedefs.js').StorageLike} StorageLike
 */
