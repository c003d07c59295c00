// Binary bodies end to end: headless Chromium against a PRIVATE RabbitMQ node
// running Web-STOMP with web_stomp.ws_frame = binary. Not part of `npm test`
// (the shared broker uses text frames): web/binaryframes_test.go boots the
// node (internal/testbroker) and runs this file with DURABLEWS_WEB_STOMP_URL and
// DURABLEWS_MANAGEMENT_URL pointing at it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WS_URL, api, e2eSetup, launchChromium, sleep } from './e2e-harness.js';

test('msg.bytes() in Chromium: non-UTF-8 bodies arrive byte for byte over binary frames', { timeout: 120000 }, async (t) => {
  if (!process.env.DURABLEWS_WEB_STOMP_URL || !process.env.DURABLEWS_MANAGEMENT_URL) {
    throw new Error('run through `go test ./web/` (it starts a broker with web_stomp.ws_frame = binary and sets DURABLEWS_WEB_STOMP_URL, DURABLEWS_MANAGEMENT_URL)');
  }
  const ex = 'dw-binary';
  await api('PUT', `/api/exchanges/%2F/${ex}`, { type: 'topic', durable: true });
  const { events, port, browsers, queues } = await e2eSetup(t, [ex]);
  const u = new URL(`http://127.0.0.1:${port}/web/test/e2e.html`);
  u.search = new URLSearchParams({ tag: 'X', url: WS_URL, exchange: ex, bindingKey: '#', name: 'bin', bytes: '1' }).toString();
  browsers.push(launchChromium(u.href));
  const waitFor = async (what, pred, ms = 30000) => {
    const end = Date.now() + ms;
    for (;;) {
      const v = pred();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timeout waiting for ${what}; events:\n${events.map((e) => JSON.stringify(e)).join('\n')}`);
      await sleep(50);
    }
  };
  await waitFor('connected', () => events.some((e) => e.type === 'state' && e.state === 'connected'));
  queues.add(events.find((e) => e.type === 'claimed').queue);

  // Not UTF-8 (0xff, a lone continuation byte, a truncated sequence) and a NUL:
  // over text frames the browser would close the socket (1006) on the first one.
  const bodies = {
    b1: Buffer.from([0xff, 0xfe, 0x00, 0x41, 0x80, 0xc3]),
    b2: Buffer.from(Array.from({ length: 256 }, (_, i) => i)), // every byte value
    b3: Buffer.from('{"plain":"json still works"}'),
  };
  for (const [id, body] of Object.entries(bodies)) {
    const res = await api('POST', `/api/exchanges/%2F/${ex}/publish`, {
      routing_key: 'k', payload: body.toString('base64'), payload_encoding: 'base64', properties: { message_id: id, delivery_mode: 2 },
    });
    assert.equal(res.routed, true);
  }
  await waitFor('3 handled', () => events.filter((e) => e.type === 'handled').length === 3);
  for (const [id, body] of Object.entries(bodies)) {
    const got = events.find((e) => e.type === 'handle-start' && e.id === id);
    assert.deepEqual(got.bytes, [...body], `${id} byte for byte`);
  }
  const states = events.filter((e) => e.type === 'state').map((e) => e.state);
  assert.deepEqual(states, ['connecting', 'connected'], 'no disconnect');
  assert.equal(events.filter((e) => e.type === 'page-error').length, 0);
});
