// End-to-end test: real headless Chromium + real RabbitMQ (Web-STOMP on :15674,
// management API on :15672). Opt-in, because it needs both:
//
//   DURABLEWS_E2E=1 npm test            (from web/; make test sets it)
//
// The page test/e2e.html loads ../durablews.js through an import map, exactly as
// an app would, reports every event to the harness server and polls it for
// commands (test/e2e-harness.js, which also reads the env settings).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ENABLED, WS_URL, sleep, api, enc, publish, e2eSetup, launchChromium, available,
} from './e2e-harness.js';

test('DurableClient in headless Chromium against RabbitMQ Web-STOMP', { skip: !ENABLED && 'set DURABLEWS_E2E=1', timeout: 240000 }, async (t) => {
  // Enabled (make test sets DURABLEWS_E2E=1) but the broker is missing: fail
  // loudly, a skipped browser test would hide a broken setup in CI.
  const why = await available();
  if (why) throw new Error(`${why}: run \`make broker\` (scripts/rabbitmq.sh) first`);

  const run = Math.random().toString(36).slice(2, 8);
  const ex = `dw-e2e-${run}`;
  const missing = `dw-e2e-missing-${run}`;
  await api('PUT', `/api/exchanges/%2F/${ex}`, { type: 'topic', durable: true });

  const { events, send, port, browsers, queues } = await e2eSetup(t, [ex, missing]);

  // Reports are concurrent fetches and may arrive out of order: order them by
  // the page's clock, then its per-document sequence number.
  const of = (tag, type) => events
    .filter((e) => e.tag === tag && (!type || e.type === type))
    .sort((a, b) => a.t - b.t || a.seq - b.seq);
  async function waitFor(what, pred, ms = 15000) {
    const end = Date.now() + ms;
    for (;;) {
      const v = await pred();
      if (v) return v;
      if (Date.now() > end) {
        const tail = events.slice(-30).map((e) => JSON.stringify(e)).join('\n');
        throw new Error(`timeout waiting for ${what}; last events:\n${tail}`);
      }
      await sleep(50);
    }
  }
  const handled = (tag, id) => of(tag, 'handle-start').filter((e) => e.id === id).length;
  const lastState = (tag) => of(tag, 'state').at(-1)?.state;
  async function stats(tag) {
    const n = of(tag, 'stats').length;
    send(tag, { op: 'stats' });
    return (await waitFor(`stats of ${tag}`, () => of(tag, 'stats')[n])).stats;
  }
  async function queueInfo(q, pred = () => true, ms = 15000) {
    // management stats refresh every ~5 s, so poll
    const end = Date.now() + ms;
    for (;;) {
      const info = await api('GET', `/api/queues/%2F/${enc(q)}`);
      if (info && pred(info)) return info;
      if (Date.now() > end) {
        throw new Error(`queue ${q} never matched; last: ${JSON.stringify(info && { messages: info.messages, unacked: info.messages_unacknowledged, consumers: info.consumers })}`);
      }
      await sleep(500);
    }
  }
  async function killConnectionOf(q) {
    // A consumer is listed before its channel's details arrive (the management
    // stats come every collect_statistics_interval, later on a busy broker):
    // without the name the DELETE below is a silent 404 and nothing is killed.
    const info = await queueInfo(q, (i) => i.consumer_details?.[0]?.channel_details?.connection_name);
    const conn = info.consumer_details[0].channel_details.connection_name;
    await api('DELETE', `/api/connections/${enc(conn)}`);
    return conn;
  }

  const page = (tag, params = {}) => {
    const u = new URL(`http://127.0.0.1:${port}/web/test/e2e.html`);
    u.search = new URLSearchParams({ tag, url: WS_URL, exchange: ex, bindingKey: 'customer.42.#', name: 'orders', ...params }).toString();
    return u.href;
  };

  // ---------- A: subscribe, headers, queue arguments ----------
  browsers.push(launchChromium(page('A', { slow: 'm21:3000', fail: 'p1', initialMs: '300', maxMs: '3000' })));
  const ready = await waitFor('A ready', () => of('A', 'ready')[0], 20000);
  await waitFor('A connected', () => lastState('A') === 'connected');
  const claimed = of('A', 'claimed')[0];
  const qA = claimed.queue;
  queues.add(qA);
  assert.match(claimed.tabId, /^[a-z2-7]{26}$/);
  assert.equal(qA, `tab-${claimed.tabId}-orders`);
  assert.deepEqual(ready.headers, {
    destination: `/exchange/${ex}/customer.42.#`,
    id: qA,
    'x-queue-name': qA,
    durable: 'true',
    'auto-delete': 'false',
    exclusive: 'false',
    'x-expires': '3600000',
    ack: 'client-individual',
    'prefetch-count': '10',
  });
  assert.ok(of('A', 'debug').some((e) => /runWorker/.test(e.m)), 'heart-beats should run in a Worker');
  let info = await queueInfo(qA, (i) => i.consumer_details?.length === 1);
  assert.equal(info.durable, true);
  assert.equal(info.auto_delete, false);
  assert.equal(info.exclusive, false);
  // RabbitMQ 4.x names the type it gave a queue declared without one.
  const { 'x-queue-type': queueType = 'classic', ...args } = info.arguments;
  assert.equal(queueType, 'classic');
  assert.deepEqual(args, { 'x-expires': 3600000 });
  assert.equal(info.consumer_details[0].prefetch_count, 10);
  assert.equal(info.consumer_details[0].ack_required, true);
  assert.equal(info.consumer_details[0].consumer_tag, `T_${qA}`);
  const bindings = await api('GET', `/api/queues/%2F/${enc(qA)}/bindings`);
  assert.ok(bindings.some((b) => b.source === ex && b.routing_key === 'customer.42.#'));

  // ---------- 20 messages + 2 duplicates + 5 non-matching ----------
  for (let i = 1; i <= 20; i++) await publish(ex, 'customer.42.order_created', `m${i}`, { n: i });
  for (let i = 1; i <= 5; i++) await api('POST', `/api/exchanges/%2F/${ex}/publish`, { routing_key: 'customer.43.order_created', payload: '{}', payload_encoding: 'string', properties: { message_id: `other${i}` } });
  await publish(ex, 'customer.42.order_created', 'm5', { n: 5, dup: true });
  await publish(ex, 'customer.42.order_created', 'm7', { n: 7, dup: true });
  await waitFor('m1..m20 handled', () => of('A', 'handled').length >= 20);
  await waitFor('2 duplicates dropped', async () => (await stats('A')).duplicates === 2);
  for (let i = 1; i <= 20; i++) assert.equal(handled('A', `m${i}`), 1, `m${i} handled once`);
  assert.deepEqual(of('A', 'handle-start').slice(0, 20).map((e) => e.id), Array.from({ length: 20 }, (_, i) => `m${i + 1}`), 'in order');
  assert.equal(of('A', 'handle-start').filter((e) => e.id.startsWith('other')).length, 0);
  const first = of('A', 'handle-start')[0];
  assert.equal(first.rk, 'customer.42.order_created');
  assert.deepEqual(first.body, { n: 1 });
  t.diagnostic(`A: stats after 22 deliveries ${JSON.stringify(await stats('A'))}`);

  // ---------- kill the connection while a handler is running ----------
  await publish(ex, 'customer.42.order_created', 'm21', { n: 21 });
  await waitFor('m21 started', () => handled('A', 'm21') === 1);
  const stateCount = of('A', 'state').length;
  await killConnectionOf(qA);
  await waitFor('A reconnecting', () => of('A', 'state').slice(stateCount).some((e) => e.state === 'reconnecting'));
  await waitFor('A reconnected', () => of('A', 'state').slice(stateCount).some((e) => e.state === 'connected'));
  await waitFor('m21 redelivery deduped', async () => (await stats('A')).duplicates === 3, 10000);
  assert.equal(handled('A', 'm21'), 1, 'm21 handler called once despite redelivery');
  const rec = of('A', 'state').slice(stateCount).find((e) => e.state === 'reconnecting');
  t.diagnostic(`A: after connection kill: ${JSON.stringify(rec)}`);
  await queueInfo(qA, (i) => i.messages === 0 && i.consumers === 1);

  // ---------- publish while the tab is closed, then reconnect ----------
  send('A', { op: 'close' });
  await waitFor('A closed', () => of('A', 'closed').length === 1);
  await queueInfo(qA, (i) => i.consumers === 0);
  for (let i = 22; i <= 26; i++) await publish(ex, 'customer.42.order_created', `m${i}`, { n: i });
  send('A', { op: 'connect' });
  await waitFor('m22..m26 after reconnect', () => [22, 23, 24, 25, 26].every((i) => handled('A', `m${i}`) === 1));

  // ---------- reload: same tab id, same queue, messages sent during reload arrive ----------
  const beforeReload = of('A', 'ready').length;
  send('A', { op: 'reload' });
  await waitFor('A reloaded', () => of('A', 'ready').length === beforeReload + 1, 20000);
  for (let i = 27; i <= 30; i++) await publish(ex, 'customer.42.order_created', `m${i}`, { n: i });
  const afterReload = of('A', 'ready').at(-1);
  assert.equal(afterReload.storedBefore, claimed.tabId, 'sessionStorage kept the tab id');
  assert.equal(afterReload.queue, qA);
  await waitFor('m27..m30 after reload', () => [27, 28, 29, 30].every((i) => handled('A', `m${i}`) === 1));

  // ---------- poison message: parked (NACK requeue:false), no hot loop, the queue goes on ----------
  await publish(ex, 'customer.42.order_created', 'p1', { poison: true });
  await publish(ex, 'customer.42.order_created', 'm31', { n: 31 });
  await waitFor('m31 handled after poison', () => handled('A', 'm31') === 1);
  const failedP1 = await waitFor('p1 reported failed', () => of('A', 'failed').find((e) => e.id === 'p1'));
  assert.equal(failedP1.action, 'park');
  assert.equal(failedP1.attempts, 1);
  assert.equal(of('A', 'handler-error').filter((e) => e.id === 'p1').length, 1);
  // The broker dropped it (no dead-letter exchange on this queue): nothing unacked, nothing ready.
  info = await queueInfo(qA, (i) => i.messages === 0 && i.messages_unacknowledged === 0);
  assert.equal(handled('A', 'p1'), 1, 'poison handled once, not spinning');
  assert.equal((await stats('A')).parked, 1);

  // ---------- duplicated tab: sessionStorage copied, new id picked ----------
  send('A', { op: 'open', tag: 'B' });
  const readyB = await waitFor('B ready', () => of('B', 'ready')[0], 20000);
  const claimedB = await waitFor('B claimed', () => of('B', 'claimed')[0]);
  queues.add(claimedB.queue);
  const tabA = of('A', 'claimed').at(-1).tabId;
  assert.equal(readyB.storedBefore, tabA, 'window.open copied sessionStorage (duplicate id)');
  assert.notEqual(claimedB.tabId, tabA, 'duplicate tab picked a new id');
  await waitFor('B connected', () => lastState('B') === 'connected');
  await publish(ex, 'customer.42.shipped', 'm40', { n: 40 });
  await waitFor('m40 in A and B', () => handled('A', 'm40') === 1 && handled('B', 'm40') === 1);

  // ---------- server-side cancel (queue deleted): ERROR, socket stays open -> forceDisconnect ----------
  const sc = of('B', 'state').length;
  await api('DELETE', `/api/queues/%2F/${enc(claimedB.queue)}`);
  await waitFor('B reconnecting after cancel', () => of('B', 'state').slice(sc).find((e) => e.state === 'reconnecting'));
  await waitFor('B connected again', () => of('B', 'state').slice(sc).some((e) => e.state === 'connected'));
  t.diagnostic(`B: after queue deletion: ${JSON.stringify(of('B', 'state').slice(sc).find((e) => e.state === 'reconnecting'))}`);
  await queueInfo(claimedB.queue, (i) => i.consumers === 1);

  // ---------- failed SUBSCRIBE (missing exchange): exponential back-off, no spin ----------
  browsers.push(launchChromium(page('C', { exchange: missing, initialMs: '250', maxMs: '4000' })));
  await waitFor('C ready', () => of('C', 'ready')[0], 20000);
  await sleep(12000);
  const recC = of('C', 'state').filter((e) => e.state === 'reconnecting');
  t.diagnostic(`C: ${recC.length} failed attempts in ~12 s; errors: ${[...new Set(recC.map((e) => e.error))].join(' | ')}; delays: ${recC.map((e) => e.delayMs).join(',')}`);
  assert.ok(recC.length >= 3 && recC.length <= 15, `attempts ${recC.length}`);
  assert.ok(!of('C', 'state').some((e) => e.state === 'connected'));
  assert.deepEqual(recC.map((e) => e.attempt), recC.map((_, i) => i + 1), 'attempt keeps growing');
  await api('PUT', `/api/exchanges/%2F/${missing}`, { type: 'topic', durable: true });
  await waitFor('C connects once the exchange exists', () => lastState('C') === 'connected', 10000);
  queues.add(of('C', 'claimed')[0].queue);

  // ---------- summary ----------
  const sA = await stats('A');
  const sB = await stats('B');
  t.diagnostic(`A final stats ${JSON.stringify(sA)}; B ${JSON.stringify(sB)}`);
  assert.equal(of('A', 'page-error').length + of('B', 'page-error').length + of('C', 'page-error').length, 0, 'no page errors');
});
