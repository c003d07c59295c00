// The in-process fake Web-STOMP server and client helpers of the unit tests
// (client.test.js, receipts.test.js, shared.test.js): no broker, no browser.

import assert from 'node:assert/strict';
import { DurableClient, memoryStorage } from '../durablews.js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** The recorded state changes to `state`, in order. */
export const inState = (states, state) => states.filter((s) => s.state === state);
export async function until(what, pred, ms = 3000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await sleep(2);
  }
}

export function parseFrames(data) {
  return String(data)
    .split('\0')
    .map((f) => f.replace(/^\n+/, ''))
    .filter((f) => f.length > 0)
    .map((f) => {
      const [head, ...rest] = f.split('\n\n');
      const [command, ...lines] = head.split('\n');
      const headers = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        if (!(l.slice(0, i) in headers)) headers[l.slice(0, i)] = l.slice(i + 1).replace(/\\c/g, ':');
      }
      return { command, headers, body: rest.join('\n\n') };
    });
}

export function frame(command, headers, body = '') {
  return `${command}\n${Object.entries(headers).map(([k, v]) => `${k}:${v}`).join('\n')}\n\n${body}\0`;
}

/** Minimal Web-STOMP stand-in. `subscribeFails` makes SUBSCRIBE close the socket
 * with 1000 "STOMP died" and no ERROR (RabbitMQ 3.10.8 behaviour); a SUBSCRIBE
 * to a destination in `refuse` gets an ERROR, then the socket closes (4.x). */
export class FakeBroker {
  constructor() {
    this.sockets = [];
    this.subscribeFails = false;
    this.tag = 0;
    this.holdReceipts = false;
    this.sendCloses = false;
    /** @type {string[]} receipt ids of SENDs not answered (holdReceipts) */
    this.heldReceipts = [];
    /** destinations whose SUBSCRIBE gets an ERROR (the connection ends) */
    this.refuse = new Set();
  }
  /** The SEND frames received, with their JSON bodies parsed. */
  sends() {
    return this.frames('SEND').map((f) => ({ ...f, json: JSON.parse(f.body) }));
  }
  factory = () => new FakeSocket(this);
  get last() {
    return this.sockets.at(-1);
  }
  /** The sockets still open. */
  get live() {
    return this.sockets.filter((s) => s.readyState === 1);
  }
  /** The frames of `command` received, on every socket or on `socket` only. */
  frames(command, socket) {
    return (socket ? [socket] : this.sockets).flatMap((s) => s.received.filter((f) => f.command === command));
  }
}

export class FakeSocket {
  constructor(broker) {
    this.broker = broker;
    this.url = 'ws://fake/ws';
    this.readyState = 0;
    this.received = [];
    this.subs = new Map();
    this.session = `s${broker.sockets.length}`;
    /** when the client created this socket (ms) */
    this.createdAt = Date.now();
    broker.sockets.push(this);
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.();
    }, 0);
  }
  send(data) {
    if (this.readyState !== 1) return;
    for (const f of parseFrames(data)) {
      f.at = Date.now(); // when it was received (ms)
      this.received.push(f);
      if (f.command === 'CONNECT') {
        this.push(frame('CONNECTED', { version: '1.2', 'heart-beat': '0,0', server: 'fake' }));
      } else if (f.command === 'SUBSCRIBE') {
        if (this.broker.subscribeFails) {
          this.close(1000, 'STOMP died');
          return;
        }
        if (this.broker.refuse.has(f.headers.destination)) {
          this.push(frame('ERROR', { message: 'not_found' }, 'no exchange'));
          setTimeout(() => this.close(1000, ''), 5);
          return;
        }
        this.subs.set(f.headers.id, f.headers);
        if (f.headers.receipt) this.push(frame('RECEIPT', { 'receipt-id': f.headers.receipt }));
      } else if (f.command === 'UNSUBSCRIBE') {
        this.subs.delete(f.headers.id);
      } else if (f.command === 'SEND') {
        // RabbitMQ answers a SEND's receipt once the broker confirmed it;
        // holdReceipts keeps them back, sendCloses is a refused SEND (4.0.5: "STOMP died").
        if (this.broker.sendCloses) {
          this.close(1000, 'STOMP died');
          return;
        }
        if (f.headers.receipt && this.broker.holdReceipts) this.broker.heldReceipts.push(f.headers.receipt);
        else if (f.headers.receipt) this.push(frame('RECEIPT', { 'receipt-id': f.headers.receipt }));
      } else if (f.command === 'DISCONNECT') {
        this.push(frame('RECEIPT', { 'receipt-id': f.headers.receipt }));
      }
    }
  }
  push(raw) {
    setTimeout(() => {
      if (this.readyState === 1) this.onmessage?.({ data: raw });
    }, 0);
  }
  deliver(sub, amqpId, body = '{}', extra = {}) {
    const ack = `T_${sub}@@${this.session}@@${++this.broker.tag}`;
    const h = { subscription: sub, destination: '/exchange/events/customer.42.x', 'message-id': ack, ack, redelivered: 'false', ...extra };
    if (amqpId !== undefined) h['amqp-message-id'] = amqpId;
    this.push(frame('MESSAGE', h, body));
    return ack;
  }
  /** A MESSAGE on the subscription of queue `queue` (its x-queue-name or id); returns its ack id. */
  deliverTo(queue, amqpId) {
    const sub = [...this.subs.values()].find((h) => h['x-queue-name'] === queue || h.id === queue);
    assert.ok(sub, `no subscription for ${queue} on ${this.session}: ${[...this.subs.keys()]}`);
    return this.deliver(sub.id, amqpId);
  }
  /** A MESSAGE as a binary WebSocket frame (web_stomp.ws_frame = binary). */
  deliverBinary(sub, amqpId, bytes) {
    const ack = `T_${sub}@@${this.session}@@${++this.broker.tag}`;
    const head = new TextEncoder().encode(
      `MESSAGE\nsubscription:${sub}\ndestination:/exchange/events/k\nmessage-id:${ack}\nack:${ack}\namqp-message-id:${amqpId}\ncontent-length:${bytes.length}\n\n`,
    );
    const buf = new Uint8Array(head.length + bytes.length + 1);
    buf.set(head, 0);
    buf.set(bytes, head.length);
    setTimeout(() => {
      if (this.readyState === 1) this.onmessage?.({ data: buf.buffer });
    }, 0);
    return ack;
  }
  error(message) {
    this.push(frame('ERROR', { message }, 'details'));
  }
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason, wasClean: true }), 0);
  }
}

// Options that make a test client fast and deterministic: no heart-beats or
// connect timeout, millisecond back-off, private storage, no duplicate-tab wait.
export const fastOptions = () => ({
  heartbeatMs: 0,
  connectTimeoutMs: 0,
  reconnect: { initialMs: 4, maxMs: 32 },
  storage: memoryStorage(),
  duplicateTabCheckMs: 0,
});

/** A client with every state change recorded in `states`. */
export function recordedClient(opts) {
  const states = [];
  const client = new DurableClient(opts);
  client.onState((state, d) => states.push({ state, ...d }));
  return { client, states };
}

export function newClient(broker, extra = {}) {
  return recordedClient({ webSocketFactory: broker.factory, login: 'guest', passcode: 'guest', ...fastOptions(), ...extra });
}

/** A fake session endpoint: answers with `next()` (a status and body), records requests. */
export function fakeSessionServer() {
  const srv = {
    requests: [],
    n: 0,
    tabId: 'srvtab0123456789abcdefghij',
    // Default: 200 with a fresh token each time, tab id echoed or made up.
    next: (req) => {
      const tabId = req.tab_id || srv.tabId;
      const queue = `tab-0123456789abcdef-${tabId}`;
      return {
        status: 200,
        body: {
          tab_id: tabId,
          url: 'ws://broker.test/ws',
          vhost: 'demo',
          queue,
          destination: `/amq/queue/${queue}`,
          token: `tok-${++srv.n}`,
          expires_at: new Date(Date.now() + 600000).toISOString(),
          expires_in: 600,
          renew_in: 450,
          bindings: req.bindings ?? [{ exchange: 'events', key: 'customer.42.#' }],
        },
      };
    },
    fetch: async (url, init) => {
      const req = JSON.parse(init.body);
      srv.requests.push({ url, init, body: req });
      const r = srv.next(req);
      if (r instanceof Error) throw r;
      return {
        ok: r.status >= 200 && r.status < 300,
        status: r.status,
        json: async () => (typeof r.body === 'string' ? JSON.parse(r.body) : r.body),
      };
    },
  };
  return srv;
}

export function newSessionClient(broker, srv, extra = {}) {
  const urls = [];
  const webSocketFactory = (u) => {
    urls.push(u);
    return broker.factory();
  };
  const { client, states } = recordedClient({
    session: { url: '/api/tab-session', fetch: srv.fetch },
    webSocketFactory,
    ...fastOptions(),
    ...extra,
  });
  return { client, states, urls };
}
