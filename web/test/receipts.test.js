// Delivery receipts (docs/receipts.md, issue 21) against the in-process fake
// Web-STOMP server: which outcomes get a receipt, batching (flushMs,
// maxBatch), the SEND's headers and body, the RECEIPT that confirms a batch,
// persistence in the tab's storage, resends after a reconnect and a reload,
// receipts held while their ACK could not be written, the resend back-off,
// the maxPending bound, tab-session mode, and option validation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULTS, DurableClient, memoryStorage } from '../durablews.js';
import { parseSession } from '../internal.js';
import { resendDelay } from '../receipts.js';
import { sleep, until, FakeBroker, newClient, fakeSessionServer, newSessionClient } from './fake-broker.js';

const spec = { exchange: 'events', bindingKey: 'customer.42.#', name: 'orders' };
const KEY = 'durablews.tabId.receipts.pending';
/** The ids of every receipt the broker received, in order (resends included). */
const sentIds = (broker) => broker.sends().flatMap((s) => s.json.receipts.map((r) => r.id));
const stored = (storage) => JSON.parse(storage.getItem(KEY) ?? 'null');

/** A headers-mode client with receipts, its 'receipt' events in `events`. */
function receiptClient(broker, receipts = {}, extra = {}) {
  const c = newClient(broker, { receipts: { userKey: 'alice', ...receipts }, ...extra });
  const events = [];
  c.client.on('receipt', (e) => events.push(e));
  return { ...c, events };
}

test('DEFAULTS.receipts: exchange durablews.receipts, flush after 20 ms or 100 receipts, at most 1000 kept', () => {
  assert.deepEqual({ ...DEFAULTS.receipts }, { exchange: 'durablews.receipts', flushMs: 20, maxBatch: 100, maxPending: 1000 });
});

test('receipts: one SEND per batch after the ACKs, with the contract headers and body; the RECEIPT confirms it (event, stats, storage)', async () => {
  const broker = new FakeBroker();
  const storage = memoryStorage();
  const { client, events } = receiptClient(broker, { flushMs: 30 }, { storage });
  const sub = client.subscribe(spec, async () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const before = Date.now();
  for (const id of ['a', 'b', 'c']) broker.last.deliver(sub.queueName, id);
  await until('receipt event', () => events.length === 1);
  const after = Date.now();

  const sends = broker.sends();
  assert.equal(sends.length, 1, 'the three share one SEND (flushMs)');
  const [s] = sends;
  const { receipt, 'content-length': _len, ...headers } = s.headers;
  assert.match(receipt, /^receipts-/);
  assert.deepEqual(headers, {
    destination: `/exchange/durablews.receipts/alice.${client.tabId}`,
    'content-type': 'application/json',
    persistent: 'true',
    'x-durablews-receipts': '1',
  });
  assert.equal(s.json.v, 1);
  assert.equal(s.json.tab, client.tabId);
  assert.deepEqual(s.json.receipts.map((r) => [r.id, r.sub]), [['a', 'orders'], ['b', 'orders'], ['c', 'orders']]);
  for (const r of s.json.receipts) {
    assert.ok(r.at >= before && r.at <= after, `at ${r.at}`);
    assert.deepEqual(Object.keys(r).sort(), ['at', 'id', 'sub']);
  }
  // Every ACK went out before the SEND that reports it.
  const frames = broker.last.received.map((f) => f.command);
  assert.ok(frames.lastIndexOf('ACK') < frames.indexOf('SEND'), frames.join(','));

  assert.deepEqual(events[0], {
    tabId: client.tabId,
    receipts: s.json.receipts.map((r) => ({ id: r.id, subscription: 'orders', handledAt: r.at })),
  });
  assert.deepEqual(client.stats, { receiptsSent: 3, receiptsConfirmed: 3, receiptsPending: 0, receiptsDropped: 0 });
  assert.deepEqual(stored(storage), { v: 1, receipts: [], held: [] });
  await client.close();
});

test('receipts: a full batch (maxBatch) goes at once; the rest waits for flushMs, or goes out on close()', async () => {
  const broker = new FakeBroker();
  const { client } = receiptClient(broker, { flushMs: 60000, maxBatch: 2 });
  const sub = client.subscribe(spec, async () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  for (const id of ['a', 'b', 'c', 'd', 'e']) broker.last.deliver(sub.queueName, id);
  await until('two full batches', () => broker.sends().length === 2 && sub.stats.acked === 5);
  await sleep(30);
  assert.deepEqual(broker.sends().map((s) => s.json.receipts.map((r) => r.id)), [['a', 'b'], ['c', 'd']]);
  assert.equal(client.stats.receiptsPending, 1, 'e waits for its batch');
  await client.close();
  const all = broker.frames('SEND').concat(broker.frames('DISCONNECT'));
  assert.equal(all.length, 4);
  assert.deepEqual(broker.sends()[2].json.receipts.map((r) => r.id), ['e'], 'close() sends what is pending before DISCONNECT');
  const cmds = broker.last.received.map((f) => f.command);
  assert.ok(cmds.lastIndexOf('SEND') < cmds.indexOf('DISCONNECT'));
});

test('receipts: only for handled messages: none for park, onError ack, unrouted, duplicates, messages without id, receipts:false; streams only when asked (with stream and offset)', async () => {
  const broker = new FakeBroker();
  const { client, events } = receiptClient(broker, { flushMs: 5 });
  const verdicts = { p1: 'park', d1: 'ack' };
  const sub = client.subscribe(
    { ...spec, retry: { attempts: 1 }, onError: (_e, m) => verdicts[m.id] },
    async (m) => {
      if (m.id in verdicts) throw new Error('poison');
    },
  );
  const quiet = client.subscribe({ ...spec, name: 'quiet', receipts: false }, async () => {});
  const nohandler = client.subscribe({ ...spec, name: 'nohandler' }); // no handler, no pattern: unrouted
  const prices = client.subscribe({ stream: 'prices' }, async () => {}); // default: no receipts
  const news = client.subscribe({ stream: 'news', receipts: true }, async () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  const q = broker.last;
  for (const id of ['g1', 'p1', 'd1']) q.deliver(sub.queueName, id);
  q.deliver(sub.queueName, 'g1', '{}', { redelivered: 'true' }); // duplicate
  q.deliver(sub.queueName, undefined); // no id: handled, but nothing to report
  q.deliver(sub.queueName, 'g2');
  q.deliver(quiet.queueName, 'q1');
  q.deliver(nohandler.queueName, 'u1');
  q.deliver(prices.headers.id, 's1', '{}', { 'x-stream-offset': '7' });
  q.deliver(news.headers.id, 'n1', '{}', { 'x-stream-offset': '42' });
  await until('all acked', () => sub.stats.acked === 5 && quiet.stats.acked === 1 && nohandler.stats.unrouted === 1 && prices.stats.acked === 1 && news.stats.acked === 1);
  assert.equal(broker.frames('NACK').length, 1, 'p1 parked');
  await until('receipts confirmed', () => client.stats.receiptsConfirmed === 3);
  await sleep(30);
  const receipts = broker.sends().flatMap((s) => s.json.receipts);
  assert.deepEqual(receipts.map((r) => r.id).sort(), ['g1', 'g2', 'n1']);
  assert.deepEqual(receipts.find((r) => r.id === 'n1'), { ...receipts.find((r) => r.id === 'n1'), sub: 'news', stream: 'news', offset: 42 });
  assert.equal(receipts.find((r) => r.id === 'g1').stream, undefined);
  assert.equal(events.flatMap((e) => e.receipts).length, 3);
  await client.close();
});

test('receipts: unconfirmed ones stay in storage and go out again after a reconnect; the RECEIPT removes them', async () => {
  const broker = new FakeBroker();
  const storage = memoryStorage();
  const { client, events } = receiptClient(broker, { flushMs: 5 }, { storage });
  const sub = client.subscribe(spec, async () => {});
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.holdReceipts = true;
  for (const id of ['a', 'b']) broker.last.deliver(sub.queueName, id);
  await until('sent', () => broker.sends().length === 1);
  assert.deepEqual(stored(storage).receipts.map((r) => r.id), ['a', 'b'], 'in flight: still stored');
  assert.deepEqual(client.stats, { receiptsSent: 2, receiptsConfirmed: 0, receiptsPending: 2, receiptsDropped: 0 });

  broker.holdReceipts = false;
  broker.last.close(1006, 'cut'); // the RECEIPT never comes
  await until('resent after the reconnect', () => broker.sends().length === 2);
  assert.equal(broker.sockets.length, 2);
  assert.equal(broker.sockets[1].received.filter((f) => f.command === 'SEND').length, 1, 'on the new connection');
  assert.deepEqual(broker.sends()[1].json.receipts, broker.sends()[0].json.receipts, 'the same receipts (handledAt kept)');
  await until('confirmed', () => events.length === 1);
  assert.deepEqual(client.stats, { receiptsSent: 4, receiptsConfirmed: 2, receiptsPending: 0, receiptsDropped: 0 });
  assert.deepEqual(stored(storage).receipts, []);
  await client.close();
});

test('receipts: a reload sends what the old page left unconfirmed (storage), before anything new', async () => {
  const broker = new FakeBroker();
  const storage = memoryStorage();
  const first = receiptClient(broker, { flushMs: 5 }, { storage });
  const sub1 = first.client.subscribe(spec, async () => {});
  await first.client.connect();
  await until('connected', () => first.client.state === 'connected');
  broker.holdReceipts = true;
  for (const id of ['a', 'b']) broker.last.deliver(sub1.queueName, id);
  await until('sent, unconfirmed', () => broker.sends().length === 1);
  const tabId = first.client.tabId;
  await first.client.close(); // pagehide does the same
  broker.holdReceipts = false;

  const second = receiptClient(broker, { flushMs: 5 }, { storage });
  assert.equal(second.client.tabId, tabId);
  assert.equal(second.client.stats.receiptsPending, 2, 'loaded from storage');
  const sub2 = second.client.subscribe(spec, async () => {});
  await second.client.connect();
  await until('resent', () => second.events.length === 1);
  const resent = broker.sends()[1];
  assert.equal(resent.json.tab, tabId);
  assert.deepEqual(resent.json.receipts, broker.sends()[0].json.receipts);
  broker.last.deliver(sub2.queueName, 'c');
  await until('c confirmed', () => second.events.length === 2);
  assert.deepEqual(sentIds(broker), ['a', 'b', 'a', 'b', 'c']);
  assert.deepEqual(stored(storage).receipts, []);
  await second.client.close();
});

test('receipts: when the ACK could not be written (the connection ended during the handler) the receipt is held until the redelivered copy is acked as a duplicate', async () => {
  const broker = new FakeBroker();
  const storage = memoryStorage();
  const { client, events } = receiptClient(broker, { flushMs: 5 }, { storage });
  let release;
  const calls = [];
  const sub = client.subscribe(spec, async (m) => {
    calls.push(m.id);
    await new Promise((r) => (release = r));
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.last.deliver(sub.queueName, 'x');
  await until('handler running', () => calls.length === 1);
  broker.last.close(1006, 'cut');
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  const t0 = Date.now();
  release();
  await until('held', () => client.stats.receiptsPending === 1);
  await sleep(30);
  assert.equal(broker.sends().length, 0, 'not acked: no receipt yet');
  assert.deepEqual(stored(storage).held.map((r) => r.id), ['x'], 'held in storage');
  broker.last.deliver(sub.queueName, 'x', '{}', { redelivered: 'true' });
  await until('receipt after the duplicate was acked', () => events.length === 1);
  assert.deepEqual(calls, ['x'], 'the handler ran once');
  assert.equal(sub.stats.duplicates, 1);
  const [r] = broker.sends()[0].json.receipts;
  assert.equal(r.id, 'x');
  assert.ok(r.at >= t0 && r.at < Date.now(), 'handledAt: when the handler resolved');
  assert.deepEqual(stored(storage), { v: 1, receipts: [], held: [] });
  // A later duplicate sends nothing more.
  broker.last.deliver(sub.queueName, 'x', '{}', { redelivered: 'true' });
  await until('acked', () => sub.stats.duplicates === 2);
  await sleep(30);
  assert.equal(broker.sends().length, 1);
  await client.close();
});

test('receipts: connections that keep ending with receipts unconfirmed (a refused SEND closes the socket) back off the resends; messages keep flowing', async () => {
  for (let n = 1; n <= 12; n++) {
    const cap = Math.min(300000, 1000 * 2 ** (n - 1));
    assert.equal(resendDelay(n, () => 0), cap / 2);
    assert.equal(resendDelay(n, () => 0.999999), Math.floor(cap / 2 + Math.floor(0.999999 * cap) / 2));
  }
  const broker = new FakeBroker();
  const { client, events } = receiptClient(broker, { flushMs: 5 });
  const handled = [];
  const sub = client.subscribe(spec, async (m) => void handled.push(m.id));
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.sendCloses = true;
  broker.last.deliver(sub.queueName, 'a');
  await until('first SEND and the resend at once', () => broker.frames('SEND').length === 2, 2000);
  await until('connected again', () => client.state === 'connected' && broker.last.readyState === 1);
  // The back-off started when this connection came up, so after it was created:
  // the resend may come no earlier than createdAt + 500 ms (timestamps, not a
  // sleep, so a stalled test process cannot make it fail or pass wrongly).
  const third = broker.last;
  broker.sendCloses = false;
  broker.last.deliver(sub.queueName, 'b');
  await until('b handled meanwhile', () => handled.includes('b'));
  await until('sent once the back-off ended, confirmed', () => events.length === 1, 3000);
  const sends = broker.frames('SEND');
  assert.equal(sends.length, 3);
  const waited = sends[2].at - third.createdAt;
  assert.ok(waited >= 500, `the second resend waited ${waited} ms after its connection was created, want at least 500`);
  assert.equal(broker.last, third, 'the connection stayed up meanwhile');
  assert.equal(broker.sockets.length, 3);
  assert.deepEqual(events[0].receipts.map((r) => r.id), ['a', 'b']);
  await client.close();
});

test('receipts: at most maxPending kept: beyond it the oldest unsent ones are dropped (stats.receiptsDropped); in flight ones are kept', async () => {
  const storage = memoryStorage();
  const at = Date.now();
  storage.setItem('durablews.tabId', 'abcdefghijklmnopqrstuvwxyz');
  storage.setItem(KEY, JSON.stringify({ v: 1, receipts: ['r1', 'r2', 'r3', 'r4', 'r5'].map((id) => ({ id, sub: 'orders', at })), held: [] }));
  const broker = new FakeBroker();
  const { client, events } = receiptClient(broker, { flushMs: 5, maxBatch: 2, maxPending: 3 }, { storage });
  assert.deepEqual(client.stats, { receiptsSent: 0, receiptsConfirmed: 0, receiptsPending: 3, receiptsDropped: 2 });
  const sub = client.subscribe(spec, async () => {});
  broker.holdReceipts = true;
  await client.connect();
  await until('sent', () => broker.sends().length === 2);
  assert.deepEqual(broker.sends().map((s) => s.json.receipts.map((r) => r.id)), [['r3', 'r4'], ['r5']], 'the three newest, maxBatch per SEND');
  broker.last.deliver(sub.queueName, 'n1'); // a 4th unconfirmed: the oldest unsent is n1 itself
  await until('acked', () => sub.stats.acked === 1);
  assert.equal(client.stats.receiptsDropped, 3);
  assert.equal(client.stats.receiptsPending, 3);
  for (const id of broker.heldReceipts) broker.last.push(`RECEIPT\nreceipt-id:${id}\n\n\0`);
  await until('confirmed', () => events.length === 2);
  assert.equal(client.stats.receiptsPending, 0);
  // garbage in storage is ignored
  storage.setItem(KEY, '{"v":1,"receipts":[{"id":1},null,{"id":"ok","sub":"orders","at":5}],"held":"x"}');
  assert.equal(receiptClient(new FakeBroker(), {}, { storage }).client.stats.receiptsPending, 1);
  storage.setItem(KEY, 'not json');
  assert.equal(receiptClient(new FakeBroker(), {}, { storage }).client.stats.receiptsPending, 0);
  await client.close();
});

test('receipts: tab-session mode sends to the session\'s receipts destination (userKey/exchange ignored); a session without receipts sends none', async () => {
  for (const withReceipts of [true, false]) {
    const broker = new FakeBroker();
    const srv = fakeSessionServer();
    const base = srv.next;
    srv.next = (req) => {
      const r = base(req);
      if (withReceipts) r.body.receipts = { destination: `/exchange/durablews.receipts/0123456789abcdef.${r.body.tab_id}`, user_key: '0123456789abcdef' };
      return r;
    };
    const { client } = newSessionClient(broker, srv, { receipts: { userKey: 'ignored', exchange: 'ignored', flushMs: 5 } });
    const events = [];
    client.on('receipt', (e) => events.push(e));
    const sub = client.subscribe({ name: 'events' }, async () => {});
    await client.connect();
    await until('connected', () => client.state === 'connected');
    broker.last.deliver('durablews-events', 'u-1');
    await until('acked', () => sub.stats.acked === 1);
    if (withReceipts) {
      await until('confirmed', () => events.length === 1);
      const [s] = broker.sends();
      assert.equal(s.headers.destination, `/exchange/durablews.receipts/0123456789abcdef.${client.tabId}`);
      assert.equal(s.json.tab, client.tabId);
      assert.deepEqual(events[0].receipts.map((r) => [r.id, r.subscription]), [['u-1', 'events']]);
    } else {
      await sleep(30);
      assert.equal(broker.frames('SEND').length, 0);
      assert.deepEqual(client.stats, { receiptsSent: 0, receiptsConfirmed: 0, receiptsPending: 0, receiptsDropped: 0 });
    }
    await client.close();
  }
});

test('receipts: the session\'s receipts field is checked (user_key, destination /exchange/<exchange>/<user_key>.<tab_id>)', () => {
  const base = {
    tab_id: 'abcdefghij', url: 'ws://h/ws', queue: 'q', destination: '/amq/queue/q', token: 't', expires_at: new Date().toISOString(),
  };
  assert.equal(parseSession(base).receipts, null);
  assert.deepEqual(parseSession({ ...base, receipts: { destination: '/exchange/durablews.receipts/k1.abcdefghij', user_key: 'k1' } }).receipts, {
    destination: '/exchange/durablews.receipts/k1.abcdefghij',
    userKey: 'k1',
  });
  for (const receipts of [
    'x',
    { destination: '/exchange/durablews.receipts/k1.abcdefghij' },
    { destination: '/exchange/durablews.receipts/k1.other', user_key: 'k1' },
    { destination: '/queue/k1.abcdefghij', user_key: 'k1' },
    { destination: '/exchange/durablews.receipts/k2.abcdefghij', user_key: 'k1' },
    { destination: '/exchange/x/k.1.abcdefghij', user_key: 'k.1' },
  ]) {
    assert.throws(() => parseSession({ ...base, receipts }), /tab session response: receipts/, JSON.stringify(receipts));
  }
});

test('receipts: options are validated with clear errors', () => {
  const mk = (receipts, extra = {}) => new DurableClient({ url: 'ws://x/ws', storage: memoryStorage(), receipts, ...extra });
  assert.throws(() => mk('alice'), /receipts must be an object/);
  assert.throws(() => mk({ user_key: 'a' }), /receipts.user_key is not an option/);
  assert.throws(() => mk({ userKey: 'a.b' }), /receipts.userKey must match/);
  assert.throws(() => mk({ userKey: 'x'.repeat(65) }), /receipts.userKey/);
  assert.throws(() => mk({ userKey: 'a', exchange: '' }), /receipts.exchange/);
  assert.throws(() => mk({ userKey: 'a', flushMs: -1 }), /receipts.flushMs/);
  assert.throws(() => mk({ userKey: 'a', maxBatch: 0 }), /receipts.maxBatch must be an integer in 1..1000/);
  assert.throws(() => mk({ userKey: 'a', maxBatch: 1001 }), /receipts.maxBatch/);
  assert.throws(() => mk({ userKey: 'a', maxBatch: 50, maxPending: 10 }), /receipts.maxPending/);
  mk({ userKey: 'a-B_9', exchange: 'r', flushMs: 0, maxBatch: 1, maxPending: 1 });
  // tab-session mode: userKey and exchange are the session's business, not checked
  new DurableClient({ session: { url: '/s', fetch: async () => ({}) }, storage: memoryStorage(), receipts: { userKey: 'a.b' } });

  const without = mk(undefined);
  assert.throws(() => without.subscribe({ ...spec, receipts: true }, () => {}), /receipts: true needs .*receipts: \{userKey\}/);
  without.subscribe({ ...spec, receipts: false }, () => {});
  const withKey = mk({ userKey: 'a' });
  assert.throws(() => withKey.subscribe({ ...spec, receipts: 'yes' }, () => {}), /receipts must be true or false/);
  assert.deepEqual(without.stats, { receiptsSent: 0, receiptsConfirmed: 0, receiptsPending: 0, receiptsDropped: 0 });
});

test('receipts: a held receipt is superseded when the redelivered copy is handled again (its id had left the de-dup window)', async () => {
  const broker = new FakeBroker();
  const { client, events } = receiptClient(broker, { flushMs: 5 }, { dedupWindow: 0 });
  let release;
  const calls = [];
  const sub = client.subscribe(spec, async (m) => {
    calls.push(m.id);
    if (calls.length === 1) await new Promise((r) => (release = r));
  });
  await client.connect();
  await until('connected', () => client.state === 'connected');
  broker.last.deliver(sub.queueName, 'x');
  await until('handler running', () => calls.length === 1);
  broker.last.close(1006, 'cut');
  await until('reconnected', () => broker.sockets.length === 2 && client.state === 'connected');
  release();
  await until('held', () => client.stats.receiptsPending === 1);
  broker.last.deliver(sub.queueName, 'x', '{}', { redelivered: 'true' });
  await until('confirmed', () => events.length === 1);
  assert.deepEqual(calls, ['x', 'x'], 'no de-dup window: handled again');
  assert.deepEqual(sentIds(broker), ['x']);
  assert.equal(client.stats.receiptsPending, 0, 'the held one is gone');
  await client.close();
});
