// Browser end-to-end tests of stream subscriptions (issue 15, headless
// Chromium + the real broker, DURABLEWS_E2E=1): one tab holds a per-tab
// queue and a stream subscription at once, resumes the stream after a
// WebSocket cut and after a reload at exactly the next message (none lost,
// none handled twice), failing over between a dead and a live Web-STOMP URL;
// another tab away longer than the stream's retention reports the gap.
// Streams are declared here through the management API, as
// broadcast.Declare / `durablews setup -streams` would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ENABLED, WS_URL, sleep, api, enc, publish, e2eSetup, eventHelpers, launchChromium, available } from './e2e-harness.js';

// Nothing listens there: the client must fail over to WS_URL.
const DEAD_URL = 'ws://127.0.0.1:9/ws';

test('streams in headless Chromium: resume after a cut and a reload, queue beside it, retention gap', { skip: !ENABLED && 'set DURABLEWS_E2E=1', timeout: 180000 }, async (t) => {
  const why = await available();
  if (why) throw new Error(`${why}: run \`make broker\` (scripts/rabbitmq.sh) first`);
  const rnd = Math.random().toString(36).slice(2, 8);
  const ex = `dw-e2e-stream-${rnd}`;
  await api('PUT', `/api/exchanges/%2F/${ex}`, { type: 'topic', durable: true });
  const { events, send, port, browsers, queues } = await e2eSetup(t, [ex]);
  async function declareStream(name, key, args) {
    queues.add(name);
    await api('PUT', `/api/queues/%2F/${enc(name)}`, {
      durable: true, auto_delete: false, arguments: { 'x-queue-type': 'stream', ...args },
    });
    await api('POST', `/api/bindings/%2F/e/${enc(ex)}/q/${enc(name)}`, { routing_key: key });
  }
  // 4 KB segments: many segment starts, so offsets skip (why a tab resumes at last, not last+1).
  const sR = `dw-e2e-stream-r-${rnd}`;
  await declareStream(sR, 'r.#', { 'x-max-length-bytes': 50 << 20, 'x-stream-max-segment-size-bytes': 4000 });
  // 20 KB in 4 KB segments: ~120 KB published while away removes the tab's position.
  const sG = `dw-e2e-stream-g-${rnd}`;
  await declareStream(sG, 'g.#', { 'x-max-length-bytes': 20000, 'x-stream-max-segment-size-bytes': 4000 });

  const { of, waitFor, lastState, stats } = eventHelpers(events, send, 30000);
  const streamHandled = (tag) => of(tag, 'stream-handled');
  const open = (tag, params) => {
    const u = new URL(`http://127.0.0.1:${port}/web/test/e2e.html`);
    u.search = new URLSearchParams({ tag, exchange: ex, name: tag, initialMs: '200', maxMs: '1000', ...params }).toString();
    browsers.push(launchChromium(u.href));
  };
  // In order, one at a time: the stream's order is the test's expectation.
  async function publishAll(key, prefix, n, bodyBytes = 200) {
    const pad = 'x'.repeat(bodyBytes);
    const ids = [];
    for (let i = 0; i < n; i++) {
      const id = `${prefix}${i}`;
      await publish(ex, key, id, { i, pad });
      ids.push(id);
    }
    return ids;
  }

  // R: a per-tab queue (q.#) and the stream sR at once, over a dead and a live URL.
  open('R', { urls: `${DEAD_URL},${WS_URL}`, bindingKey: 'q.#', stream: sR, streamSlowMs: '15', prefetch: '10' });
  // G: only the small stream sG, from its first message.
  open('G', { url: WS_URL, queue: '0', stream: sG, streamStart: '"first"' });
  await waitFor('R connected', () => lastState('R') === 'connected');
  queues.add((await waitFor('R claimed', () => of('R', 'claimed').at(-1))).queue);
  await waitFor('G connected', () => lastState('G') === 'connected');

  // ---------- G, part 1: handle 5, then go away ----------
  const gBefore = await publishAll('g.x', 'g', 5);
  await waitFor('G handled 5', () => streamHandled('G').length === 5);
  send('G', { op: 'close' });
  await waitFor('G closed', () => of('G', 'closed').length === 1);
  const gLast = streamHandled('G').at(-1).offset;

  // ---------- R: cut with frames in flight ----------
  const want = await publishAll('r.x', 'r', 25);
  await publish(ex, 'q.x', 'q1', { n: 1 });
  await waitFor('R handled 5 of the stream', () => streamHandled('R').length >= 5);
  send('R', { op: 'cut' });
  await waitFor('R cut', () => of('R', 'cut').length === 1);
  want.push(...(await publishAll('r.x', 'r-cut-', 10)));
  await publish(ex, 'q.x', 'q2', { n: 2 });
  await waitFor('R resumed: all 35', () => streamHandled('R').length >= want.length);

  // ---------- R: reload with frames in flight ----------
  want.push(...(await publishAll('r.x', 'r-reload-', 20)));
  await waitFor('R handled 5 more', () => streamHandled('R').length >= want.length - 15);
  const lastBeforeReload = () => streamHandled('R').at(-1).offset;
  const loads = of('R', 'ready').length;
  send('R', { op: 'reload' });
  const ready2 = await waitFor('R reloaded', () => of('R', 'ready')[loads]);
  const offBefore = lastBeforeReload();
  assert.equal(ready2.streamLast, offBefore, 'the reloaded page knows the last offset the old one handled');
  assert.equal(ready2.streamHeaders['x-stream-offset'], `offset=${offBefore}`, 'and subscribes at it');
  want.push(...(await publishAll('r.x', 'r-after-', 5)));
  await publish(ex, 'q.x', 'q3', { n: 3 });
  await waitFor('R handled everything', () => streamHandled('R').length >= want.length);
  await waitFor('R queue messages', () => ['q1', 'q2', 'q3'].every((id) => of('R', 'handled').some((e) => e.id === id)));
  await sleep(300); // a duplicate would arrive by now

  const got = streamHandled('R');
  assert.deepEqual(got.map((e) => e.id), want, 'every stream message handled exactly once, in order, across the cut and the reload');
  for (let i = 1; i < got.length; i++) assert.ok(got[i].offset > got[i - 1].offset, `offsets increase at ${i}`);
  assert.ok(got.some((e, i) => i > 0 && e.offset > got[i - 1].offset + 1), 'small segments made offsets skip (the reason for offset=<last>)');
  assert.deepEqual(of('R', 'handled').map((e) => e.id), ['q1', 'q2', 'q3'], 'the per-tab queue beside the stream: each once');
  assert.equal(of('R', 'gap').length, 0, 'nothing was truncated: no gap');
  const afterReload = got.filter((e) => e.t >= ready2.t);
  assert.equal(afterReload[0].offset > offBefore, true);
  assert.equal(got[got.indexOf(afterReload[0]) - 1].offset, offBefore, 'the reloaded page went on right after the old one');
  const rStats = await stats('R');
  assert.equal(rStats.streamStats.skipped, 1, 'the reloaded page dropped exactly the repeated frame at its last offset');
  assert.equal(rStats.streamStats.duplicates, 0);
  assert.equal(rStats.streamLast, got.at(-1).offset);
  // Failover: every connection landed on the live URL; each time after the cut the dead one was tried first.
  const rStates = of('R', 'state');
  assert.ok(rStates.filter((e) => e.state === 'connected').every((e) => e.url === WS_URL));
  assert.ok(rStates.some((e) => e.state === 'reconnecting' && e.url === DEAD_URL), 'the dead URL was tried and left');
  t.diagnostic(`R: ${got.length} stream messages over offsets ${got[0].offset}..${got.at(-1).offset}; states ${rStates.map((e) => `${e.state}@${e.url ?? ''}`).join(' ')}`);

  // ---------- G, part 2: away longer than retention, back: the gap ----------
  const away = await publishAll('g.x', 'ga', 60, 2000); // ~120 KB through a 20 KB stream
  send('G', { op: 'connect' });
  const gap = await waitFor('G gap', () => of('G', 'gap')[0]);
  const gGot = streamHandled('G');
  await waitFor('G caught up', () => streamHandled('G').at(-1)?.id === away.at(-1));
  const after = streamHandled('G').slice(5);
  assert.deepEqual(gGot.slice(0, 5).map((e) => e.id), gBefore);
  assert.equal(gap.stream, sG);
  assert.equal(gap.from, gLast + 1, 'the gap starts right after the last handled offset');
  assert.equal(gap.to, after[0].offset - 1, 'and ends right before the first offset the stream still holds');
  const idx = away.indexOf(after[0].id);
  assert.ok(idx > 0, `retention removed some of what was published while away (first held: ${after[0].id})`);
  assert.deepEqual(after.map((e) => e.id), away.slice(idx), 'then everything the stream still holds, in order, once');
  assert.equal(of('G', 'gap').length, 1);
  t.diagnostic(`G: last ${gLast}, gap ${gap.from}..${gap.to}, resumed at ${away[idx]} (${idx} of ${away.length} lost to retention)`);

  for (const tag of ['R', 'G']) assert.equal(of(tag, 'page-error').length, 0, `${tag}: no page errors`);
});
