// Browser end-to-end tests of issue 13 (headless Chromium + the real broker,
// DURABLEWS_E2E=1): a failing handler never stalls the subscription, the
// de-dup window survives a reload, a page restored from the back/forward cache
// receives what was published while it was away. Its own file so that node
// --test runs it beside the other browser tests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ENABLED, WS_URL, api, enc, publish, e2eSetup, eventHelpers, launchChromium, available } from './e2e-harness.js';

test('continuity in headless Chromium: poison messages, reload de-dup, back/forward cache', { skip: !ENABLED && 'set DURABLEWS_E2E=1', timeout: 180000 }, async (t) => {
  const why = await available();
  if (why) throw new Error(`${why}: run \`make broker\` (scripts/rabbitmq.sh) first`);
  const ex = `dw-e2e-cont-${Math.random().toString(36).slice(2, 8)}`;
  await api('PUT', `/api/exchanges/%2F/${ex}`, { type: 'topic', durable: true });
  const { events, send, port, browsers, queues } = await e2eSetup(t, [ex]);
  const { of, waitFor, lastState, stats: statsEvent } = eventHelpers(events, send);
  const started = (tag, id) => of(tag, 'handle-start').filter((e) => e.id === id).length;
  const handledIds = (tag) => of(tag, 'handled').map((e) => e.id);
  const stats = async (tag) => (await statsEvent(tag)).stats;
  async function queueInfo(q, pred, ms = 20000) {
    return waitFor(`queue ${q}`, async () => {
      const i = await api('GET', `/api/queues/%2F/${enc(q)}`);
      return i && pred(i) ? i : null;
    }, ms);
  }
  const open = (tag, key, params) => {
    const u = new URL(`http://127.0.0.1:${port}/web/test/e2e.html`);
    u.search = new URLSearchParams({ tag, url: WS_URL, exchange: ex, bindingKey: `${key}.#`, name: tag, ...params }).toString();
    browsers.push(launchChromium(u.href));
  };
  const connected = async (tag) => {
    await waitFor(`${tag} connected`, () => lastState(tag) === 'connected');
    const q = (await waitFor(`${tag} claimed`, () => of(tag, 'claimed').at(-1))).queue;
    queues.add(q);
    return q;
  };

  // Three pages at once, each on its own queue (routing keys p.*, r.*, f.*).
  open('P', 'p', { prefetch: '2', fail: 'p1,p2', attempts: '3', retryMs: '100' });
  open('R', 'r', { slow: 'd1:1500' });
  open('F', 'f', {});
  const [qP, qR, qF] = await Promise.all([connected('P'), connected('R'), connected('F')]);

  // ---------- 1. prefetch 2, two poison messages, then good ones ----------
  await publish(ex, 'p.x', 'p1', { poison: 1 });
  await publish(ex, 'p.x', 'p2', { poison: 2 });
  for (let i = 1; i <= 5; i++) await publish(ex, 'p.x', `g${i}`, { n: i });
  await waitFor('g1..g5 handled behind the poison', () => handledIds('P').length === 5);
  assert.deepEqual(handledIds('P'), ['g1', 'g2', 'g3', 'g4', 'g5']);
  const failed = of('P', 'failed');
  assert.deepEqual(failed.map((e) => [e.id, e.attempts, e.action]), [['p1', 3, 'park'], ['p2', 3, 'park']]);
  assert.match(failed[0].error, /poison p1/);
  assert.deepEqual(of('P', 'retry').map((e) => `${e.id}#${e.attempt}`), ['p1#1', 'p1#2', 'p2#1', 'p2#2']);
  assert.equal(started('P', 'p1'), 3);
  const sP = await stats('P');
  assert.equal(sP.parked, 2);
  assert.equal(sP.retries, 4);
  assert.equal(sP.failed, 6);
  assert.equal(sP.handled, 5);
  await queueInfo(qP, (i) => i.messages === 0 && i.messages_unacknowledged === 0);
  assert.equal(lastState('P'), 'connected', 'no reconnect needed');
  t.diagnostic(`P: stats ${JSON.stringify(sP)}`);

  // ---------- 5. handled, ack lost, reload: the reloaded page drops the redelivery ----------
  await publish(ex, 'r.x', 'd1', { n: 1 });
  await waitFor('d1 started', () => started('R', 'd1') === 1);
  send('R', { op: 'close' }); // its connection ends while d1's handler runs: the ack cannot be sent
  await waitFor('d1 handled after close', () => handledIds('R').includes('d1'));
  await queueInfo(qR, (i) => i.consumers === 0 && i.messages === 1);
  const loads = of('R', 'ready').length;
  send('R', { op: 'reload' });
  await waitFor('R reloaded', () => of('R', 'ready').length === loads + 1);
  await publish(ex, 'r.x', 'd2', { n: 2 });
  await waitFor('d2 handled after reload', () => handledIds('R').includes('d2'));
  await queueInfo(qR, (i) => i.messages === 0 && i.messages_unacknowledged === 0);
  assert.equal(started('R', 'd1'), 1, 'd1 handled once across the reload');
  assert.equal((await stats('R')).duplicates, 1, 'the redelivered d1 was dropped as a duplicate');

  // ---------- 6. back/forward cache: away, published meanwhile, back ----------
  await publish(ex, 'f.x', 'b0', { n: 0 });
  await waitFor('b0', () => handledIds('F').includes('b0'));
  send('F', { op: 'away' });
  await waitFor('F away', () => of('F', 'away').length === 1);
  await queueInfo(qF, (i) => i.consumers === 0);
  for (let i = 1; i <= 3; i++) await publish(ex, 'f.x', `b${i}`, { n: i });
  send('F', { op: 'back' });
  const shown = await waitFor('F shown again', () => of('F', 'pageshow')[1]); // [0]: the first load
  assert.equal(shown.persisted, true, 'restored from the back/forward cache, not reloaded');
  await waitFor('b1..b3 after coming back', () => ['b1', 'b2', 'b3'].every((id) => handledIds('F').includes(id)));
  assert.deepEqual(handledIds('F'), ['b0', 'b1', 'b2', 'b3']);
  assert.equal(of('F', 'ready').length, 1, 'the page was not loaded again');
  const fStates = of('F', 'state').map((e) => `${e.state}${e.reason ? `:${e.reason}` : ''}`);
  assert.deepEqual(fStates, ['connecting', 'connected', 'closed:pagehide', 'connecting', 'connected']);

  for (const tag of ['P', 'R', 'F']) assert.equal(of(tag, 'page-error').length, 0, `${tag}: no page errors`);
});
