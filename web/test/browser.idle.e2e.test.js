// Idle longer than Web-STOMP's 60 s Cowboy idle timeout: heart-beats keep the
// socket open and a message published afterwards still arrives. Its own file
// so that node --test runs it beside the other tests (it mostly sleeps, ~80 s).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ENABLED, WS_URL, sleep, api, enc, publish, startServer, launchChromium, available,
} from './e2e-harness.js';

test('idle for 75 s: heart-beats keep the connection', { skip: !ENABLED && 'set DURABLEWS_E2E=1', timeout: 180000 }, async (t) => {
  // Enabled (make test sets DURABLEWS_E2E=1) but the broker is missing: fail
  // loudly, a skipped browser test would hide a broken setup in CI.
  const why = await available();
  if (why) throw new Error(`${why}: run \`make broker\` (scripts/rabbitmq.sh) first`);
  const ex = `dw-e2e-idle-${Math.random().toString(36).slice(2, 8)}`;
  await api('PUT', `/api/exchanges/%2F/${ex}`, { type: 'topic', durable: true });
  const { server, events, port } = await startServer();
  const u = new URL(`http://127.0.0.1:${port}/web/test/e2e.html`);
  u.search = new URLSearchParams({ tag: 'D', url: WS_URL, exchange: ex, bindingKey: '#', name: 'idle', heartbeatMs: '10000' }).toString();
  const b = launchChromium(u.href);
  let queue;
  t.after(async () => {
    b.stop();
    server.closeAllConnections?.();
    server.close();
    await sleep(500);
    if (queue) await api('DELETE', `/api/queues/%2F/${enc(queue)}`).catch(() => {});
    await api('DELETE', `/api/exchanges/%2F/${ex}`).catch(() => {});
  });
  const states = () => events.filter((e) => e.type === 'state').map((e) => e.state);
  const end = Date.now() + 20000;
  while (!states().includes('connected')) {
    if (Date.now() > end) throw new Error('never connected');
    await sleep(100);
  }
  queue = events.find((e) => e.type === 'claimed').queue;
  await sleep(75000);
  await publish(ex, 'x', 'idle-1', { late: true });
  const end2 = Date.now() + 10000;
  while (!events.some((e) => e.type === 'handled' && e.id === 'idle-1')) {
    if (Date.now() > end2) throw new Error('message after idle not handled');
    await sleep(100);
  }
  assert.deepEqual(states(), ['connecting', 'connected'], 'no reconnect while idle');
});
