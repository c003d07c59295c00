// DurableClient against an in-process fake Web-STOMP server (no broker, no
// browser): wire headers, ack-after-handler, dedup, stale acks, back-off,
// ERROR handling, close(), duplicated-tab detection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { DurableClient, memoryStorage } from '../durablews.js';
import {
  sleep, inState, until, FakeBroker, fastOptions, recordedClient, newClient, fakeSessionServer, newSessionClient,
} from './fake-broker.js';

const spec = { exchange: 'events', bindingKey: 'customer.42.#', name: 'orders' };

test('CONNECT and SUBSCRIBE frames carry exactly the durable per-tab headers', async () => {
  const broker = new FakeBroker();
  const { client, states } = newClient(broker, { vhost: '/' });
  const sub = client.subscribe({ ...spec, prefetch: 7, expiresMs: 60000 }, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const [conn] = broker.frames('CONNECT');
  assert.equal(conn.headers.host, '/');
  assert.equal(conn.headers.login, 'guest');
  assert.equal(conn.headers['accept-version'], '1.2,1.1,1.0');
  const [s] = broker.frames('SUBSCRIBE');
  const q = `tab-${client.tabId}-orders`;
  assert.equal(sub.queueName, q);
  const { receipt, ...headers } = s.headers;
  assert.ok(receipt);
  assert.deepEqual(headers, {
    destination: '/exchange/events/customer.42.#',
    id: q,
    'x-queue-name': q,
    durable: 'true',
    'auto-delete': 'false',
    exclusive: 'false',
    'x-expires': '60000',
    ack: 'client-individual',
    'prefetch-count': '7',
  });
  assert.deepEqual(states.map((x) => x.state), ['connecting', 'connected']);
  await client.close();
  assert.equal(broker.frames('DISCONNECT').length, 1);
  assert.equal(client.state, 'closed');
});

test('ack only after the handler resolves, on the delivering connection', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  let release;
  const got = [];
  const sub = client.subscribe(spec, async (msg) => {
    got.push(msg);
    await new Promise((r) => (release = r));
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const ackId = broker.last.deliver(sub.queueName, 'u-1', '{"a":1}', { routing_key: 'customer.42.x', redelivered: 'true' });
  await until('handler called', () => got.length === 1);
  assert.equal(got[0].id, 'u-1');
  assert.deepEqual(got[0].json(), { a: 1 });
  assert.equal(got[0].headers.routing_key, 'customer.42.x');
  assert.equal(got[0].redelivered, true);
  await sleep(20);
  assert.equal(broker.frames('ACK').length, 0, 'no ack while handler runs');
  release();
  await until('acked', () => broker.frames('ACK').length === 1);
  assert.equal(broker.frames('ACK')[0].headers.id, ackId);
  assert.equal(broker.frames('NACK').length, 0);
  await client.close();
});

test('duplicates (same amqp-message-id) are acked without calling the handler', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker, { dedupWindow: 2 });
  const ids = [];
  const sub = client.subscribe(spec, (m) => void ids.push(m.id));
  await client.connect();
  await until('connected', () => client.state === 'connected');
  for (const id of ['a', 'b', 'a', 'c', 'b', 'a', undefined, undefined]) broker.last.deliver(sub.queueName, id);
  await until('all acked', () => broker.frames('ACK').length === 8);
  // window of 2: 'a' was evicted by 'b','c' before its third copy
  assert.deepEqual(ids, ['a', 'b', 'c', 'a', undefined, undefined]);
  assert.equal(sub.stats.duplicates, 2);
  await client.close();
});

test('a failing handler is retried with back-off, then onError decides: ack drops, park NACKs without requeue, retry goes on', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const events = [];
  client.on('retry', (e) => events.push(['retry', e.id, e.attempt, e.error.message]));
  client.on('failed', (e) => events.push(['failed', e.id, e.attempts, e.action]));
  const calls = {};
  let rounds = 0;
  const sub = client.subscribe(
    {
      ...spec,
      retry: { attempts: 3, initialMs: 1, maxMs: 2 },
      onError: (e, m, info) => {
        if (m.id === 'drop') return 'ack';
        if (m.id === 'again') return ++rounds < 2 ? 'retry' : 'ack';
        return undefined; // default: park
      },
    },
    (m) => {
      calls[m.id] = (calls[m.id] ?? 0) + 1;
      if (m.id === 'flaky' && calls[m.id] < 3) throw new Error('flaky');
      if (m.id !== 'ok' && m.id !== 'flaky') throw new Error(`boom ${m.id}`);
    },
  );
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const acks = {};
  for (const id of ['keep', 'drop', 'flaky', 'again', 'ok']) acks[id] = broker.last.deliver(sub.queueName, id);
  await until('ok handled', () => calls.ok === 1);
  await sleep(10);
  assert.deepEqual(calls, { keep: 3, drop: 3, flaky: 3, again: 6, ok: 1 });
  assert.deepEqual(broker.frames('ACK').map((f) => f.headers.id), [acks.drop, acks.flaky, acks.again, acks.ok]);
  const nacks = broker.frames('NACK');
  assert.deepEqual(nacks.map((f) => [f.headers.id, f.headers.requeue]), [[acks.keep, 'false']]);
  assert.deepEqual(events.filter((e) => e[0] === 'failed'), [
    ['failed', 'keep', 3, 'park'],
    ['failed', 'drop', 3, 'ack'],
    ['failed', 'again', 3, 'retry'],
    ['failed', 'again', 6, 'ack'],
  ]);
  assert.deepEqual(events.filter((e) => e[0] === 'retry' && e[1] === 'flaky'), [['retry', 'flaky', 1, 'flaky'], ['retry', 'flaky', 2, 'flaky']]);
  const st = sub.stats;
  assert.equal(st.handled, 2);
  assert.equal(st.failed, 3 + 3 + 2 + 6);
  assert.equal(st.parked, 1);
  assert.equal(st.dropped, 2);
  assert.equal(st.retries, 2 + 2 + 2 + 5); // keep, drop, flaky, again (2+2 and the 'retry' verdict)
  assert.equal(client.state, 'connected', 'a failing handler does not reconnect');
  await client.close();
});

test('a handler that never settles times out (HandlerTimeoutError) and the subscription goes on', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const failed = [];
  client.on('failed', (e) => failed.push(e));
  const got = [];
  const sub = client.subscribe({ ...spec, handlerTimeoutMs: 20, retry: { attempts: 2, initialMs: 1, maxMs: 1 } }, (m) => {
    got.push(m.id);
    if (m.id === 'hang') return new Promise(() => {});
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const hangAck = broker.last.deliver(sub.queueName, 'hang');
  broker.last.deliver(sub.queueName, 'next');
  await until('next handled', () => sub.stats.handled === 1);
  assert.deepEqual(got, ['hang', 'hang', 'next']);
  assert.equal(failed.length, 1);
  assert.equal(failed[0].error.name, 'HandlerTimeoutError');
  assert.match(failed[0].error.message, /hang .*within 20 ms/);
  assert.equal(failed[0].action, 'park');
  assert.equal(sub.stats.timeouts, 2);
  assert.equal(broker.frames('NACK')[0].headers.id, hangAck);
  await client.close();
});

// The client can only stop retrying once it has seen the connection end: a
// retry whose back-off timer fires before the socket's close event runs on a
// connection that is already dead (and its ACK is then dropped as stale). Node
// does not order timers of different durations by expiry (a due list with an
// older head runs first), so each test makes the close seen before the point
// it checks, rather than relying on the close timer firing first.
test('retrying stops when the connection ends during an attempt (the broker redelivers; no ack or nack on the new connection)', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  let calls = 0;
  const sub = client.subscribe({ ...spec, retry: { attempts: 5, initialMs: 30, maxMs: 30 } }, async () => {
    calls++;
    broker.last.close(1006);
    await until('the client saw the connection end', () => client.state === 'reconnecting');
    throw new Error('down');
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.last.deliver(sub.queueName, 'x');
  await until('first attempt', () => calls === 1);
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  await until('dropped as stale', () => sub.stats.stale === 1);
  await sleep(80); // longer than the back-off (30 ms): a retry would have run by now
  assert.equal(calls, 1, 'no attempt after the connection ended');
  assert.equal(sub.stats.stale, 1);
  assert.equal(sub.stats.retries, 0, 'no back-off started');
  assert.equal(broker.frames('ACK').length + broker.frames('NACK').length, 0);
  await client.close();
});

test('retrying stops when the connection ends during the back-off', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  let calls = 0;
  const sub = client.subscribe({ ...spec, retry: { attempts: 5, initialMs: 200, maxMs: 200 } }, () => {
    calls++;
    throw new Error('down');
  });
  const delays = [];
  // The 'retry' event comes before the back-off starts: the close is seen
  // (a 1 ms timer) long before the back-off ends (at least 100 ms).
  client.on('retry', (e) => {
    delays.push(e.delayMs);
    broker.last.close(1006);
  });
  const random = Math.random;
  Math.random = () => 0.5; // back-off = 0.5 × 200 ms
  try {
    await client.connect();
    await until('connected', () => client.state === 'connected');
    broker.last.deliver(sub.queueName, 'x');
    await until('first attempt', () => calls === 1);
    await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
    await until('dropped as stale after the back-off', () => sub.stats.stale === 1);
  } finally {
    Math.random = random;
  }
  assert.deepEqual(delays, [100]);
  assert.equal(calls, 1, 'no attempt after the connection ended');
  assert.equal(broker.frames('ACK').length + broker.frames('NACK').length, 0);
  await client.close();
});

test('client.on(pattern) dispatches by routing key; unmatched messages are acked as unrouted', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const got = [];
  const off = client.on('customer.*.order_paid', (m) => void got.push(['paid', m.id, m.routingKey]));
  client.on('customer.#', (m) => void got.push(['all', m.id]));
  const sub = client.subscribe(spec); // no handler of its own
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.last.deliver(sub.queueName, 'a', '{}', { destination: '/exchange/events/customer.42.order_paid' });
  broker.last.deliver(sub.queueName, 'b', '{}', { destination: '/exchange/events/customer.42.shipped' });
  broker.last.deliver(sub.queueName, 'c', '{}', { destination: '/exchange/events/x.y', routing_key: 'customer.7.order_paid' });
  broker.last.deliver(sub.queueName, 'd', '{}', { destination: '/exchange/events/other.thing' });
  await until('all acked', () => broker.frames('ACK').length === 4);
  assert.deepEqual(got, [['paid', 'a', 'customer.42.order_paid'], ['all', 'a'], ['all', 'b'], ['paid', 'c', 'customer.7.order_paid'], ['all', 'c']]);
  assert.equal(sub.stats.unrouted, 1);
  off();
  broker.last.deliver(sub.queueName, 'e', '{}', { destination: '/exchange/events/customer.1.order_paid' });
  await until('e acked', () => broker.frames('ACK').length === 5);
  assert.deepEqual(got.at(-1), ['all', 'e']);
  await client.close();
});

test('ready(), on/once/off for states', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const seen = [];
  const onceSeen = [];
  const fn = (d) => seen.push(d.attempt);
  client.on('connected', fn);
  client.once('state', (s) => onceSeen.push(s));
  client.subscribe(spec, () => {});
  const ready = client.ready();
  await client.connect();
  await ready;
  assert.equal(client.state, 'connected');
  await client.ready(); // at once while connected
  broker.last.close(1006);
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  client.off('connected', fn);
  broker.last.close(1006);
  await until('reconnected again', () => broker.sockets.length === 3 && client.state === 'connected');
  assert.deepEqual(seen, [0, 1]);
  assert.deepEqual(onceSeen, ['connecting']);
  assert.throws(() => client.on('connected'), /needs a function/);
  await client.close();
});

test('handler finishing after a reconnect: no stale ack; redelivery deduped and acked on the new connection', async () => {
  const broker = new FakeBroker();
  const { client, states } = newClient(broker);
  let release;
  let calls = 0;
  const sub = client.subscribe(spec, async () => {
    calls++;
    await new Promise((r) => (release = r));
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const first = broker.last;
  first.deliver(sub.queueName, 'x');
  first.deliver(sub.queueName, 'y'); // queued behind x, never handled on this connection
  await until('x started', () => calls === 1);
  first.close(1006, '');
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  const second = broker.last;
  const ackX = second.deliver(sub.queueName, 'x', '{}', { redelivered: 'true' });
  await sleep(10);
  release(); // x's handler resolves now, after its connection died
  await until('x redelivery acked', () => second.received.filter((f) => f.command === 'ACK').length === 1);
  assert.equal(first.received.filter((f) => f.command === 'ACK').length, 0, 'nothing acked on the dead connection');
  assert.equal(second.received.find((f) => f.command === 'ACK').headers.id, ackX);
  assert.equal(calls, 1, 'x handled once');
  assert.equal(sub.stats.stale, 1, 'y dropped as stale');
  assert.equal(sub.stats.acked, 1, 'only the redelivery was acked');
  // identical SUBSCRIBE headers on both connections (apart from the receipt id)
  const strip = ({ receipt, ...h }) => h;
  assert.deepEqual(strip(second.received.find((f) => f.command === 'SUBSCRIBE').headers), strip(first.received.find((f) => f.command === 'SUBSCRIBE').headers));
  const rec = states.find((s) => s.state === 'reconnecting');
  assert.equal(rec.attempt, 1);
  assert.equal(rec.error.code, 1006);
  await client.close();
});

test('failed SUBSCRIBE ("STOMP died" right after CONNECTED) backs off with growing attempts, never "connected"', async () => {
  const broker = new FakeBroker();
  broker.subscribeFails = true;
  const { client, states } = newClient(broker, { reconnect: { initialMs: 2, maxMs: 16 } });
  client.subscribe(spec, () => {});
  await client.connect();
  await until('6 attempts', () => inState(states, 'reconnecting').length >= 6);
  const rec = inState(states, 'reconnecting');
  assert.deepEqual(rec.slice(0, 6).map((s) => s.attempt), [1, 2, 3, 4, 5, 6]);
  rec.forEach((s) => assert.ok(s.delayMs <= Math.min(16, 2 * 2 ** (s.attempt - 1))));
  assert.match(rec[0].error.message, /1000 STOMP died/);
  assert.ok(!states.some((s) => s.state === 'connected'));
  broker.subscribeFails = false;
  await until('connected', () => client.state === 'connected');
  await client.close();
});

test('an ERROR frame that leaves the socket open (server cancel) forces a reconnect', async () => {
  const broker = new FakeBroker();
  const { client, states } = newClient(broker);
  client.subscribe(spec, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.last.error('Server cancelled subscription');
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  assert.equal(broker.sockets[0].readyState, 3, 'client closed the socket itself');
  const rec = states.find((s) => s.state === 'reconnecting');
  assert.match(rec.error.message, /Server cancelled subscription/);
  await client.close();
});

test('back-off resets only after a connection stayed healthy for stableMs', async () => {
  const broker = new FakeBroker();
  // stableMs well above a loaded host's event-loop stalls (the test suite runs
  // tsc beside it): 50 ms failed once when the close landed 50 ms late; a
  // saturated CI machine stalls the test process for hundreds of ms.
  const { client, states } = newClient(broker, { stableMs: 2000 });
  client.subscribe(spec, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.last.close(1006);
  await until('reconnected 1', () => broker.sockets.length === 2 && client.state === 'connected');
  broker.last.close(1006); // after < stableMs: attempt keeps counting
  await until('reconnected 2', () => broker.sockets.length === 3 && client.state === 'connected');
  await sleep(2100);
  broker.last.close(1006); // after > stableMs: back to attempt 1
  await until('reconnected 3', () => broker.sockets.length === 4 && client.state === 'connected');
  assert.deepEqual(inState(states, 'reconnecting').map((s) => s.attempt), [1, 2, 1]);
  await client.close();
});

test('close() stops reconnecting; subscribe/unsubscribe while connected', async () => {
  const broker = new FakeBroker();
  const { client, states } = newClient(broker);
  await client.connect();
  await until('connected (no subscriptions)', () => client.state === 'connected');
  const sub = client.subscribe(spec, () => {});
  await until('subscribed', () => broker.frames('SUBSCRIBE').length === 1);
  assert.throws(() => client.subscribe(spec, () => {}), /already in use/);
  sub.unsubscribe();
  await until('unsubscribed', () => broker.frames('UNSUBSCRIBE').length === 1);
  assert.equal(broker.frames('UNSUBSCRIBE')[0].headers.id, sub.queueName);
  client.subscribe(spec, () => {}); // name free again
  await client.close();
  await sleep(30);
  assert.equal(broker.sockets.length, 1);
  assert.equal(states.at(-1).state, 'closed');
});

test('connectHeaders() is awaited per attempt; a rejection counts as a failed attempt', async () => {
  const broker = new FakeBroker();
  let n = 0;
  const { client, states } = newClient(broker, {
    vhost: 'app',
    connectHeaders: async () => {
      if (++n === 1) throw new Error('token service down');
      return { login: 'alice', passcode: `jwt-${n}` };
    },
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  assert.match(states.find((s) => s.state === 'reconnecting').error.message, /token service down/);
  const [c] = broker.frames('CONNECT');
  assert.equal(c.headers.login, 'alice');
  assert.equal(c.headers.passcode, 'jwt-2');
  assert.equal(c.headers.host, 'app');
  await client.close();
});

test('tab id persists in storage; a duplicated tab (copied storage) picks a new one', async () => {
  const storage = memoryStorage();
  const a = new DurableClient({ url: 'ws://127.0.0.1:1/ws', storage });
  const b = new DurableClient({ url: 'ws://127.0.0.1:1/ws', storage });
  assert.equal(a.tabId, b.tabId, 'same tab (e.g. reload) keeps its id');
  assert.equal(storage.getItem('durablews.tabId'), a.tabId);

  // Two "documents": this thread and a worker thread, each with its own
  // module instances (so its own document id); BroadcastChannel reaches
  // across threads as it reaches across tabs.
  const broker = new FakeBroker();
  const original = memoryStorage();
  const opts = { webSocketFactory: broker.factory, heartbeatMs: 0, connectTimeoutMs: 0, duplicateTabCheckMs: 40 };
  const tab1 = new DurableClient({ ...opts, storage: original });
  await tab1.connect(); // owns its id after 40 ms without objection
  const worker = new Worker(DUPLICATED_TAB, {
    eval: true,
    workerData: { url: new URL('../durablews.js', import.meta.url).href, tabId: original.getItem('durablews.tabId') },
  });
  const tab2 = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before reporting`)));
  });
  assert.equal(tab2.before, tab1.tabId, 'the copy starts with the original\'s id');
  assert.notEqual(tab2.after, tab1.tabId, 'duplicate got a new id');
  assert.equal(tab2.stored, tab2.after, 'and stored it');
  assert.equal(original.getItem('durablews.tabId'), tab1.tabId, 'original kept its id');
  await tab1.close();
});

/** The duplicated tab of the test above, run in a worker thread: another document. */
const DUPLICATED_TAB = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { DurableClient, memoryStorage } = await import(workerData.url);
  const copy = memoryStorage();
  copy.setItem('durablews.tabId', workerData.tabId); // "Duplicate tab"
  const client = new DurableClient({
    webSocketFactory: () => { throw new Error('no broker in this thread'); },
    heartbeatMs: 0, connectTimeoutMs: 0, duplicateTabCheckMs: 40, storage: copy,
  });
  const before = client.tabId;
  await client.connect(); // the duplicated-tab check ends before the first attempt
  const after = client.tabId;
  await client.close();
  parentPort.postMessage({ before, after, stored: copy.getItem('durablews.tabId') });
})();
`;

test('invalid options are rejected early', () => {
  assert.throws(() => new DurableClient({ url: 'http://x/ws', storage: memoryStorage() }), /ws: or wss:/);
  assert.throws(() => new DurableClient({ url: 'nope', storage: memoryStorage() }), /invalid url/);
  assert.throws(() => new DurableClient({ url: 'ws://x/ws', storage: memoryStorage(), queuePrefix: 'a b' }), TypeError);
  const c = new DurableClient({ url: 'ws://x/ws', storage: memoryStorage() });
  assert.throws(() => c.subscribe({ exchange: 'e', name: 'bad/name' }, () => {}), TypeError);
  assert.throws(() => c.subscribe({ exchange: 'e', name: 'n' }, 'not a function'), TypeError);
  assert.throws(() => c.subscribe({ exchange: 'e', name: 'n', retry: { attempts: 0 } }), /retry.attempts/);
  assert.throws(() => c.subscribe({ exchange: 'e', name: 'n', handlerTimeoutMs: -1 }), /handlerTimeoutMs/);
});

test('close() + connect() during the duplicated-tab check opens exactly one connection', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker, { duplicateTabCheckMs: 30 });
  const first = client.connect();
  await client.close();
  const second = client.connect();
  await Promise.all([first, second]);
  await until('connected', () => client.state === 'connected');
  await sleep(50);
  assert.equal(broker.sockets.length, 1);
  await client.close();
});

// ---- tab-session mode ----

test('session: POSTs JSON with the tab id, connects with the token, subscribes to the destination with only ack/prefetch/id', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const storage = memoryStorage();
  const { client, urls } = newSessionClient(broker, srv, { storage });
  const sub = client.subscribe({ name: 'events', prefetch: 5 }, () => {});
  assert.equal(sub.queueName, null, 'no queue before the first session');
  const tabId = client.tabId;
  await client.connect();
  await until('connected', () => client.state === 'connected');

  assert.equal(srv.requests.length, 1);
  const [r] = srv.requests;
  assert.equal(r.url, '/api/tab-session');
  assert.equal(r.init.method, 'POST');
  assert.equal(r.init.headers['content-type'], 'application/json');
  assert.equal(r.init.credentials, 'same-origin');
  assert.deepEqual(r.body, { tab_id: tabId });
  assert.deepEqual(urls, ['ws://broker.test/ws']);

  const [conn] = broker.frames('CONNECT');
  assert.equal(conn.headers.host, 'demo');
  assert.equal(conn.headers.passcode, 'tok-1');
  assert.notEqual(conn.headers.login, 'guest');
  const q = `tab-0123456789abcdef-${tabId}`;
  assert.equal(sub.queueName, q);
  const [s] = broker.frames('SUBSCRIBE');
  const { receipt, ...headers } = s.headers;
  assert.ok(receipt);
  assert.deepEqual(headers, {
    destination: `/amq/queue/${q}`,
    id: 'durablews-events',
    ack: 'client-individual',
    'prefetch-count': '5',
  });

  // Messages flow and are acked as in the headers mode.
  const got = [];
  sub._handler = (m) => void got.push(m.id);
  broker.last.deliver('durablews-events', 'u-1');
  await until('acked', () => broker.frames('ACK').length === 1);
  assert.deepEqual(got, ['u-1']);
  await client.close();
});

test('session: the server-returned tab_id is stored and sent on every reconnect, each with a fresh token', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const storage = memoryStorage();
  // The server replaces the tab id once (e.g. it made one up).
  let first = true;
  const base = srv.next;
  srv.next = (req) => {
    const r = base(first ? { ...req, tab_id: '' } : req);
    first = false;
    return r;
  };
  const { client } = newSessionClient(broker, srv, { storage, storageKey: 'k' });
  const sub = client.subscribe({ name: 'events' }, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  assert.equal(client.tabId, srv.tabId);
  assert.equal(storage.getItem('k'), srv.tabId);

  broker.last.close(1006, 'network');
  await until('reconnected', () => broker.frames('CONNECT').length === 2 && client.state === 'connected');
  broker.last.close(1006, 'network');
  await until('reconnected again', () => broker.frames('CONNECT').length === 3 && client.state === 'connected');
  assert.deepEqual(srv.requests.slice(1).map((r) => r.body.tab_id), [srv.tabId, srv.tabId]);
  assert.deepEqual(broker.frames('CONNECT').map((f) => f.headers.passcode), ['tok-1', 'tok-2', 'tok-3']);
  assert.deepEqual(new Set(broker.frames('SUBSCRIBE').map((f) => f.headers.destination)), new Set([`/amq/queue/${sub.queueName}`]));
  await client.close();

  // A new page of the same tab (same storage) asks for the same tab id.
  const again = newSessionClient(new FakeBroker(), srv, { storage, storageKey: 'k' }).client;
  assert.equal(again.tabId, srv.tabId);
});

test('session: a queue the server had to create again is reported once, with the next connected state', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  let created = true; // the first session creates the queue: normal, not reported
  const base = srv.next;
  srv.next = (req) => {
    const r = base(req);
    r.body.queue_created = created;
    created = false;
    return r;
  };
  const { client, states } = newSessionClient(broker, srv);
  client.subscribe({ name: 'events' }, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');

  broker.last.close(1006, 'network'); // queue still there: no reset
  await until('reconnected', () => broker.frames('CONNECT').length === 2 && client.state === 'connected');

  // The queue is lost (x-expires, operator, broker crash); the server creates
  // it again, and a failed attempt in between must not swallow the report.
  created = true;
  broker.subscribeFails = true;
  broker.last.close(1006, 'network');
  await until('a failed attempt', () => broker.frames('CONNECT').length >= 4);
  broker.subscribeFails = false;
  await until('reconnected after the loss', () => client.state === 'connected' && inState(states, 'connected').length === 3);

  broker.last.close(1006, 'network');
  await until('reconnected once more', () => inState(states, 'connected').length === 4);
  const connected = inState(states, 'connected');
  assert.deepEqual(connected.map((s) => s.queueReset === true), [false, false, true, false]);
  await client.close();
});

test('headers mode: an outage of at least expiresMs is reported as queueReset on the next connected state, a shorter one is not', async () => {
  const broker = new FakeBroker();
  const { client, states } = newClient(broker);
  // expiresMs far above a stalled test process's delay before the short
  // outage ends (a reconnect takes a few ms).
  client.subscribe({ ...spec, expiresMs: 1500 }, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');

  broker.last.close(1006, 'network'); // back within a few ms: the queue is still there
  await until('reconnected', () => inState(states, 'connected').length === 2);

  broker.subscribeFails = true; // the tab stays away longer than x-expires
  broker.last.close(1006, 'network');
  await sleep(1600);
  broker.subscribeFails = false;
  await until('reconnected after the long outage', () => inState(states, 'connected').length === 3);

  await client.close(); // close() and connect() again at once: short
  await client.connect();
  await until('connected again', () => inState(states, 'connected').length === 4);
  const connected = inState(states, 'connected');
  assert.deepEqual(connected.map((s) => s.queueReset === true), [false, false, true, false]);
  await client.close();
});

test('session: bindings option is sent as asked', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const bindings = [{ exchange: 'events', key: 'customer.42.order_paid' }];
  const { client } = newSessionClient(broker, srv, { session: { url: '/s', bindings, fetch: srv.fetch } });
  client.subscribe({ name: 'events' }, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  assert.deepEqual(srv.requests[0].body.bindings, bindings);
  assert.equal(srv.requests[0].url, '/s');
  await client.close();
});

for (const status of [401, 403]) {
  test(`session: HTTP ${status} is fatal: state 'closed' with the error, no retry, no socket`, async () => {
    const broker = new FakeBroker();
    const srv = fakeSessionServer();
    srv.next = () => ({ status, body: { error: status === 401 ? 'unauthenticated' : 'forbidden', message: 'nope' } });
    const { client, states } = newSessionClient(broker, srv);
    client.subscribe({ name: 'events' }, () => {});
    await client.connect();
    await until('closed', () => client.state === 'closed');
    await sleep(60);
    assert.equal(srv.requests.length, 1, 'no retry loop');
    assert.equal(broker.sockets.length, 0);
    const last = states.at(-1);
    assert.equal(last.state, 'closed');
    assert.equal(last.fatal, true);
    assert.equal(last.error.name, 'SessionError');
    assert.equal(last.error.status, status);
    assert.equal(last.error.code, status === 401 ? 'unauthenticated' : 'forbidden');
    assert.match(last.error.message, new RegExp(`HTTP ${status}.*nope`));
    assert.deepEqual(states.map((x) => x.state), ['connecting', 'closed']);

    // connect() again (e.g. after logging in) tries again.
    srv.next = fakeSessionServer().next;
    await client.connect();
    await until('connected', () => client.state === 'connected');
    await client.close();
  });
}

test('session: 5xx, network errors and malformed responses back off and retry', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const ok = srv.next;
  const answers = [
    () => ({ status: 503, body: { error: 'unavailable', message: 'broker down' } }),
    () => new TypeError('Failed to fetch'),
    () => ({ status: 500, body: 'not json at all' }),
    (req) => ({ status: 200, body: { ...ok(req).body, destination: '/exchange/events/x' } }),
  ];
  srv.next = (req) => (answers.length ? answers.shift()(req) : ok(req));
  const { client, states } = newSessionClient(broker, srv);
  client.subscribe({ name: 'events' }, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const rec = inState(states, 'reconnecting');
  assert.deepEqual(rec.map((s) => s.attempt), [1, 2, 3, 4]);
  assert.ok(rec.every((s) => s.delayMs >= 0 && s.error.name === 'SessionError' && !s.error.fatal));
  assert.equal(rec[0].error.status, 503);
  assert.equal(rec[1].error.status, 0);
  assert.match(rec[3].error.message, /destination/);
  assert.equal(srv.requests.length, 5);
  assert.equal(broker.sockets.length, 1, 'no socket for a failed session request');
  await client.close();
});

test('session: a refused SUBSCRIBE (socket closed, 3.10.8) backs off and fetches a new token each time', async () => {
  const broker = new FakeBroker();
  broker.subscribeFails = true;
  const srv = fakeSessionServer();
  const { client, states } = newSessionClient(broker, srv);
  client.subscribe({ name: 'events' }, () => {});
  await client.connect();
  await until('3 failed attempts', () => inState(states, 'reconnecting').length >= 3);
  broker.subscribeFails = false;
  await until('connected', () => client.state === 'connected');
  const rec = inState(states, 'reconnecting');
  assert.ok(rec.length >= 3);
  assert.ok(rec.every((s, i) => s.attempt === i + 1 && s.delayMs >= 0));
  assert.equal(srv.requests.length, broker.frames('CONNECT').length);
  const tokens = broker.frames('CONNECT').map((f) => f.headers.passcode);
  assert.equal(new Set(tokens).size, tokens.length, 'a fresh token per attempt');
  await client.close();
});

test('session: options are validated', () => {
  const srv = fakeSessionServer();
  assert.throws(() => new DurableClient({ session: {} }), /session needs \{url/);
  assert.throws(() => new DurableClient({ session: { url: '/s', fetch: srv.fetch }, login: 'guest', passcode: 'guest' }), /leave out url, login/);
  assert.throws(() => new DurableClient({ session: { url: '/s', fetch: srv.fetch, bindings: [] } }), /bindings/);
  const c = new DurableClient({ session: { url: '/s', fetch: srv.fetch }, storage: memoryStorage() });
  assert.throws(() => c.subscribe({ name: 'x', exchange: 'events' }, () => {}), /not used in tab-session mode/);
  c.subscribe({ name: 'x' }, () => {});
  assert.throws(() => c.subscribe({ name: 'y' }, () => {}), /one subscription/);
});

test('session: uses globalThis.fetch by default, called as a function (window.fetch throws "Illegal invocation" as a method)', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const saved = globalThis.fetch;
  globalThis.fetch = function (url, init) {
    if (this !== undefined && this !== globalThis) throw new TypeError("Failed to execute 'fetch' on 'Window': Illegal invocation");
    return srv.fetch(url, init);
  };
  try {
    const { client } = newSessionClient(broker, srv, { session: { url: '/api/tab-session' } });
    client.subscribe({ name: 'events' }, () => {});
    await client.connect();
    await until('connected', () => client.state === 'connected');
    assert.equal(srv.requests.length, 1);
    await client.close();
  } finally {
    globalThis.fetch = saved;
  }
});

// ---- issue 13: connect failures, messages, persistence, page lifecycle, prepared sessions ----

test('a throwing webSocketFactory (or WebSocket constructor) is a failed attempt: reconnecting with the error, then retried', async () => {
  const broker = new FakeBroker();
  let n = 0;
  const { client, states } = newClient(broker, {
    webSocketFactory: () => {
      if (++n <= 2) throw new SyntaxError("Failed to construct 'WebSocket': The URL 'ws://bad host/ws' is invalid.");
      return broker.factory();
    },
  });
  client.subscribe(spec, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const rec = inState(states, 'reconnecting');
  assert.deepEqual(rec.map((s) => s.attempt), [1, 2]);
  assert.match(rec[0].error.message, /Failed to construct 'WebSocket'/);
  await client.close();
});

test('msg.json() works detached; msg.bytes() gives a binary frame\'s exact bytes', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const got = [];
  const sub = client.subscribe(spec, (msg) => {
    const { json, bytes, id } = msg;
    got.push({ id, bytes: [...bytes()], json: id === 'j' ? json() : undefined, body: msg.body });
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.last.deliver(sub.queueName, 'j', '{"a":[1,2]}');
  const raw = new Uint8Array([0xff, 0x00, 0xfe, 0x41, 0x0a, 0x80]);
  broker.last.deliverBinary(sub.queueName, 'b', raw);
  await until('both acked', () => broker.frames('ACK').length === 2);
  assert.deepEqual(got[0].json, { a: [1, 2] });
  assert.deepEqual(got[0].bytes, [...new TextEncoder().encode('{"a":[1,2]}')]);
  assert.deepEqual(got[1].bytes, [...raw], 'non-UTF-8 bytes (and a NUL) intact');
  assert.equal(got[1].body.length > 0, true);
  await client.close();
});

test('de-dup window is kept per subscription in storage (bounded): a reloaded page drops what the old one handled', async () => {
  const storage = memoryStorage();
  const broker = new FakeBroker();
  const first = newClient(broker, { storage, dedupWindow: 3 });
  const calls = [];
  const sub1 = first.client.subscribe(spec, (m) => void calls.push(m.id));
  await first.client.connect();
  await until('connected', () => first.client.state === 'connected');
  for (const id of ['a', 'b', 'c', 'd']) broker.last.deliver(sub1.queueName, id);
  await until('handled', () => calls.length === 4);
  await first.client.close(); // writes the window (pagehide does the same)
  assert.deepEqual(JSON.parse(storage.getItem('durablews.tabId.seen.orders')), ['b', 'c', 'd'], 'bounded: oldest evicted');

  // "Reload": a new client on the same storage gets redeliveries of b..d (handled, ack lost) and a new e.
  const second = newClient(broker, { storage, dedupWindow: 3 });
  const sub2 = second.client.subscribe(spec, (m) => void calls.push(m.id));
  await second.client.connect();
  await until('connected again', () => second.client.state === 'connected');
  for (const id of ['b', 'c', 'd', 'e', 'a']) broker.last.deliver(sub2.queueName, id, '{}', { redelivered: 'true' });
  await until('acked', () => sub2.stats.acked === 5);
  assert.deepEqual(calls, ['a', 'b', 'c', 'd', 'e', 'a'], "b..d dropped; 'a' had left the window");
  assert.equal(sub2.stats.duplicates, 3);
  // another subscription name has its own window
  const other = newClient(broker, { storage }).client.subscribe({ ...spec, name: 'other' }, () => {});
  assert.equal(other._seen.length, 0);
  await second.client.close();
});

test('page lifecycle: pagehide closes (reason pagehide) and a bfcache pageshow reconnects; freeze/resume likewise; close() in between wins', async () => {
  const win = new EventTarget();
  const doc = new EventTarget();
  globalThis.window = win;
  globalThis.document = doc;
  try {
    const broker = new FakeBroker();
    const { client, states } = newClient(broker);
    const calls = [];
    const sub = client.subscribe(spec, (m) => void calls.push(m.id));
    await client.connect();
    await until('connected', () => client.state === 'connected');
    broker.last.deliver(sub.queueName, 'a');
    await until('a', () => calls.length === 1);

    win.dispatchEvent(Object.assign(new Event('pagehide'), { persisted: true }));
    assert.equal(client.state, 'closed');
    assert.equal(states.at(-1).reason, 'pagehide');
    win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: false })); // a fresh load: not ours
    await sleep(10);
    assert.equal(client.state, 'closed');
    win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
    await until('connected after pageshow', () => client.state === 'connected' && broker.sockets.length === 2);
    broker.last.deliver(sub.queueName, 'a', '{}', { redelivered: 'true' }); // same window: still a duplicate
    broker.last.deliver(sub.queueName, 'b');
    await until('b', () => calls.length === 2);
    assert.equal(sub.stats.duplicates, 1);

    doc.dispatchEvent(new Event('freeze'));
    assert.equal(client.state, 'closed');
    assert.equal(states.at(-1).reason, 'freeze');
    doc.dispatchEvent(new Event('resume'));
    await until('connected after resume', () => client.state === 'connected' && broker.sockets.length === 3);

    doc.dispatchEvent(new Event('freeze'));
    await client.close(); // the application closed it: resume must not reopen
    doc.dispatchEvent(new Event('resume'));
    await sleep(20);
    assert.equal(client.state, 'closed');
    assert.equal(broker.sockets.length, 3);
  } finally {
    delete globalThis.window;
    delete globalThis.document;
  }
});

test('session: getHeaders adds request headers; a request that hangs times out and is retried', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  let hang = true;
  const base = srv.fetch;
  const fetch = (url, init) => {
    if (hang) {
      hang = false;
      srv.requests.push({ url, init, hung: true });
      return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    }
    return base(url, init);
  };
  let n = 0;
  const { client, states } = newSessionClient(broker, srv, {
    session: { url: '/s', fetch, timeoutMs: 30, getHeaders: async () => ({ 'x-csrf-token': `csrf-${++n}`, authorization: 'Bearer b' }) },
  });
  client.subscribe({ name: 'events' }, () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const rec = inState(states, 'reconnecting');
  assert.equal(rec.length, 1);
  assert.equal(rec[0].error.name, 'SessionError');
  assert.equal(rec[0].error.code, 'timeout');
  assert.match(rec[0].error.message, /timed out after 30 ms/);
  assert.equal(srv.requests[1].init.headers['x-csrf-token'], 'csrf-2');
  assert.equal(srv.requests[1].init.headers.authorization, 'Bearer b');
  assert.equal(srv.requests[1].init.headers['content-type'], 'application/json');
  await client.close();
});

test('session: "v": 1 accepted, another major version is fatal with a clear error', async () => {
  for (const [v, ok] of [[1, true], [2, false], ['1', false]]) {
    const broker = new FakeBroker();
    const srv = fakeSessionServer();
    const base = srv.next;
    srv.next = (req) => {
      const r = base(req);
      r.body.v = v;
      return r;
    };
    const { client, states } = newSessionClient(broker, srv);
    client.subscribe({ name: 'events' }, () => {});
    const ready = client.ready();
    await client.connect();
    if (ok) {
      await ready;
    } else {
      await assert.rejects(ready, /version .* this client understands version 1/);
      const last = states.at(-1);
      assert.equal(last.state, 'closed');
      assert.equal(last.fatal, true);
      assert.equal(last.error.code, 'unsupported_version');
      assert.equal(srv.requests.length, 1, 'not retried');
    }
    await client.close();
  }
});

test('session.initial: the first connection uses the prepared session (no request), reconnects fetch fresh ones', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const storage = memoryStorage();
  storage.setItem('durablews.tabId', 'oldtab0123456789abcdefghij');
  const prepared = srv.next({ tab_id: 'rendertab0123456789abcdefg' }).body;
  prepared.v = 1;
  prepared.token = 'rendered-token';
  const { client } = newSessionClient(broker, srv, {
    storage,
    session: { url: '/s', fetch: srv.fetch, initial: JSON.stringify(prepared) },
  });
  assert.equal(client.tabId, 'rendertab0123456789abcdefg', 'the prepared session names the tab');
  assert.equal(storage.getItem('durablews.tabId'), client.tabId);
  const sub = client.subscribe({ name: 'events' }, () => {});
  await client.connect();
  await client.ready();
  assert.equal(srv.requests.length, 0);
  assert.equal(broker.frames('CONNECT')[0].headers.passcode, 'rendered-token');
  assert.equal(broker.frames('SUBSCRIBE')[0].headers.destination, prepared.destination);
  assert.equal(sub.queueName, prepared.queue);
  broker.last.close(1006);
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  assert.equal(srv.requests.length, 1);
  assert.equal(srv.requests[0].body.tab_id, 'rendertab0123456789abcdefg');
  assert.notEqual(broker.frames('CONNECT')[1].headers.passcode, 'rendered-token');
  await client.close();

  // An expired prepared session is not used; a malformed one is refused at once.
  const late = newSessionClient(new FakeBroker(), srv, {
    session: { url: '/s', fetch: srv.fetch, initial: { ...prepared, expires_at: new Date(Date.now() - 1000).toISOString() } },
  }).client;
  late.subscribe({ name: 'events' }, () => {});
  const before = srv.requests.length;
  await late.connect();
  await late.ready();
  assert.equal(srv.requests.length, before + 1);
  await late.close();
  assert.throws(
    () => new DurableClient({ session: { url: '/s', fetch: srv.fetch, initial: { ...prepared, v: 2 } }, storage: memoryStorage() }),
    /session.initial is not a usable tab session: .*version 2/,
  );
  assert.throws(() => new DurableClient({ session: { url: '/s', fetch: srv.fetch, initial: '{nope' }, storage: memoryStorage() }), /session.initial/);
});

test('session: client.on(pattern) alone consumes the session queue (no subscribe() needed)', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const { client } = newSessionClient(broker, srv);
  const got = [];
  client.on('customer.*.order_paid', (m) => void got.push(m.id));
  await client.connect();
  await client.ready();
  const [s] = broker.frames('SUBSCRIBE');
  assert.equal(s.headers.id, 'durablews-events');
  broker.last.deliver('durablews-events', 'p', '{}', { destination: '/exchange/events/customer.42.order_paid' });
  broker.last.deliver('durablews-events', 'q', '{}', { destination: '/exchange/events/customer.42.shipped' });
  await until('acked', () => broker.frames('ACK').length === 2);
  assert.deepEqual(got, ['p']);
  assert.throws(() => client.subscribe({ name: 'other' }, () => {}), /client.on\(pattern\) already consumes/);
  await client.close();
});

// ---- streams (package broadcast's wire protocol for a tab) ----

/** Deliver a stream MESSAGE at `offset` on the subscription id `stream-<stream>`. */
const deliverAt = (broker, stream, offset, id) =>
  broker.last.deliver(`stream-${stream}`, id, '{}', { destination: `/amq/queue/${stream}`, 'x-stream-offset': String(offset) });

test('stream: SUBSCRIBE at next, then resume at offset=<last> after a cut and after a reload; offset <= last skipped (acked, not handled)', async () => {
  const broker = new FakeBroker();
  const storage = memoryStorage();
  const { client, states } = newClient(broker, { storage });
  const got = [];
  const sub = client.subscribe({ stream: 'prices', prefetch: 5 }, (m) => void got.push([m.id, m.offset, m.stream]));
  assert.equal(sub.name, 'prices');
  assert.equal(sub.lastOffset, null);
  await client.connect();
  await client.ready();
  const { receipt, ...h } = broker.frames('SUBSCRIBE')[0].headers;
  assert.ok(receipt);
  assert.deepEqual(h, {
    destination: '/amq/queue/prices', id: 'stream-prices', ack: 'client-individual', 'prefetch-count': '5', 'x-stream-offset': 'next',
  });
  for (const [off, id] of [[5, 'a'], [6, 'b'], [8, 'c']]) deliverAt(broker, 'prices', off, id);
  await until('3 acked', () => broker.frames('ACK').length === 3);
  assert.deepEqual(got, [['a', 5, 'prices'], ['b', 6, 'prices'], ['c', 8, 'prices']]);
  assert.equal(sub.lastOffset, 8);
  assert.equal(storage.getItem('durablews.tabId.stream.prices'), '{"last":8}');

  broker.last.close(1006); // cut: the broker stores no offset, the tab asks for its last again
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  assert.equal(broker.frames('SUBSCRIBE')[1].headers['x-stream-offset'], 'offset=8');
  deliverAt(broker, 'prices', 8, 'c'); // the repeated frame of a resume
  deliverAt(broker, 'prices', 10, 'd'); // offsets skip (a segment start): no gap after the first frame
  await until('5 acked', () => broker.frames('ACK').length === 5);
  assert.deepEqual(got.map((g) => g[0]), ['a', 'b', 'c', 'd']);
  assert.equal(sub.stats.skipped, 1);
  assert.equal(sub.stats.gaps, 0);
  await client.close();

  // A reload: a new client with the same storage (no de-dup window needed: the offset alone).
  storage.removeItem('durablews.tabId.seen.prices');
  const b2 = new FakeBroker();
  const { client: c2 } = newClient(b2, { storage });
  const got2 = [];
  const sub2 = c2.subscribe({ stream: 'prices', start: { last: 1 } }, (m) => void got2.push(m.id));
  assert.equal(sub2.lastOffset, 10, 'the stored offset wins over a start position');
  await c2.connect();
  await c2.ready();
  assert.equal(b2.frames('SUBSCRIBE')[0].headers['x-stream-offset'], 'offset=10');
  deliverAt(b2, 'prices', 10, 'd');
  deliverAt(b2, 'prices', 11, 'e');
  await until('acked', () => b2.frames('ACK').length === 2);
  assert.deepEqual(got2, ['e']);
  assert.equal(b2.frames('NACK').length + broker.frames('NACK').length, 0);
  assert.deepEqual(inState(states, 'connected').map((s) => s.url), [undefined, undefined], 'webSocketFactory without url: no url');
  await c2.close();
});

test('stream: gap rule on the first MESSAGE only, from a stored offset or a server position; de-dup by id records the offset', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const gaps = [];
  client.on('gap', (g) => gaps.push(g));
  const got = [];
  const sub = client.subscribe({ stream: 'feed', name: 'activity', start: { last: 7 } }, (m) => void got.push(m.id));
  await client.connect();
  await client.ready();
  assert.equal(broker.frames('SUBSCRIBE')[0].headers['x-stream-offset'], 'offset=7');
  deliverAt(broker, 'feed', 20, 'x'); // retention removed 8..19 while the tab was away
  deliverAt(broker, 'feed', 30, 'y'); // not the first frame: no gap
  deliverAt(broker, 'feed', 31, 'x'); // same id at a new offset (a publisher retry stored it twice)
  await until('3 acked', () => broker.frames('ACK').length === 3);
  assert.deepEqual(gaps, [{ subscription: 'activity', stream: 'feed', from: 8, to: 19 }]);
  assert.deepEqual(got, ['x', 'y']);
  assert.equal(sub.stats.duplicates, 1);
  assert.equal(sub.lastOffset, 31, 'a duplicate id still moves the offset');

  // After a reconnect the first frame is again compared with the last offset.
  broker.last.close(1006);
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  deliverAt(broker, 'feed', 31, 'x');
  deliverAt(broker, 'feed', 32, 'z');
  await until('5 acked', () => broker.frames('ACK').length === 5);
  assert.equal(gaps.length, 1, 'first frame == last: nothing missed');
  broker.last.close(1006);
  await until('reconnected again', () => broker.sockets.length === 3 && client.state === 'connected');
  assert.equal(broker.frames('SUBSCRIBE')[2].headers['x-stream-offset'], 'offset=32');
  deliverAt(broker, 'feed', 40, 'w');
  await until('6 acked', () => broker.frames('ACK').length === 6);
  assert.deepEqual(gaps.at(-1), { subscription: 'activity', stream: 'feed', from: 33, to: 39 });
  assert.equal(sub.stats.gaps, 2);

  // offset=N+1 would be wrong: asking for last and getting last+1 is not a gap.
  const b2 = new FakeBroker();
  const { client: c2 } = newClient(b2);
  const g2 = [];
  c2.on('gap', (g) => g2.push(g));
  c2.subscribe({ stream: 'feed', start: { last: 7 } }, () => {});
  await c2.connect();
  await c2.ready();
  deliverAt(b2, 'feed', 8, 'a');
  await until('acked', () => b2.frames('ACK').length === 1);
  assert.deepEqual(g2, []);
  // A timestamp or 'first' start has no offset to compare: never a gap.
  const b3 = new FakeBroker();
  const { client: c3 } = newClient(b3);
  c3.on('gap', (g) => g2.push(g));
  c3.subscribe({ stream: 'feed', start: { timestamp: 1700000000 } }, () => {});
  c3.subscribe({ stream: 'other', start: 'first' }, () => {});
  await c3.connect();
  await c3.ready();
  assert.deepEqual(b3.frames('SUBSCRIBE').map((f) => f.headers['x-stream-offset']), ['timestamp=1700000000', 'first']);
  deliverAt(b3, 'feed', 500, 'a');
  await until('acked', () => b3.frames('ACK').length === 1);
  assert.deepEqual(g2, []);
  await Promise.all([client.close(), c2.close(), c3.close()]);
});

test('stream: a failing handler never NACKs: park (the default) acks, records the offset and reports failed; a cut mid-retry leaves the offset for the redelivery', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const failed = [];
  client.on('failed', (e) => failed.push([e.id, e.action, e.message.offset]));
  let poison = true;
  const calls = [];
  const sub = client.subscribe({ stream: 'prices', retry: { attempts: 2, initialMs: 1, maxMs: 1 }, onError: (e, m) => (m.id === 'drop' ? 'ack' : undefined) }, (m) => {
    calls.push(m.id);
    if (m.id === 'p' || m.id === 'drop') throw new Error('poison');
    if (m.id === 'slow' && poison) throw new Error('not yet');
  });
  const origError = console.error;
  console.error = () => {};
  try {
    await client.connect();
    await client.ready();
    deliverAt(broker, 'prices', 1, 'p');
    deliverAt(broker, 'prices', 2, 'drop');
    deliverAt(broker, 'prices', 3, 'ok');
    await until('3 acked', () => broker.frames('ACK').length === 3);
    assert.deepEqual(failed, [['p', 'park', 1], ['drop', 'ack', 2]]);
    assert.equal(broker.frames('NACK').length, 0, 'never NACK on a stream');
    assert.equal(sub.stats.parked, 1);
    assert.equal(sub.stats.dropped, 1);
    assert.equal(sub.lastOffset, 3);

    // The connection ends while 'slow' is being retried: not recorded, asked for again.
    sub._retry = { attempts: 1000, initialMs: 20, maxMs: 20 };
    deliverAt(broker, 'prices', 4, 'slow');
    await until('slow tried', () => calls.filter((c) => c === 'slow').length >= 1);
    broker.last.close(1006);
    await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
    assert.equal(broker.frames('SUBSCRIBE')[1].headers['x-stream-offset'], 'offset=3');
    await until('stale', () => sub.stats.stale === 1);
    poison = false;
    deliverAt(broker, 'prices', 3, 'ok');
    deliverAt(broker, 'prices', 4, 'slow');
    await until('5 acked', () => broker.frames('ACK').length === 5);
    assert.equal(sub.lastOffset, 4);
    assert.equal(broker.frames('NACK').length, 0);
  } finally {
    console.error = origError;
  }
  await client.close();
});

test('stream and per-tab queue in one client (headers mode); options validated', async () => {
  const broker = new FakeBroker();
  const { client } = newClient(broker);
  const got = [];
  const q = client.subscribe(spec, (m) => void got.push(['q', m.id, m.offset]));
  const st = client.subscribe({ stream: 'prices' }, (m) => void got.push(['s', m.id, m.offset]));
  await client.connect();
  await client.ready();
  assert.deepEqual(broker.frames('SUBSCRIBE').map((f) => f.headers.destination), ['/exchange/events/customer.42.#', '/amq/queue/prices']);
  broker.last.deliver(q.queueName, 'm1');
  deliverAt(broker, 'prices', 0, 'p1');
  await until('2 acked', () => broker.frames('ACK').length === 2);
  assert.deepEqual(got.sort(), [['q', 'm1', undefined], ['s', 'p1', 0]]);
  assert.equal(st.queueName, 'prices');
  assert.equal(q.lastOffset, undefined);
  assert.throws(() => client.subscribe({ stream: 'prices', name: 'again' }), /already subscribed/);
  assert.throws(() => client.subscribe({ stream: 'a/b' }), /stream must match/);
  assert.throws(() => client.subscribe({ stream: 'x', exchange: 'events' }), /does not apply to a stream/);
  assert.throws(() => client.subscribe({ stream: 'x', start: { last: -1 } }), /start must be 'next', 'first'/);
  assert.throws(() => client.subscribe({ stream: 'x', start: 'latest' }), /start must be/);
  await client.close();
});

test('session: streams from the session (destination, start at render time); one queue plus streams; a stream the session does not grant is fatal', async () => {
  const broker = new FakeBroker();
  const srv = fakeSessionServer();
  const base = srv.next;
  let start = { last: 41 };
  srv.next = (req) => {
    const r = base(req);
    r.body.streams = [{ name: 'prices', destination: '/amq/queue/prices', start }];
    return r;
  };
  const { client } = newSessionClient(broker, srv);
  const got = [];
  client.subscribe({ name: 'events' }, (m) => void got.push(m.id));
  const st = client.subscribe({ stream: 'prices' }, (m) => void got.push(m.id));
  await client.connect();
  await client.ready();
  const subs = broker.frames('SUBSCRIBE');
  assert.deepEqual(subs.map((f) => [f.headers.destination, f.headers['x-stream-offset']]), [
    [srv.next({ tab_id: client.tabId }).body.destination, undefined],
    ['/amq/queue/prices', 'offset=41'],
  ]);
  // A later session's newer start does not move a tab that has not read yet.
  start = { last: 99 };
  broker.last.close(1006);
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  assert.equal(broker.frames('SUBSCRIBE')[3].headers['x-stream-offset'], 'offset=41');
  deliverAt(broker, 'prices', 41, 's0');
  deliverAt(broker, 'prices', 42, 's1');
  await until('acked', () => broker.frames('ACK').length === 2);
  assert.deepEqual(got, ['s1']);
  assert.equal(st.lastOffset, 42);
  assert.throws(() => client.subscribe({ stream: 'news' }), (e) => e.code === 'stream_not_granted' && /grants no stream news/.test(e.message));
  await client.close();

  // Subscribed before the first session, not granted by it: closed, fatal, no socket.
  const b2 = new FakeBroker();
  const { client: c2, states } = newSessionClient(b2, srv);
  c2.subscribe({ stream: 'news' }, () => {});
  await c2.connect();
  await assert.rejects(c2.ready(), (e) => e.code === 'stream_not_granted' && e.fatal === true);
  assert.equal(inState(states, 'closed')[0].fatal, true);
  assert.equal(b2.sockets.length, 0);

  // A malformed streams field is a malformed response (retried), named in the error.
  srv.next = (req) => {
    const r = base(req);
    r.body.streams = [{ name: 'prices', destination: '/queue/prices' }];
    return r;
  };
  const { client: c3, states: s3 } = newSessionClient(new FakeBroker(), srv);
  c3.subscribe({ name: 'events' }, () => {});
  await c3.connect();
  await until('reconnecting', () => inState(s3, 'reconnecting').length > 0);
  assert.match(inState(s3, 'reconnecting')[0].error.message, /stream prices: destination "\/queue\/prices" is not \/amq\/queue\/<name>/);
  await c3.close();
});

test('failover: a list of URLs is tried in turn from a random start, with back-off; the session may list every node (urls)', async () => {
  const urls = ['ws://n1.test/ws', 'ws://n2.test/ws', 'ws://n3.test/ws'];
  const opened = [];
  const broker = new FakeBroker();
  broker.subscribeFails = true; // every attempt fails right after CONNECTED
  const realRandom = Math.random;
  let client;
  let states;
  try {
    Math.random = () => 0.5; // start index floor(0.5 * 2^20) % 3 == 1
    ({ client, states } = recordedClient({
      ...fastOptions(),
      url: urls,
      webSocketFactory: (u) => (opened.push(u), broker.factory()),
    }));
  } finally {
    Math.random = realRandom;
  }
  client.subscribe(spec, () => {});
  await client.connect();
  await until('7 attempts', () => opened.length >= 7);
  await client.close();
  assert.deepEqual(opened.slice(0, 7), [urls[1], urls[2], urls[0], urls[1], urls[2], urls[0], urls[1]]);
  const rec = inState(states, 'reconnecting').slice(0, 4);
  assert.deepEqual(rec.map((s) => s.url), opened.slice(0, 4), "'reconnecting' names the URL that failed");
  assert.deepEqual(rec.map((s) => s.attempt), [1, 2, 3, 4], 'back-off keeps growing across nodes');

  // Spread: the start depends on Math.random only.
  const starts = new Set();
  for (const r of [0, 0.34, 0.67]) {
    Math.random = () => r;
    try {
      const seen = [];
      const c = new DurableClient({ ...fastOptions(), url: urls, webSocketFactory: (u) => (seen.push(u), new FakeBroker().factory()) });
      c.subscribe(spec, () => {});
      await c.connect();
      await until('opened', () => seen.length === 1);
      starts.add(seen[0]);
      await c.close();
    } finally {
      Math.random = realRandom;
    }
  }
  assert.equal(starts.size, 3, 'each node can be the first');

  // A working node after a failing one: connected names it.
  const b2 = new FakeBroker();
  const seen2 = [];
  Math.random = () => 0;
  let c2;
  let s2;
  try {
    ({ client: c2, states: s2 } = recordedClient({
      ...fastOptions(),
      url: urls,
      webSocketFactory: (u) => {
        seen2.push(u);
        const s = b2.factory();
        if (u === urls[0]) setTimeout(() => s.close(1006), 1);
        return s;
      },
    }));
  } finally {
    Math.random = realRandom;
  }
  c2.subscribe(spec, () => {});
  await c2.connect();
  await c2.ready();
  assert.equal(inState(s2, 'connected')[0].url, urls[1]);
  await c2.close();

  // Tab-session mode: the session's urls are rotated the same way.
  const srv = fakeSessionServer();
  const base = srv.next;
  srv.next = (req) => {
    const r = base(req);
    r.body.urls = urls;
    return r;
  };
  const b3 = new FakeBroker();
  b3.subscribeFails = true;
  const { client: c3, urls: seen3 } = newSessionClient(b3, srv);
  c3.subscribe({ name: 'events' }, () => {});
  await c3.connect();
  await until('4 attempts', () => seen3.length >= 4);
  await c3.close();
  const i = urls.indexOf(seen3[0]);
  assert.deepEqual(seen3.slice(0, 4), [0, 1, 2, 3].map((k) => urls[(i + k) % 3]));
  assert.throws(() => new DurableClient({ url: [], storage: memoryStorage() }), /non-empty list/);
  assert.throws(() => new DurableClient({ url: ['ws://a/ws', 'http://b/ws'], storage: memoryStorage() }), /must be ws: or wss:, got http:\/\/b\/ws/);
});
