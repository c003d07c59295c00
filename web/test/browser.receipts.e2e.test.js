// Delivery receipts (docs/receipts.md, issue 21) end to end: headless
// Chromium, headers mode, against the real broker. The harness declares the
// receipts exchange (topic `durablews.receipts`, as the service does) and a
// durable queue bound to it with `#`, publishes to a tab's queue through the
// management API, lets the page (test/e2e.html with receiptsUserKey) handle
// the messages, then reads the receipts queue through the management API:
//
//   1. one receipt per handled message, with the message id, the
//      subscription and the routing key <userKey>.<tabId>; none for a parked
//      message or a duplicate;
//   2. receipts whose SEND was lost (the page's socket swallows it) stay in
//      sessionStorage and the reloaded page sends them;
//   3. the tab's connection closed twice through the management API while it
//      handles 40 slow messages: every handled message still gets a receipt
//      (lost 0; duplicates allowed, counted).
//
//   DURABLEWS_E2E=1 npm test     (see e2e-harness.js for the broker settings)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ENABLED, WS_URL, sleep, api, enc, publish, e2eSetup, eventHelpers, launchChromium, available } from './e2e-harness.js';

const RECEIPTS_EXCHANGE = 'durablews.receipts';

test('delivery receipts in headless Chromium: one per handled message, resent after a reload and after connection cuts (lost 0)', { skip: !ENABLED && 'set DURABLEWS_E2E=1', timeout: 240000 }, async (t) => {
  const why = await available();
  if (why) throw new Error(`${why}: run \`make broker\` (scripts/rabbitmq.sh) first`);

  const run = Math.random().toString(36).slice(2, 8);
  const ex = `dw-e2e-rc-${run}`;
  const userKey = `u-${run}`;
  const rq = `dw-e2e-receipts-${run}`;
  await api('PUT', `/api/exchanges/%2F/${ex}`, { type: 'topic', durable: true });
  // Shared with other tests on this broker: declared (idempotent), never deleted.
  await api('PUT', `/api/exchanges/%2F/${RECEIPTS_EXCHANGE}`, { type: 'topic', durable: true });
  const { events, send, port, browsers, queues } = await e2eSetup(t, [ex]);
  await api('PUT', `/api/queues/%2F/${rq}`, { durable: true, auto_delete: false });
  queues.add(rq);
  await api('POST', `/api/bindings/%2F/e/${RECEIPTS_EXCHANGE}/q/${enc(rq)}`, { routing_key: '#' });

  const { of, waitFor, lastState } = eventHelpers(events, send);
  async function stats(tag) {
    const n = of(tag, 'stats').length;
    send(tag, { op: 'stats' });
    return waitFor(`stats of ${tag}`, () => of(tag, 'stats')[n]);
  }
  const handled = (tag, id) => of(tag, 'handled').filter((e) => e.id === id).length;
  const confirmedIds = (tag) => new Set(of(tag, 'receipt').flatMap((e) => e.ids));

  /** Every receipt message taken from the receipts queue (of this run's user key). */
  const got = [];
  async function drain() {
    for (;;) {
      const msgs = await api('POST', `/api/queues/%2F/${enc(rq)}/get`, { count: 500, ackmode: 'ack_requeue_false', encoding: 'auto' });
      for (const m of msgs) {
        if (!m.routing_key.startsWith(`${userKey}.`)) continue; // another test's receipts
        got.push({ rk: m.routing_key, props: m.properties, body: JSON.parse(m.payload) });
      }
      if (msgs.length < 500) return;
    }
  }
  /** The receipts for message `id` from tab `tab` (by routing key). */
  const receiptsOf = (id, tab) =>
    got.filter((g) => g.rk === `${userKey}.${tab}`).flatMap((g) => g.body.receipts.filter((r) => r.id === id).map((r) => ({ ...r, rk: g.rk, tab: g.body.tab })));
  async function drainUntil(what, ids, tab, ms = 20000) {
    return waitFor(what, async () => {
      await drain();
      return ids.every((id) => receiptsOf(id, tab).length > 0);
    }, ms);
  }
  /** The connection consuming queue q, once the management stats name it (every few seconds); not `not`. */
  async function connectionOf(q, not) {
    return waitFor(`connection of ${q}`, async () => {
      const i = await api('GET', `/api/queues/%2F/${enc(q)}`);
      const c = i?.consumer_details?.[0]?.channel_details?.connection_name;
      return c && c !== not ? c : null;
    }, 30000);
  }

  const page = (tag, params = {}) => {
    const u = new URL(`http://127.0.0.1:${port}/web/test/e2e.html`);
    u.search = new URLSearchParams({
      tag, url: WS_URL, exchange: ex, bindingKey: 'customer.42.#', name: 'orders', receiptsUserKey: userKey, ...params,
    }).toString();
    return u.href;
  };
  const rk = 'customer.42.order_created';

  // ---------- 1: one receipt per handled message ----------
  browsers.push(launchChromium(page('R', { fail: 'p1', attempts: '1' })));
  await waitFor('R connected', () => lastState('R') === 'connected', 30000);
  const claimed = await waitFor('R claimed', () => of('R', 'claimed')[0]);
  const tabId = claimed.tabId;
  queues.add(claimed.queue);
  const ids1 = Array.from({ length: 20 }, (_, i) => `m${i + 1}`);
  for (const id of ids1) await publish(ex, rk, id, { id });
  await publish(ex, rk, 'p1', { poison: true });
  await publish(ex, rk, 'm5', { dup: true });
  await waitFor('m1..m20 handled, p1 parked, m5 dropped as duplicate', async () => {
    const s = (await stats('R')).stats;
    return ids1.every((id) => handled('R', id) === 1) && s.parked === 1 && s.duplicates === 1;
  });
  await waitFor('R: receipt events for m1..m20', () => ids1.every((id) => confirmedIds('R').has(id)));
  await drainUntil('receipts of m1..m20 in the queue', ids1, tabId);
  await sleep(500);
  await drain();
  for (const id of ids1) {
    const rs = receiptsOf(id, tabId);
    assert.equal(rs.length, 1, `${id}: one receipt (${JSON.stringify(rs)})`);
    assert.equal(rs[0].rk, `${userKey}.${tabId}`);
    assert.equal(rs[0].tab, tabId);
    assert.equal(rs[0].sub, 'orders');
    assert.ok(Number.isInteger(rs[0].at) && rs[0].at > Date.now() - 120000, `at ${rs[0].at}`);
  }
  assert.equal(receiptsOf('p1', tabId).length, 0, 'no receipt for a parked message');
  const g0 = got[0];
  assert.equal(g0.props.content_type, 'application/json');
  assert.equal(g0.props.delivery_mode, 2, 'persistent');
  assert.equal(String(g0.props.headers?.['x-durablews-receipts']), '1');
  assert.equal(g0.body.v, 1);
  t.diagnostic(`1: ${got.length} SENDs carried ${got.reduce((n, g) => n + g.body.receipts.length, 0)} receipts for 20 handled messages`);
  let cs = (await stats('R')).clientStats;
  assert.deepEqual(cs, { receiptsSent: 20, receiptsConfirmed: 20, receiptsPending: 0, receiptsDropped: 0 });

  // ---------- 2: SENDs lost on the way; the reloaded page sends them ----------
  send('R', { op: 'dropReceipts', on: true });
  await waitFor('R drops receipt SENDs', () => of('R', 'dropReceipts').some((e) => e.on));
  const ids2 = ['m21', 'm22', 'm23', 'm24', 'm25'];
  for (const id of ids2) await publish(ex, rk, id, { id });
  await waitFor('m21..m25 handled, their receipts unconfirmed', async () => {
    const s = await stats('R');
    return ids2.every((id) => handled('R', id) === 1) && s.clientStats.receiptsPending === 5;
  });
  assert.ok(of('R', 'receipts-swallowed').length >= 1);
  await sleep(1000);
  await drain();
  for (const id of ids2) assert.equal(receiptsOf(id, tabId).length, 0, `${id}: its SEND was swallowed`);
  const readies = of('R', 'ready').length;
  const reloadAt = Date.now();
  send('R', { op: 'reload' });
  await waitFor('R reloaded', () => of('R', 'ready').length === readies + 1, 30000);
  assert.equal(of('R', 'ready').at(-1).storedBefore, tabId, 'same tab');
  await drainUntil('receipts of m21..m25 after the reload', ids2, tabId);
  await sleep(500);
  await drain();
  for (const id of ids2) {
    const rs = receiptsOf(id, tabId);
    assert.equal(rs.length, 1, `${id}: sent once by the reloaded page`);
    assert.equal(rs[0].rk, `${userKey}.${tabId}`);
    assert.ok(rs[0].at < reloadAt, `${id}: handledAt is when the old page handled it`);
  }
  await waitFor('the reloaded page reports them confirmed', () => ids2.every((id) => confirmedIds('R').has(id)));
  cs = (await stats('R')).clientStats;
  assert.equal(cs.receiptsPending, 0);
  assert.equal(cs.receiptsConfirmed, 5);

  // ---------- 3: the connection is closed twice while 40 slow messages are handled ----------
  // A second tab S (its own queue, same binding: R gets the 40 too and sends
  // its own receipts, routed by its own tab id), 250 ms per handler, prefetch
  // 10: a cut lands mid-handler (that ACK cannot be written: the receipt waits
  // for the duplicate's ACK) and with prefetched messages (stale, redelivered).
  browsers.push(launchChromium(page('S', { name: 'slow', handlerMs: '250' })));
  await waitFor('S connected', () => lastState('S') === 'connected', 30000);
  const claimedS = await waitFor('S claimed', () => of('S', 'claimed')[0]);
  const tabS = claimedS.tabId;
  assert.notEqual(tabS, tabId);
  queues.add(claimedS.queue);
  let conn = await connectionOf(claimedS.queue);
  const ids3 = Array.from({ length: 40 }, (_, i) => `c${i + 1}`);
  for (const id of ids3) await publish(ex, rk, id, { id });
  const handledS = () => ids3.filter((id) => handled('S', id) > 0).length;
  await waitFor('S handled 5', () => handledS() >= 5);
  for (let cut = 1; cut <= 2; cut++) {
    const states = of('S', 'state').length;
    await api('DELETE', `/api/connections/${enc(conn)}`);
    const at = handledS();
    t.diagnostic(`3: cut ${cut}: closed ${conn} after ${at} of 40 handled`);
    assert.ok(at < 40, 'the cut came while messages were being handled');
    await waitFor('S reconnected', () => of('S', 'state').slice(states).some((e) => e.state === 'connected'), 30000);
    if (cut === 1) conn = await connectionOf(claimedS.queue, conn);
  }
  await waitFor('S handled all 40', () => handledS() === 40, 60000);
  const sS = await waitFor('S: no receipt unconfirmed', async () => {
    const s = await stats('S');
    return s.clientStats.receiptsPending === 0 ? s : null;
  }, 30000);
  await drainUntil('receipts of c1..c40 from S', ids3, tabS, 30000);
  await drainUntil('receipts of c1..c40 from R', ids3, tabId, 30000);
  await sleep(500);
  await drain();
  const lost = ids3.filter((id) => receiptsOf(id, tabS).length === 0);
  const dups = ids3.reduce((n, id) => n + Math.max(0, receiptsOf(id, tabS).length - 1), 0);
  const calls = ids3.reduce((n, id) => n + of('S', 'handle-start').filter((e) => e.id === id).length, 0);
  t.diagnostic(`3: S handled 40 (handler calls ${calls}), receipts lost ${lost.length}, duplicate receipts ${dups}; page stats ${JSON.stringify(sS.stats)} ${JSON.stringify(sS.clientStats)}`);
  assert.deepEqual(lost, [], 'every message S handled has a receipt from S');
  assert.ok(of('S', 'state').filter((e) => e.state === 'reconnecting').length >= 2, 'two cuts');
  for (const id of ids3) assert.equal(receiptsOf(id, tabId).length, 1, `${id}: R (not cut) sent one receipt of its own`);

  assert.equal(of('R', 'page-error').length + of('S', 'page-error').length, 0, 'no page errors');
});
