// A TypeScript application using the published package, compiled (not run)
// by test/package.test.js against the generated declarations: it resolves
// '@durablews/web' through package.json "exports"/"types", as an app would.
import { DurableClient, SessionError, HandlerTimeoutError, type DurableMessage, type FailedEvent } from '@durablews/web';

declare const preparedSession: object; // e.g. JSON the server embedded in the page

const client = new DurableClient({
  session: {
    url: '/api/tab-session',
    initial: preparedSession,
    getHeaders: () => ({ 'x-csrf-token': 'token' }),
    timeoutMs: 5000,
  },
});

type OrderPaid = { order: string; amount: number };

client.on('customer.*.order_paid', async (msg: DurableMessage) => {
  const { json, bytes, routingKey } = msg;
  const paid = json() as OrderPaid;
  const raw: Uint8Array = bytes();
  console.log(routingKey, paid.order, paid.amount, raw.length);
});

client.on('failed', (e: FailedEvent) => {
  const action: 'ack' | 'park' | 'retry' = e.action;
  console.warn(`message ${e.id} on ${e.subscription}: ${action} after ${e.attempts} attempts`, e.error instanceof HandlerTimeoutError);
});
client.on('retry', (e) => console.info(e.id, e.attempt, e.delayMs));
client.on('state', (state, detail) => {
  if (state === 'closed' && detail.fatal && detail.error instanceof SessionError) console.error(detail.error.status, detail.error.code);
  if (state === 'connected' && detail.queueReset) location.reload();
});
client.once('connected', (detail) => console.log('first connection after', detail.attempt, 'failed attempts'));

const sub = client.subscribe({
  name: 'events',
  prefetch: 10,
  retry: { attempts: 3, initialMs: 200, maxMs: 5000 },
  handlerTimeoutMs: 10000,
  onError: (err, msg, { attempts }) => (attempts >= 3 && msg.redelivered ? 'park' : 'retry'),
});

async function main(): Promise<void> {
  await client.connect();
  await client.ready();
  const n: number = sub.stats.parked + sub.stats.dropped + sub.stats.timeouts;
  console.log(sub.queueName, n, client.tabId);
  await client.close();
}
void main();

// @ts-expect-error: an unknown failure action does not type-check
client.subscribe({ name: 'x', onError: () => 'nack' });

// Every name the package exported before its source was split (issue 22) is
// still exported from '@durablews/web', with DEFAULTS beside them.
import {
  DEFAULTS,
  Subscription,
  memoryStorage,
  type ClientEvents,
  type ClientMode,
  type ClientOptions,
  type ConnectionState,
  type FailureAction,
  type GapEvent,
  type RetryEvent,
  type SessionOptions,
  type StartPosition,
  type StateDetail,
  type StorageLike,
  type SubscribeOptions,
  type SubscriptionStats,
} from '@durablews/web';

const storage: StorageLike = memoryStorage();
const options: ClientOptions = { url: 'ws://127.0.0.1:15674/ws', storage, reconnect: { ...DEFAULTS.reconnect, maxMs: 60000 } };
const session: SessionOptions = { url: '/api/tab-session', timeoutMs: DEFAULTS.session.timeoutMs };
const start: StartPosition = { last: 42 };
const spec: SubscribeOptions = { stream: 'prices', start, prefetch: DEFAULTS.subscribe.prefetch };
const state: ConnectionState = 'reconnecting';
const sharedOptions: ClientOptions = { url: 'ws://127.0.0.1:15674/ws', shared: 'orders-app' };
const modeOf = (c: DurableClient): ClientMode => c.mode;
const onLeader = (...[l]: ClientEvents['leader']): string | null => (l.self ? l.tabId : null);
const action: FailureAction = 'park';
const onGap = (e: GapEvent): number => e.to - e.from;
const onRetry = (e: RetryEvent): number => e.delayMs;
const onState = (...[s, d]: ClientEvents['state']): string => `${s} ${d.attempt}`;
const detail: StateDetail = { attempt: 0 };
const stats = (s: Subscription): SubscriptionStats => s.stats;
console.log(sharedOptions, modeOf, onLeader, options, session, spec, state, action, onGap, onRetry, onState, detail, stats);
// @ts-expect-error: DEFAULTS is read-only
DEFAULTS.heartbeatMs = 1;

// Delivery receipts (issue 21): the option, the per-subscription switch, the event, client.stats.
import { type ReceiptOptions, type ReceiptEvent, type ClientStats } from '@durablews/web';
const receiptOptions: ReceiptOptions = { userKey: 'alice', exchange: DEFAULTS.receipts.exchange, flushMs: 20, maxBatch: 100, maxPending: 1000 };
const withReceipts = new DurableClient({ url: 'ws://127.0.0.1:15674/ws', receipts: receiptOptions });
withReceipts.subscribe({ exchange: 'events', name: 'orders', receipts: true }, async () => {});
withReceipts.on('receipt', (e: ReceiptEvent) => {
  for (const r of e.receipts) console.log(e.tabId, r.id, r.subscription, new Date(r.handledAt));
});
const clientStats: ClientStats = withReceipts.stats;
const unconfirmed: number = clientStats.receiptsPending + clientStats.receiptsSent - clientStats.receiptsConfirmed - clientStats.receiptsDropped;
console.log(unconfirmed);
// @ts-expect-error: receipts is a boolean per subscription
withReceipts.subscribe({ exchange: 'events', name: 'x', receipts: 'yes' });
