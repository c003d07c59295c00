// The demo page: shows one customer's events as they arrive through the
// durablews browser client (web/durablews.js), and offers buttons to publish
// test events and to cut the connection.
//
// Query parameters: customer (default 42), cut (ms the "network cut" of Drop
// connection lasts, default 3000), bind (tab sessions: ask for this binding
// key instead of all the customer's, e.g. customer.43.# to see the server
// refuse it with 403).
//
// Tab sessions (default): the page "logs in" as the customer (POST
// /api/login sets a cookie; a stand-in for the application's real login),
// then the client asks /api/tab-session for this tab's queue and a read-only
// token before every connection attempt. No broker credential is in the page.
// Trusted mode (-trusted): /api/config hands out guest/guest and the page
// declares and binds its own queue.
//
// window.durablewsDemo exposes the client and what the page showed, for tests.

import { DurableClient } from '/web/durablews.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const CUSTOMER_RE = /^[A-Za-z0-9_-]{1,32}$/;
const customer = CUSTOMER_RE.test(params.get('customer') ?? '') ? params.get('customer') : '42';
const cutMs = Math.max(0, Number(params.get('cut') ?? 3000) || 0);
const MAX_KEPT = 2000; // events remembered across reloads (sessionStorage)
const MAX_ROWS = 300; // rows in the table

// ---- page state, kept per customer across reloads of this tab ----
// The tab's queue survives a reload (same tab id in sessionStorage), so the
// list does too. An event the old page showed but could not ack before it
// unloaded comes back redelivered: the client drops it (its de-dup window is
// kept in sessionStorage too), so the page needs no de-dup of its own.
const storeKey = `durablews-demo.${customer}`;
const saved = load();
const events = saved.events; // [{id, event, order, at, receivedAt, redelivered, rk}]
const shown = events.map((e) => e.id); // ids in the order shown (restored ones first)
const counts = { duplicates: saved.duplicates, shownTotal: saved.shownTotal };
const loads = saved.loads + 1;
let clientDups = 0; // sub.stats.duplicates already added to counts.duplicates
save(); // counts this page load even if it shows no event

function load() {
  const empty = { events: [], duplicates: 0, shownTotal: 0, loads: 0 };
  try {
    const v = JSON.parse(sessionStorage.getItem(storeKey) ?? 'null');
    if (v && Array.isArray(v.events)) return { ...empty, ...v };
  } catch {
    // unreadable: start over
  }
  return empty;
}

function save() {
  try {
    sessionStorage.setItem(storeKey, JSON.stringify({ events, duplicates: counts.duplicates, shownTotal: counts.shownTotal, loads }));
  } catch {
    // storage full: the page still works, it just forgets on reload
  }
}

// ---- connection ----
const cfg = await (await fetch('/api/config')).json();
const sessionMode = cfg.mode === 'session';
const bindKey = params.get('bind');
let loginError = null;
if (sessionMode) {
  // The demo's pretend login; a real application already has its session.
  try {
    const r = await fetch('/api/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customer }),
    });
    if (!r.ok) loginError = `login failed: HTTP ${r.status} ${(await r.json().catch(() => ({}))).error ?? ''}`;
  } catch (e) {
    loginError = `login failed: ${e.message}`;
  }
}

// The client opens its WebSockets through this factory so that "Drop
// connection" can close the live one and refuse new ones for cutMs, like a
// network cut: the tab goes through the same reconnect path as after a real
// outage, while events published meanwhile wait in its queue.
let socket = null;
let cutUntil = 0;
let cutAt = 0; // when Drop connection was pressed, until the tab is connected again
let shownAtCut = 0;
const wire = [];
function openSocket(url) {
  const ws = new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
  if (params.get('debug') === '1') {
    // What arrived on each socket, by subscription: a stall shows whether the frames reached the page.
    const w = { opened: new Date().toISOString().slice(11, 23), closed: '', bytes: 0, frames: 0, messages: {}, last: '' };
    wire.push(w);
    if (wire.length > 6) wire.shift();
    ws.addEventListener('message', (ev) => {
      const text = typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data);
      w.bytes += text.length;
      w.frames++;
      for (const m of text.matchAll(/(?:^|\0)\n*MESSAGE\n(?:[^\n]*\n)*?subscription:([^\n]*)/g)) w.messages[m[1]] = (w.messages[m[1]] ?? 0) + 1;
      w.last = `${new Date().toISOString().slice(11, 23)} ${text.slice(0, 40).replace(/\n/g, '|')}`;
    });
    ws.addEventListener('close', () => (w.closed = new Date().toISOString().slice(11, 23)));
  }
  if (Date.now() < cutUntil) ws.close(); // the "network" is down: fail this attempt
  socket = ws;
  return ws;
}

// ?debug=1 keeps the client's debug lines (not the STOMP frames) for tests
// to read on a failure: durablewsDemo.debugLog.
const debugLog = [];
const debugOpts =
  params.get('debug') === '1'
    ? {
        debug: (m) => {
          if (/^(<<<|>>>|Received data)/.test(m)) return;
          debugLog.push(`${new Date().toISOString().slice(11, 23)} ${m}`);
          if (debugLog.length > 400) debugLog.shift();
        },
      }
    : {};

const client = sessionMode
  ? new DurableClient({
      ...debugOpts,
      // The server declares this tab's queue bound to customer.<id>.# of the
      // customer it authenticated, whatever the page asks for.
      session: { url: cfg.sessionUrl, ...(bindKey ? { bindings: [{ exchange: cfg.exchange, key: bindKey }] } : {}) },
      webSocketFactory: openSocket,
      reconnect: { initialMs: 500, maxMs: 5000 },
      dedupWindow: MAX_KEPT,
    })
  : new DurableClient({
      ...debugOpts,
      // TRUSTED MODE ONLY: shared credentials from /api/config, and the page
      // binds its own queue.
      url: cfg.webStompUrls ?? cfg.webStompUrl, // a list with several nodes: the client rotates over them
      webSocketFactory: openSocket,
      login: cfg.login,
      passcode: cfg.passcode,
      reconnect: { initialMs: 500, maxMs: 5000 },
      dedupWindow: MAX_KEPT,
      // Delivery receipts go to <exchange>/<userKey>.<tabId>; with tab
      // sessions the session names the destination instead.
      receipts: { userKey: customer, exchange: cfg.receiptsExchange },
    });

const sub = client.subscribe(
  sessionMode
    ? { name: 'events' }
    : {
        exchange: cfg.exchange,
        bindingKey: `customer.${customer}.#`,
        name: `customer-${customer}`, // one queue per customer: a binding is never removed
        expiresMs: cfg.queueExpiresMs,
      },
  (msg) => show(msg),
);

// ---- announcements: one broadcast stream every visitor shares ----
// A RabbitMQ stream stores each announcement once; every tab reads it from
// its own offset, which the client keeps in sessionStorage and resumes
// after on a reconnect or a reload. The feed shown is kept here across
// reloads like the events; the client drops what this tab already handled,
// so every announcement is shown once. A new tab starts at the stream's
// oldest announcement (start: 'first'), then reads on live.
const MAX_FEED = 100;
const feedKey = `durablews-demo.feed.${cfg.stream}`;
const feed = loadFeed(); // [{id, text, at, offset}]
const feedShown = feed.map((f) => f.id); // ids in the order shown, over reloads
const feedSub = client.subscribe({ stream: cfg.stream, start: 'first' }, (msg) => showAnnouncement(msg));
const feedGaps = [];
client.on('gap', (g) => {
  // Retention removed announcements while this tab was away.
  feedGaps.push({ from: g.from, to: g.to });
  $('feed-status').className = 'status warn';
  $('feed-status').textContent = `announcements at offsets ${g.from}..${g.to} expired while this tab was away`;
});

function loadFeed() {
  try {
    const v = JSON.parse(sessionStorage.getItem(feedKey) ?? 'null');
    if (Array.isArray(v)) return v;
  } catch {
    // unreadable: start over
  }
  return [];
}

function showAnnouncement(msg) {
  let body = {};
  try {
    body = msg.json() ?? {};
  } catch {
    // not JSON
  }
  const a = { id: msg.id ?? '(no id)', text: String(body.text ?? ''), at: body.at, offset: msg.offset };
  feed.push(a);
  feedShown.push(a.id);
  while (feed.length > MAX_FEED) feed.shift();
  try {
    sessionStorage.setItem(feedKey, JSON.stringify(feed)); // before the client records the offset
  } catch {
    // storage full: the feed still works, it just forgets on reload
  }
  addAnnouncement(a, true);
}

function addAnnouncement(a, fresh) {
  const li = document.createElement('li');
  if (fresh) li.className = 'fresh';
  li.dataset.offset = String(a.offset);
  const small = document.createElement('small');
  const at = a.at ? Date.parse(a.at) : NaN;
  small.textContent = `offset ${a.offset}${Number.isFinite(at) ? ` · ${fmtTime.format(at)}` : ''}`;
  li.append(document.createTextNode(a.text), small);
  $('feed').prepend(li);
  while ($('feed').children.length > MAX_FEED) $('feed').lastElementChild.remove();
  $('feed-empty').hidden = true;
}

async function announce(ev) {
  ev.preventDefault();
  const input = $('announce-text');
  const text = input.value.trim();
  if (!text) return;
  const status = $('feed-status');
  try {
    const r = await fetch('/api/announcements', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text }),
    });
    const res = await r.json();
    if (!r.ok) throw new Error(res.error ?? `HTTP ${r.status}`);
    input.value = '';
    status.className = 'status ok';
    status.textContent = `stored in the stream, confirmed in ${res.ms} ms`;
  } catch (e) {
    status.className = 'status err';
    status.textContent = `announce failed: ${e.message}`;
  }
}

const stateLog = [];
let lastState = { state: client.state, attempt: 0 };
client.on('mode', () => renderState());
client.onState((state, detail) => {
  lastState = { state, ...detail, at: Date.now() };
  stateLog.push({ state, attempt: detail.attempt, delayMs: detail.delayMs, error: detail.error?.message, status: detail.error?.status, fatal: !!detail.fatal, queueReset: !!detail.queueReset, at: lastState.at });
  renderState();
  if (state === 'closed' && detail.fatal) {
    const e = detail.error;
    const why = e?.status === 401 ? 'not logged in' : e?.status === 403 ? 'not allowed' : 'refused';
    setStatus('err', `tab session ${why} (HTTP ${e?.status}): ${e?.message ?? e}. Not retrying.`);
  }
  if (state === 'connected' && detail.queueReset) {
    // The server had to create this tab's queue again (it expired while the tab was
    // away, was deleted, or the broker lost it): events of the gap never arrive.
    // A real page reloads its state from the application here.
    cutAt = 0;
    setStatus('warn', 'this tab\'s queue was gone (expired, deleted or lost by the broker) and was created again: events published in between are missing; a real page would reload its state now');
    return;
  }
  if (state === 'connected' && cutAt) {
    const secs = ((Date.now() - cutAt) / 1000).toFixed(1);
    const waiting = () => counts.shownTotal - shownAtCut;
    cutAt = 0;
    setStatus('ok', `back after ${secs} s and ${detail.attempt} attempt${detail.attempt === 1 ? '' : 's'}; events published meanwhile came from the queue`);
    // Mention how many once they had a moment to arrive.
    setTimeout(() => {
      if (!cutAt && waiting() > 0) {
        setStatus('ok', `back after ${secs} s and ${detail.attempt} attempt${detail.attempt === 1 ? '' : 's'}; ${waiting()} event${waiting() === 1 ? '' : 's'} arrived since the cut, none lost`);
      }
    }, 1000);
  }
});

// ---- delivery receipts ----
// After show() resolved and the event was acked, the client sends a receipt
// to the app (batched, kept in sessionStorage until RabbitMQ confirmed it).
// 'receipt' says which ones were confirmed: the row gets its mark.
const receiptsConfirmed = []; // ids, in confirmation order (this page load)
client.on('receipt', ({ receipts }) => {
  const now = Date.now();
  for (const r of receipts) {
    receiptsConfirmed.push(r.id);
    const ev = events.find((e) => e.id === r.id);
    if (ev && !ev.receiptAt) {
      ev.receiptAt = now;
      markReceipt(ev);
    }
  }
  save();
});

function markReceipt(ev) {
  const td = tbody.querySelector(`tr[data-id="${CSS.escape(ev.id)}"] td.receipt`);
  if (!td) return;
  td.textContent = '✓';
  td.title = `receipt confirmed by RabbitMQ ${fmtLatency(ev.receiptAt - ev.receivedAt)} after it was shown: the app knows this tab handled it`;
}

// Events no tab of this customer handled in time (the app's fallback).
const fallbacks = [];
const fallbackIds = new Set();
async function pollFallbacks() {
  try {
    const r = await fetch(`/api/fallbacks?customer=${encodeURIComponent(customer)}`);
    const res = await r.json();
    if (!r.ok) return;
    for (const f of res.fallbacks) {
      if (fallbackIds.has(f.id)) continue; // listed already (the app keeps the newest 200)
      fallbackIds.add(f.id);
      fallbacks.push(f);
      const li = document.createElement('li');
      const small = document.createElement('small');
      small.textContent = `${fmtTime.format(Date.parse(f.at))} · ${f.id}`;
      li.append(document.createTextNode(f.text), small);
      $('fallbacks').prepend(li);
      $('fallbacks-empty').hidden = true;
    }
  } catch {
    // the app is away: try again at the next tick
  }
}

// A handler that keeps failing is retried, then reported here (the client
// parks it and goes on): the page says so instead of waiting silently.
client.on('failed', (e) => setStatus('err', `event ${e.id} could not be shown after ${e.attempts} attempts (${e.error?.message ?? e.error}); ${e.action === 'park' ? 'skipped' : e.action}`));

// ---- messages ----
function show(msg) {
  let body = {};
  try {
    body = msg.json() ?? {};
  } catch {
    // not JSON: show the headers only
  }
  const ev = {
    id: msg.id ?? '(no id)',
    event: body.event ?? msg.headers.event_type ?? '?',
    order: body.order,
    at: body.at,
    receivedAt: Date.now(),
    redelivered: msg.redelivered,
    rk: msg.headers.routing_key,
  };
  events.push(ev);
  counts.shownTotal++;
  shown.push(ev.id);
  while (events.length > MAX_KEPT) events.shift();
  save(); // before the handler returns, i.e. before the ack
  addRow(ev, counts.shownTotal, true);
  renderCounters();
}

// ---- rendering ----
const tbody = $('events');
const fmtTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3, hour12: false });

function addRow(ev, n, fresh) {
  const tr = document.createElement('tr');
  if (fresh) tr.className = 'fresh';
  tr.dataset.id = ev.id;
  const sent = ev.at ? Date.parse(ev.at) : NaN;
  const lat = Number.isFinite(sent) ? ev.receivedAt - sent : NaN;
  const cells = [
    [String(n), 'num'],
    [Number.isFinite(sent) ? fmtTime.format(sent) : '', 'time'],
    [ev.event.replace(/_/g, ' '), `event ev-${ev.event}`],
    [ev.order !== undefined ? `#${ev.order}` : '', 'order'],
    [ev.id, 'id'],
    [Number.isFinite(lat) ? fmtLatency(lat) : '', lat >= 1000 ? 'lat slow' : 'lat'],
    [ev.receiptAt ? '✓' : '…', 'receipt'],
  ];
  for (const [text, cls] of cells) {
    const td = document.createElement('td');
    td.className = cls;
    td.textContent = text;
    tr.append(td);
  }
  const flag = document.createElement('td');
  flag.className = 'flag';
  if (ev.redelivered) {
    const b = document.createElement('span');
    b.className = 'badge';
    b.textContent = 'redelivered';
    b.title = 'RabbitMQ delivered it before, but this tab had not acked it (e.g. the connection dropped first)';
    flag.append(b);
  }
  tr.append(flag);
  tr.querySelector('td.receipt').title = ev.receiptAt ? 'receipt confirmed: the app knows this tab handled it' : 'receipt not confirmed yet';
  tbody.prepend(tr);
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
  $('empty').hidden = true;
}

function fmtLatency(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

function renderCounters() {
  const d = sub.stats.duplicates;
  if (d > clientDups) {
    counts.duplicates += d - clientDups; // dropped by the client's de-duplication
    clientDups = d;
    save();
  }
  $('n-shown').textContent = String(counts.shownTotal);
  $('n-dups').textContent = String(counts.duplicates);
  $('n-redelivered').textContent = String(events.filter((e) => e.redelivered).length);
}

function renderState() {
  const s = lastState;
  const el = $('conn');
  el.dataset.state = s.state;
  let text = s.state;
  if (s.state === 'reconnecting') {
    const left = Math.max(0, s.at + (s.delayMs ?? 0) - Date.now());
    text = `reconnecting · attempt ${s.attempt} in ${(left / 1000).toFixed(1)} s`;
    el.title = s.error ? String(s.error) : '';
  } else if (s.state === 'connected') {
    el.title = `queue ${sub.queueName}`;
  } else if (s.state === 'connecting') {
    text = 'connecting…';
  } else if (s.state === 'closed' && s.fatal) {
    text = `closed · ${s.error?.status ?? ''} ${s.error?.code ?? 'error'}`;
    el.title = String(s.error?.message ?? '');
  }
  // Shared mode: one tab of this browser holds the connection for all of them.
  if (client.mode === 'shared-leader') text += ' · shared (this tab holds the connection)';
  if (client.mode === 'shared-follower') text += ' · shared (through another tab)';
  $('conn-text').textContent = text;
  // Drop connection closes this tab's socket: a follower has none.
  $('drop').disabled = s.state !== 'connected' || client.mode === 'shared-follower';
  $('drop').title = client.mode === 'shared-follower'
    ? 'This tab receives through the tab that holds the shared connection: press Drop connection there'
    : 'Closes this tab\'s WebSocket and refuses reconnects for a few seconds, like a network cut';
}

// ---- actions ----
function setStatus(kind, text) {
  const status = $('status');
  status.className = `status ${kind}`;
  status.textContent = text;
}

async function publish(count) {
  setStatus('', `publishing ${count}…`);
  try {
    const r = await fetch('/api/events', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customer, count, wait_ms: $('wait-receipts').checked ? WAIT_MS : 0 }),
    });
    const res = await r.json();
    if (!r.ok) throw new Error(res.error ?? `HTTP ${r.status}`);
    const n = res.ids.length;
    const away = client.state !== 'connected' ? ` while this tab is ${client.state}: they wait in its queue` : '';
    const handled = res.handled ? `; ${res.handled}` : '';
    setStatus(res.handled?.startsWith('no tab') ? 'warn' : 'ok', `${n} event${n === 1 ? '' : 's'} confirmed by RabbitMQ in ${res.ms} ms${handled}${away}`);
  } catch (e) {
    setStatus('err', `publish failed: ${e.message}`);
  }
}

// How long a publish with "wait for receipts" waits for the tabs.
const WAIT_MS = 3000;

function dropConnection() {
  cutAt = Date.now();
  cutUntil = cutAt + cutMs;
  shownAtCut = counts.shownTotal;
  socket?.close();
  setStatus('warn', `network cut for ${(cutMs / 1000).toFixed(1)} s: publish now, the events wait in this tab's queue`);
}

$('pub1').addEventListener('click', () => publish(1));
$('pub10').addEventListener('click', () => publish(10));
$('drop').addEventListener('click', dropConnection);
$('announce').addEventListener('submit', announce);

// ---- start ----
$('customer').value = customer;
$('cust-name').textContent = customer;
$('second-tab').href = `/?customer=${encodeURIComponent(customer)}`;
document.title = `durablews demo · customer ${customer}`;
const restored = events.slice(-MAX_ROWS);
restored.forEach((ev, i) => addRow(ev, counts.shownTotal - restored.length + i + 1, false));
feed.forEach((a) => addAnnouncement(a, false));

const demo = {
  client,
  sub,
  customer,
  loads,
  shown,
  stateLog,
  debugLog,
  wire,
  get state() {
    return client.state;
  },
  feedShown,
  feedGaps,
  feedStats() {
    return { shown: feedShown, offsets: feed.map((a) => a.offset), lastOffset: feedSub.lastOffset, client: feedSub.stats, stream: feedSub.stream };
  },
  receiptsConfirmed,
  fallbacks,
  stats() {
    renderCounters();
    return { shown: counts.shownTotal, duplicates: counts.duplicates, client: sub.stats, queue: sub.queueName, tabId: client.tabId };
  },
};
window.durablewsDemo = demo;

renderCounters();
renderState();
setInterval(() => {
  renderCounters();
  if (lastState.state === 'reconnecting') renderState();
}, 200);
$('fallback-after').textContent = `${(cfg.fallbackAfterMs / 1000).toFixed(0)} s`;
void pollFallbacks();
setInterval(() => void pollFallbacks(), 2000);

if (loginError) setStatus('err', loginError);
await client.connect();
function footer() {
  if (sessionMode && lastState.state === 'closed' && lastState.fatal) {
    $('footer').textContent = `This tab reads no queue: the tab-session endpoint refused it (HTTP ${lastState.error?.status}), and the broker would refuse any queue it was not given.`;
    return;
  }
  const how = sessionMode
    ? `declared by the server for the customer you logged in as, read with a token that can read only this queue and the announcements stream`
    : `declared by this page (TRUSTED MODE: shared guest credentials)`;
  $('footer').textContent =
    `This tab reads queue ${sub.queueName ?? '(none yet)'}, bound to exchange ${cfg.exchange} with key ${bindKey ?? `customer.${customer}.#`} ` +
    `(${how}; durable; deleted ${Math.round(cfg.queueExpiresMs / 60000)} min after the tab is gone).`;
}
footer();
client.onState((state, detail) => (state === 'connected' || detail.fatal) && footer());
