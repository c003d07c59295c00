import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DedupWindow,
  backoffDelay,
  exchangeDestination,
  generateTabId,
  isValidTabId,
  messageKey,
  normalizeSpec,
  onClaim,
  parsePosition,
  parseSession,
  queueName,
  routingKeyOf,
  streamDestination,
  streamOffsetHeader,
  streamOffsetOf,
  streamStep,
  streamSubscribeHeaders,
  subscribeHeaders,
  topicMatcher,
  urlList,
} from '../internal.js';

test('backoffDelay: cap doubles from initialMs and stops at maxMs', () => {
  const o = { initialMs: 500, maxMs: 30000 };
  const max = () => 0.999999999;
  assert.equal(backoffDelay(1, o, max), 499);
  assert.equal(backoffDelay(2, o, max), 999);
  assert.equal(backoffDelay(3, o, max), 1999);
  assert.equal(backoffDelay(7, o, max), 29999); // 500*64 = 32000 > cap
  assert.equal(backoffDelay(1000, o, max), 29999); // no overflow
  assert.equal(backoffDelay(5, o, () => 0), 0);
  assert.equal(backoffDelay(2, o, () => 0.5), 500);
});

test('backoffDelay: full jitter stays within [0, cap] and defaults apply', () => {
  for (let a = 1; a < 40; a++) {
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(a);
      assert.ok(d >= 0 && d <= Math.min(30000, 500 * 2 ** (a - 1)), `attempt ${a}: ${d}`);
      assert.ok(Number.isInteger(d));
    }
  }
  assert.equal(backoffDelay(0, {}, () => 0.999), 499); // attempt < 1 treated as 1
  assert.equal(backoffDelay(1, {}, () => 7), 500); // random clamped
});

test('backoffDelay: mean grows, so repeated fast failures do not spin', () => {
  const mean = (a) => {
    let s = 0;
    for (let i = 0; i < 2000; i++) s += backoffDelay(a, { initialMs: 500, maxMs: 30000 });
    return s / 2000;
  };
  assert.ok(mean(1) < 400 && mean(1) > 100);
  assert.ok(mean(6) > 5000);
});

test('DedupWindow: remembers, evicts oldest, refreshes on re-add', () => {
  const w = new DedupWindow(3);
  w.add('a');
  w.add('b');
  w.add('c');
  assert.ok(w.has('a') && w.has('b') && w.has('c'));
  w.add('a'); // refresh a: order b, c, a
  w.add('d'); // evicts b
  assert.ok(!w.has('b'));
  assert.ok(w.has('a') && w.has('c') && w.has('d'));
  assert.equal(w.length, 3);
});

test('DedupWindow: empty/undefined ids are never duplicates; size 0 disables', () => {
  const w = new DedupWindow(10);
  w.add(undefined);
  w.add('');
  assert.equal(w.length, 0);
  assert.ok(!w.has(undefined) && !w.has(''));
  const off = new DedupWindow(0);
  off.add('x');
  assert.ok(!off.has('x'));
  assert.throws(() => new DedupWindow(-1), TypeError);
  assert.throws(() => new DedupWindow(1.5), TypeError);
});

test('DedupWindow: bounded at size under load', () => {
  const w = new DedupWindow(1000);
  for (let i = 0; i < 5000; i++) w.add(`id-${i}`);
  assert.equal(w.length, 1000);
  assert.ok(w.has('id-4999') && w.has('id-4000') && !w.has('id-3999'));
});

test('generateTabId: 26 chars of lowercase base32, unique, deterministic with injected bytes', () => {
  const ids = new Set();
  for (let i = 0; i < 1000; i++) {
    const id = generateTabId();
    assert.match(id, /^[a-z2-7]{26}$/);
    assert.ok(isValidTabId(id));
    ids.add(id);
  }
  assert.equal(ids.size, 1000);
  const zeros = generateTabId((b) => b.fill(0));
  assert.equal(zeros, 'a'.repeat(26));
  const ones = generateTabId((b) => b.fill(255));
  assert.equal(ones, '7'.repeat(25) + '4'); // 128 bits: last char holds 3 bits
});

test('isValidTabId rejects junk from storage', () => {
  for (const bad of [null, undefined, '', 'short', 'ABCDEFGHIJ', 'abc-defghij', 'a'.repeat(65), 42]) {
    assert.equal(isValidTabId(bad), false, String(bad));
  }
});

test('queueName: tab-<tabId>-<name>, validated, <= 255 bytes', () => {
  const id = 'abcdefghijklmnopqrstuvwxyz';
  assert.equal(queueName('tab', id, 'orders'), `tab-${id}-orders`);
  assert.equal(queueName('tab-alice', id, 'orders_v2.x'), `tab-alice-${id}-orders_v2.x`);
  assert.throws(() => queueName('tab', id, 'a/b'), TypeError);
  assert.throws(() => queueName('tab', id, ''), TypeError);
  assert.throws(() => queueName('tab', id, 'ordérs'), TypeError);
  assert.throws(() => queueName('amq.tab', id, 'x'), TypeError);
  assert.throws(() => queueName('tab', 'NOT-AN-ID', 'x'), TypeError);
  const longest = 'n'.repeat(255 - `tab-${id}-`.length);
  assert.equal(queueName('tab', id, longest).length, 255);
  assert.throws(() => queueName('tab', id, longest + 'n'), TypeError);
});

test('exchangeDestination escapes "/" as %2F and handles fanout', () => {
  assert.equal(exchangeDestination('events', 'customer.42.#'), '/exchange/events/customer.42.#');
  assert.equal(exchangeDestination('fan'), '/exchange/fan');
  assert.equal(exchangeDestination('a/b', 'x/y.*'), '/exchange/a%2Fb/x%2Fy.*');
  assert.throws(() => exchangeDestination(''), TypeError);
  assert.throws(() => exchangeDestination('e', 'a\nb'), TypeError);
});

test('normalizeSpec: defaults and bounds', () => {
  const s = normalizeSpec({ exchange: 'events', bindingKey: 'customer.42.#', name: 'orders' });
  assert.equal(s.expiresMs, 3600000);
  assert.equal(s.prefetch, 10);
  assert.equal(s.destination, '/exchange/events/customer.42.#');
  assert.ok(Object.isFrozen(s));
  assert.throws(() => normalizeSpec({ exchange: 'e', name: 'n', prefetch: 0 }), TypeError);
  assert.throws(() => normalizeSpec({ exchange: 'e', name: 'n', prefetch: 1001 }), TypeError);
  assert.throws(() => normalizeSpec({ exchange: 'e', name: 'n', prefetch: 2.5 }), TypeError);
  assert.throws(() => normalizeSpec({ exchange: 'e', name: 'n', expiresMs: 0 }), TypeError);
  assert.throws(() => normalizeSpec({ exchange: 'e', name: 'n', expiresMs: '1000' }), TypeError);
  assert.throws(() => normalizeSpec({ exchange: 'e' }), TypeError);
  assert.throws(() => normalizeSpec(null), TypeError);
});

test('subscribeHeaders: exact header set, all strings, stable', () => {
  const spec = normalizeSpec({ exchange: 'events', bindingKey: 'customer.42.#', name: 'orders', expiresMs: 1800000, prefetch: 5 });
  const q = 'tab-abcdefghijklmnopqrstuvwxyz-orders';
  const h = subscribeHeaders(spec, q);
  assert.deepEqual(h, {
    destination: '/exchange/events/customer.42.#',
    id: q,
    'x-queue-name': q,
    durable: 'true',
    'auto-delete': 'false',
    exclusive: 'false', // RabbitMQ 4.x: without it the queue dies with the connection
    'x-expires': '1800000',
    ack: 'client-individual',
    'prefetch-count': '5',
  });
  for (const v of Object.values(h)) assert.equal(typeof v, 'string');
  assert.deepEqual(subscribeHeaders(spec, q), h);
});

test('messageKey prefers amqp-message-id, falls back to _watermill_message_uuid', () => {
  assert.equal(messageKey({ 'amqp-message-id': 'a', _watermill_message_uuid: 'b' }), 'a');
  assert.equal(messageKey({ _watermill_message_uuid: 'b' }), 'b');
  assert.equal(messageKey({ 'message-id': 'T_x@@y@@1' }), undefined);
  assert.equal(messageKey({ 'amqp-message-id': '' }), undefined);
});

test('onClaim: owner answers, lower nonce wins between claimants, others ignored', () => {
  const claim = { tabId: 't1', nonce: 'm' };
  assert.equal(onClaim({ tabId: 't2', nonce: 'a', owned: true }, claim), 'ignore');
  assert.equal(onClaim({ tabId: 't1', nonce: 'm', owned: false }, claim), 'ignore');
  assert.equal(onClaim({ tabId: 't1', nonce: 'z', owned: true }, claim), 'reply-taken');
  assert.equal(onClaim({ tabId: 't1', nonce: 'a', owned: false }, claim), 'reply-taken');
  assert.equal(onClaim({ tabId: 't1', nonce: 'z', owned: false }, claim), 'yield');
});

test('topicMatcher: * is one word, # zero or more, as a topic exchange matches', () => {
  const cases = [
    ['customer.*.order_paid', 'customer.42.order_paid', true],
    ['customer.*.order_paid', 'customer.42.x.order_paid', false],
    ['customer.*.order_paid', 'customer.order_paid', false],
    ['customer.#', 'customer', true],
    ['customer.#', 'customer.42.order_paid', true],
    ['customer.#', 'customers.42', false],
    ['#', '', true],
    ['#', 'a.b.c', true],
    ['#.paid', 'a.b.paid', true],
    ['#.paid', 'paid', true],
    ['a.#.z', 'a.z', true],
    ['a.#.z', 'a.b.c.z', true],
    ['a.#.z', 'a.b.c', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['a.*.#', 'a', false],
    ['a.*.#', 'a.b', true],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
  ];
  for (const [p, k, want] of cases) assert.equal(topicMatcher(p)(k), want, `${p} ~ ${k}`);
  assert.throws(() => topicMatcher(''), TypeError);
});

test('routingKeyOf: routing_key header first, else from the MESSAGE destination', () => {
  assert.equal(routingKeyOf({ routing_key: 'a.b', destination: '/exchange/ex/x.y' }), 'a.b');
  assert.equal(routingKeyOf({ destination: '/exchange/ex/customer.42.paid' }), 'customer.42.paid');
  assert.equal(routingKeyOf({ destination: '/exchange/ex/a%2Fb' }), 'a/b');
  assert.equal(routingKeyOf({ destination: '/queue/q1' }), 'q1');
  assert.equal(routingKeyOf({ destination: '/topic/t.x' }), 't.x');
  assert.equal(routingKeyOf({}), '');
});

test('parseSession: v 1 or absent accepted; another version refused naming both', () => {
  const ok = {
    tab_id: 'abcdefgh12', url: 'wss://h/ws', vhost: 'v', queue: 'q', destination: '/amq/queue/q', token: 't',
    expires_at: '2030-01-01T00:00:00Z', renew_in: 10, queue_created: true,
  };
  assert.equal(parseSession({ ...ok, v: 1 }).queue, 'q');
  assert.equal(parseSession(ok).queueCreated, true);
  for (const v of [2, 0, '1', null]) {
    assert.throws(() => parseSession({ ...ok, v }), (e) => e.unsupportedVersion === true && /version .* understands version 1/.test(e.message));
  }
});

test('streamStep: gap only on the first MESSAGE of an offset=<last> SUBSCRIBE beyond last+1; skip <= last', () => {
  const last7 = { kind: 'last', offset: 7 };
  assert.deepEqual(streamStep(last7, 7, true, 7), { gap: null, skip: true }, 'the repeated frame of a resume');
  assert.deepEqual(streamStep(last7, 7, true, 8), { gap: null, skip: false }, 'last+1: nothing missed');
  assert.deepEqual(streamStep(last7, 7, true, 12), { gap: { from: 8, to: 11 }, skip: false });
  assert.deepEqual(streamStep(last7, 9, false, 12), { gap: null, skip: false }, 'offsets skip inside a subscription: no gap');
  assert.deepEqual(streamStep(last7, 9, false, 9), { gap: null, skip: true });
  assert.deepEqual(streamStep({ kind: 'timestamp', ts: 1 }, null, true, 500), { gap: null, skip: false });
  assert.deepEqual(streamStep({ kind: 'next' }, null, true, 0), { gap: null, skip: false });
});

test('parsePosition / streamOffsetHeader: broadcast.Position JSON and the x-stream-offset values', () => {
  assert.equal(streamOffsetHeader(parsePosition({ last: 12 })), 'offset=12');
  assert.equal(streamOffsetHeader(parsePosition({ timestamp: 1700000000 })), 'timestamp=1700000000');
  assert.equal(streamOffsetHeader(parsePosition({ first: true })), 'first');
  assert.equal(streamOffsetHeader(parsePosition('first')), 'first');
  assert.equal(streamOffsetHeader(parsePosition('next')), 'next');
  assert.equal(streamOffsetHeader(parsePosition(undefined)), 'next');
  for (const bad of [{ last: -1 }, { last: 1.5 }, { timestamp: '1' }, 'last', 7, {}]) {
    assert.throws(() => parsePosition(bad, 'start'), /start must be 'next', 'first', \{last: <offset>\}/);
  }
  assert.equal(streamOffsetOf({ 'x-stream-offset': '42' }), 42);
  assert.equal(streamOffsetOf({ 'x-stream-offset': '-1' }), undefined);
  assert.equal(streamOffsetOf({}), undefined);
  assert.deepEqual(streamSubscribeHeaders({ stream: 'p', prefetch: 3 }, streamDestination('p'), { kind: 'last', offset: 5 }), {
    destination: '/amq/queue/p', id: 'stream-p', ack: 'client-individual', 'prefetch-count': '3', 'x-stream-offset': 'offset=5',
  });
});

test('urlList and parseSession urls/streams', () => {
  assert.deepEqual(urlList('ws://a/ws'), ['ws://a/ws']);
  assert.deepEqual(urlList(['ws://a/ws', 'wss://b/ws']), ['ws://a/ws', 'wss://b/ws']);
  assert.throws(() => urlList([]), /non-empty list/);
  assert.throws(() => urlList(['ws://a/ws', 'x']), /invalid url "x"/);
  const base = {
    tab_id: 'abcdefgh12345678', url: 'ws://a/ws', queue: 'tab-x', destination: '/amq/queue/tab-x', token: 't',
  };
  const s = parseSession({ ...base, urls: ['ws://a/ws', 'ws://b/ws'], streams: [{ name: 'prices', destination: '/amq/queue/prices', start: { last: 3 } }] });
  assert.deepEqual(s.urls, ['ws://a/ws', 'ws://b/ws']);
  assert.deepEqual(s.streams.get('prices'), { destination: '/amq/queue/prices', start: { kind: 'last', offset: 3 } });
  assert.deepEqual(parseSession(base).urls, ['ws://a/ws']);
  assert.equal(parseSession(base).streams.size, 0);
  assert.throws(() => parseSession({ ...base, urls: ['http://a'] }), /tab session response: urls must be ws: or wss:/);
  assert.throws(() => parseSession({ ...base, streams: {} }), /streams is not an array/);
  assert.throws(() => parseSession({ ...base, streams: [{ name: 'p', destination: '/amq/queue/p', start: 'x' }] }), /stream p: start must be/);
});
