// Shared mode without a browser: several DurableClients in one process play
// the tabs of one browser (BroadcastChannel works between objects of one
// process; navigator.locks is an in-process stand-in with the Web Locks
// semantics the election needs), against a fake Web-STOMP server. The real
// thing in Chromium: browser.shared.e2e.test.js.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DurableClient, memoryStorage } from '../durablews.js';
import { FakeBroker, sleep, until as untilWithin } from './fake-broker.js';

// Waits are longer than the other unit tests' (several clients, BroadcastChannel hops).
const until = (what, pred, ms = 10000) => untilWithin(what, pred, ms);

/** navigator.locks: exclusive locks, granted in request order; a signal aborts a waiting request. */
class FakeLocks {
  constructor() {
    /** @type {Map<string, {held: boolean, queue: {cb: Function, resolve: Function, reject: Function}[]}>} */
    this.locks = new Map();
  }
  request(name, opts, cb) {
    if (typeof opts === 'function') [cb, opts] = [opts, {}];
    let l = this.locks.get(name);
    if (!l) this.locks.set(name, (l = { held: false, queue: [] }));
    return new Promise((resolve, reject) => {
      const entry = { cb, resolve, reject };
      opts.signal?.addEventListener('abort', () => {
        const i = l.queue.indexOf(entry);
        if (i >= 0) {
          l.queue.splice(i, 1);
          reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        }
      });
      l.queue.push(entry);
      this._next(l);
    });
  }
  _next(l) {
    if (l.held || l.queue.length === 0) return;
    const { cb, resolve, reject } = l.queue.shift();
    l.held = true;
    Promise.resolve()
      .then(() => cb({}))
      .then(resolve, reject)
      .finally(() => {
        l.held = false;
        this._next(l);
      });
  }
}

const locks = new FakeLocks();
Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true });

let groups = 0;
/** Every client made, closed after each test (a failed one too: open channels would keep the process alive). */
const made = new Set();
test.afterEach(async () => {
  for (const c of made) await c.close().catch(() => {});
  made.clear();
});
/** Two tabs of a new group, both connected: a leads (it connected first), b follows. */
async function leaderAndFollower() {
  const broker = new FakeBroker();
  const g = `g${++groups}`;
  const a = tab(broker, g);
  await a.client.connect();
  await a.client.ready();
  const b = tab(broker, g);
  await b.client.connect();
  await b.client.ready();
  return { broker, a, b };
}

/** A tab: a client of the group `group`, recording what it handled. */
function tab(broker, group, extra = {}) {
  const handled = [];
  const events = [];
  const client = new DurableClient({
    url: 'ws://fake/ws',
    webSocketFactory: broker.factory,
    storage: memoryStorage(),
    heartbeatMs: 0,
    heartbeatWorker: false,
    duplicateTabCheckMs: 0,
    reconnect: { initialMs: 20, maxMs: 50 },
    shared: group,
    ...extra,
  });
  made.add(client);
  for (const name of ['state', 'mode', 'leader']) client.on(/** @type {any} */ (name), (...a) => events.push([name, ...a]));
  const slow = new Map();
  const sub = client.subscribe({ exchange: 'events', name: 'orders', bindingKey: '#' }, async (msg) => {
    handled.push(msg.id);
    if (slow.has(msg.id)) await slow.get(msg.id);
  });
  return { client, sub, handled, events, slow };
}

test('shared: one socket for the tabs of a group; each tab gets only its own messages; ACKs on that socket', async () => {
  const { broker, a, b } = await leaderAndFollower();
  assert.equal(broker.sockets.length, 1, 'one socket');
  assert.equal(a.client.mode, 'shared-leader');
  assert.equal(b.client.mode, 'shared-follower');
  assert.equal(b.client.leader, a.client.tabId);
  assert.ok(a.events.some(([n, m]) => n === 'mode' && m === 'shared-leader'));
  assert.ok(b.events.some(([n, l]) => n === 'leader' && l.tabId === a.client.tabId && !l.self));
  const s = broker.sockets[0];
  // Every tab's SUBSCRIBE with its own headers, the id its own connection would use.
  assert.deepEqual([...s.subs.keys()].sort(), [a.sub.queueName, b.sub.queueName].sort());
  const ackA = s.deliverTo(a.sub.queueName, 'm1');
  const ackB = s.deliverTo(b.sub.queueName, 'm2');
  await until('handled', () => a.handled.length === 1 && b.handled.length === 1);
  assert.deepEqual(a.handled, ['m1']);
  assert.deepEqual(b.handled, ['m2']);
  await until('acks', () => broker.frames('ACK').length === 2);
  assert.deepEqual(broker.frames('ACK').map((f) => f.headers.id).sort(), [ackA, ackB].sort());
  await b.client.close();
  await a.client.close();
});

test('shared: a follower\'s ACK for a frame of an ended connection is not sent on the next; the redelivery is de-duplicated', async () => {
  const { broker, a, b } = await leaderAndFollower();
  let release;
  b.slow.set('m1', new Promise((r) => (release = r)));
  const first = broker.sockets[0];
  first.deliverTo(b.sub.queueName, 'm1');
  await until('m1 started', () => b.handled.length === 1);
  first.close(1006, 'cut');
  await until('a second socket, both tabs subscribed', () => broker.sockets.length === 2 && broker.sockets[1].subs.size === 2);
  release();
  await sleep(30);
  assert.equal(broker.frames('ACK').length, 0, 'no ACK for m1: its connection is gone');
  const ack2 = broker.sockets[1].deliverTo(b.sub.queueName, 'm1');
  await until('redelivery acked', () => broker.frames('ACK', broker.sockets[1]).length === 1);
  assert.equal(broker.frames('ACK', broker.sockets[1])[0].headers.id, ack2);
  assert.deepEqual(b.handled, ['m1'], 'handled once');
  assert.equal(b.sub.stats.duplicates, 1);
  assert.equal(b.sub.stats.stale, 0);
  await b.client.close();
  await a.client.close();
});

test('shared: the leader closes, the next tab in the lock\'s queue connects and every tab resubscribes', async () => {
  const broker = new FakeBroker();
  const g = `g${++groups}`;
  const tabs = [tab(broker, g), tab(broker, g), tab(broker, g)];
  for (const t of tabs) await t.client.connect();
  for (const t of tabs) await t.client.ready();
  assert.equal(broker.live.length, 1);
  const [leader, ...rest] = tabs;
  assert.equal(leader.client.mode, 'shared-leader');
  const t0 = Date.now();
  await leader.client.close();
  await until('a new leader', () => rest.some((t) => t.client.mode === 'shared-leader'));
  await until('every follower connected again', () => rest.every((t) => t.client.state === 'connected') && broker.live.length === 1 && broker.live[0].subs.size === 2);
  const took = Date.now() - t0;
  const next = rest.find((t) => t.client.mode === 'shared-leader');
  assert.equal(next, rest[0], 'the first in the lock\'s queue');
  assert.equal(rest[1].client.leader, next.client.tabId);
  assert.ok(rest[1].events.some(([n, s, d]) => n === 'state' && s === 'reconnecting' && /leader tab left/.test(d.error.message)));
  assert.equal(broker.sockets.length, 2);
  assert.equal(broker.sockets[0].readyState, 3, 'the old leader disconnected');
  const live = broker.live[0];
  live.deliverTo(rest[1].sub.queueName, 'x1');
  await until('delivered through the new leader', () => rest[1].handled.includes('x1'));
  assert.ok(took < 5000, `takeover ${took} ms`);
  for (const t of rest) await t.client.close();
});

test('shared: a follower that leaves hands back what it had not acked (UNSUBSCRIBE, NACK requeue)', async () => {
  const { broker, a, b } = await leaderAndFollower();
  b.slow.set('m1', new Promise(() => {})); // never finishes
  const s = broker.sockets[0];
  const ack = s.deliverTo(b.sub.queueName, 'm1');
  await until('m1 started', () => b.handled.length === 1);
  await b.client.close();
  await until('NACK', () => broker.frames('NACK').length === 1);
  const nack = broker.frames('NACK')[0];
  assert.equal(nack.headers.id, ack);
  assert.equal(nack.headers.requeue, 'true');
  assert.deepEqual(broker.frames('UNSUBSCRIBE').map((f) => f.headers.id), [b.sub.queueName]);
  assert.equal(a.client.state, 'connected', 'the other tab is not affected');
  await a.client.close();
});

test('shared: a tab whose SUBSCRIBE the broker refuses waits a back-off of its own; the others reconnect and go on', async () => {
  const broker = new FakeBroker();
  const g = `g${++groups}`;
  // The leader reconnects within initialMs; a suspect waits at least twice that.
  const reconnect = { initialMs: 500, maxMs: 1000 };
  const a = tab(broker, g, { reconnect });
  await a.client.connect();
  await a.client.ready();
  broker.refuse.add('/exchange/missing/#');
  const b = tab(broker, g, { reconnect });
  b.client.subscribe({ exchange: 'missing', name: 'bad', bindingKey: '#' }, () => {});
  await b.client.connect();
  await until('the connection ended', () => broker.sockets.length >= 2);
  await until('A connected again', () => a.client.state === 'connected' && broker.live.length === 1);
  // B's SUBSCRIBEs wait: A's queue alone is subscribed on the new connection for now.
  assert.deepEqual([...broker.live[0].subs.keys()], [a.sub.queueName]);
  broker.live[0].deliverTo(a.sub.queueName, 'a1');
  await until('A handles', () => a.handled.includes('a1'));
  assert.notEqual(b.client.state, 'connected');
  await b.client.close();
  await a.client.close();
});

test('shared: SEND with a receipt header is relayed through the leader and its RECEIPT comes back to the tab that sent it', async () => {
  const { broker, a, b } = await leaderAndFollower();
  const conn = /** @type {any} */ (b.client)._transport.connection;
  const got = new Promise((resolve) => conn.watchForReceipt('r-1', (f) => resolve(f.headers['receipt-id'])));
  conn.publish({ destination: '/exchange/durablews.receipts/k.t', headers: { receipt: 'r-1', 'content-type': 'application/json' }, body: '{"v":1}' });
  assert.equal(await got, 'r-1');
  const send = broker.frames('SEND')[0];
  assert.equal(send.headers.destination, '/exchange/durablews.receipts/k.t');
  assert.equal(send.body, '{"v":1}');
  assert.notEqual(send.headers.receipt, 'r-1', 'the leader names it per tab (two tabs may use the same receipt id)');
  await b.client.close();
  await a.client.close();
});

test('shared: false, another group, or no navigator.locks: a connection of its own', async () => {
  const broker = new FakeBroker();
  const g = `g${++groups}`;
  const a = tab(broker, g);
  const own = tab(broker, false);
  const other = tab(broker, `${g}-other`);
  for (const t of [a, own, other]) await t.client.connect();
  for (const t of [a, own, other]) await t.client.ready();
  assert.equal(broker.live.length, 3);
  assert.equal(own.client.mode, 'own');
  assert.equal(own.client.leader, null);
  for (const t of [a, own, other]) await t.client.close();
  const saved = globalThis.navigator;
  Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true });
  try {
    assert.equal(tab(broker, true).client.mode, 'own');
  } finally {
    Object.defineProperty(globalThis, 'navigator', { value: saved, configurable: true });
  }
  assert.throws(() => tab(broker, 7), /shared must be true, false or a non-empty group name/);
});
