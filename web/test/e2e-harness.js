// Shared by the browser end-to-end tests (*.e2e.test.js): the management API,
// a harness HTTP server the page reports to, and a headless Chromium launcher.
// Not a test file itself: package.json runs test/*.test.js only.
//
// Env: CHROMIUM (default 'chromium'); the broker under test, as every durablews test finds it
// (internal/brokerversion): DURABLEWS_MANAGEMENT_URL (e.g. http://127.0.0.1:15640; guest/guest
// unless the URL carries credentials) and DURABLEWS_WEB_STOMP_URL (e.g. ws://127.0.0.1:15740/ws).
// `make web-test` sets both for the RabbitMQ version it runs (scripts/rabbitmq-versions.sh env).

import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ENABLED = process.env.DURABLEWS_E2E === '1';
const CHROMIUM = process.env.CHROMIUM || 'chromium';
function brokerURL(name) {
  const v = process.env[name];
  if (ENABLED && !v) {
    throw new Error(`${name} is not set: run the browser tests through \`make web-test\` (it sets DURABLEWS_MANAGEMENT_URL and DURABLEWS_WEB_STOMP_URL for the broker under test), or set both`);
  }
  return v || 'http://unset.invalid';
}
const MGMT = new URL(brokerURL('DURABLEWS_MANAGEMENT_URL'));
if (!MGMT.username) {
  MGMT.username = 'guest';
  MGMT.password = 'guest';
}
export const WS_URL = brokerURL('DURABLEWS_WEB_STOMP_URL');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..'); // serves /web/...

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- management API ----
const auth = 'Basic ' + Buffer.from(`${decodeURIComponent(MGMT.username)}:${decodeURIComponent(MGMT.password)}`).toString('base64');
export async function api(method, p, body) {
  const r = await fetch(new URL(p, MGMT.origin), {
    method,
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok && r.status !== 404) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return r.status === 404 ? null : text ? JSON.parse(text) : null;
}
export const enc = encodeURIComponent;
export async function publish(exchange, routingKey, id, payload, extraHeaders = {}) {
  const res = await api('POST', `/api/exchanges/%2F/${enc(exchange)}/publish`, {
    routing_key: routingKey,
    payload: JSON.stringify(payload),
    payload_encoding: 'string',
    properties: {
      delivery_mode: 2,
      message_id: id,
      content_type: 'application/json',
      headers: { routing_key: routingKey, correlation_id: `c-${id}`, ...extraHeaders },
    },
  });
  assert.equal(res.routed, true, `publish ${id} to ${exchange}/${routingKey} not routed`);
}

// ---- harness server: static files + /report + /cmd long-poll ----
export function startServer() {
  const events = [];
  const cmds = new Map(); // tag -> queued commands
  const waiters = new Map(); // tag -> pending response
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.map': 'application/json' };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (req.method === 'POST' && u.pathname === '/report') {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => {
        try {
          events.push(JSON.parse(b));
        } catch {}
        res.end();
      });
      return;
    }
    if (u.pathname === '/cmd') {
      const tag = u.searchParams.get('tag');
      const q = cmds.get(tag);
      if (q && q.length) return res.end(JSON.stringify(q.shift()));
      const t = setTimeout(() => {
        waiters.delete(tag);
        res.statusCode = 204;
        res.end();
      }, 5000);
      waiters.set(tag, (cmd) => {
        clearTimeout(t);
        res.end(JSON.stringify(cmd));
      });
      return;
    }
    const file = path.join(ROOT, path.normalize(u.pathname));
    if (!file.startsWith(ROOT + path.sep)) {
      res.statusCode = 403;
      return res.end();
    }
    fs.readFile(file, (err, data) => {
      if (err) {
        res.statusCode = 404;
        return res.end();
      }
      res.setHeader('content-type', types[path.extname(file)] || 'application/octet-stream');
      res.end(data);
    });
  });
  const send = (tag, cmd) => {
    const w = waiters.get(tag);
    if (w) {
      waiters.delete(tag);
      w(cmd);
    } else {
      if (!cmds.has(tag)) cmds.set(tag, []);
      cmds.get(tag).push(cmd);
    }
  };
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, events, send, port: server.address().port })));
}

/**
 * The setup the browser tests share: a harness server, and after the test the
 * browsers stopped, the server closed, the queues and exchanges deleted.
 * Returns the server's {events, send, port} plus the browsers array and the
 * queues set to fill.
 */
export async function e2eSetup(t, exchanges) {
  const { server, events, send, port } = await startServer();
  const browsers = [];
  const queues = new Set();
  t.after(async () => {
    for (const b of browsers) b.stop();
    server.closeAllConnections?.();
    server.close();
    await sleep(500);
    for (const q of queues) await api('DELETE', `/api/queues/%2F/${enc(q)}`).catch(() => {});
    for (const x of exchanges) await api('DELETE', `/api/exchanges/%2F/${enc(x)}`).catch(() => {});
  });
  return { events, send, port, browsers, queues };
}

/**
 * Helpers over the events the pages reported: of(tag, type) in page order,
 * waitFor(what, pred, ms) polling pred (sync or async) until truthy (the
 * timeout error lists the last events), lastState(tag), and
 * stats(tag) asking the page for its 'stats' event.
 */
export function eventHelpers(events, send, defaultMs = 20000) {
  const of = (tag, type) => events.filter((e) => e.tag === tag && (!type || e.type === type)).sort((a, b) => a.t - b.t || a.seq - b.seq);
  async function waitFor(what, pred, ms = defaultMs) {
    const end = Date.now() + ms;
    for (;;) {
      const v = await pred();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timeout waiting for ${what}; last events:\n${events.slice(-25).map((e) => JSON.stringify(e)).join('\n')}`);
      await sleep(50);
    }
  }
  const lastState = (tag) => of(tag, 'state').at(-1)?.state;
  async function stats(tag) {
    const n = of(tag, 'stats').length;
    send(tag, { op: 'stats' });
    return waitFor(`stats of ${tag}`, () => of(tag, 'stats')[n]);
  }
  return { of, waitFor, lastState, stats };
}

export function launchChromium(url) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'durablews-chromium-'));
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-popup-blocking', `--user-data-dir=${dir}`, url,
  ];
  const p = spawn(CHROMIUM, args, { detached: true, stdio: 'ignore' });
  return {
    stop() {
      try {
        process.kill(-p.pid, 'SIGTERM');
      } catch {}
      setTimeout(() => fs.rmSync(dir, { recursive: true, force: true }), 1000).unref();
    },
  };
}

export async function available() {
  try {
    await api('GET', '/api/overview');
  } catch {
    return 'RabbitMQ management API not reachable';
  }
  return null;
}
