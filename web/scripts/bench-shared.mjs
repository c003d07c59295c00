// Shared mode against a connection per tab, side by side in one run: one
// headless Chromium with TABS tabs of one origin, first with shared mode
// (the default), then with shared: false. For each: the broker connections
// the tabs use (the connections their queues' consumers are on), the broker
// node's connection memory (management API memory breakdown: readers +
// writers + channels + other; its change from before the tabs opened: the
// node is shared with other work, so read it as an order of magnitude), and
// the delivery latency publish -> handler (p50/p99; a publish goes through
// the management API, the same for both; through the leader for the
// followers in shared mode, direct otherwise).
//
//   cd web && eval "$(bash ../scripts/rabbitmq-versions.sh env 4.0)" && \
//     DURABLEWS_WEB_STOMP_URL=$DURABLEWS_WEB_STOMP_URL DURABLEWS_MANAGEMENT_URL=$DURABLEWS_MANAGEMENT_URL \
//     node scripts/bench-shared.mjs [TABS=10] [MESSAGES_PER_TAB=50]

process.env.DURABLEWS_E2E = '1';
const { WS_URL, sleep, api, enc, publish, startServer, eventHelpers, launchChromium } = await import('../test/e2e-harness.js');

const TABS = Number(process.argv[2] || 10);
const PER_TAB = Number(process.argv[3] || 50);

const run = Math.random().toString(36).slice(2, 8);
const ex = `dw-bench-shared-${run}`;
await api('PUT', `/api/exchanges/%2F/${ex}`, { type: 'topic', durable: true });
const { server, events, send, port } = await startServer();
const { of, waitFor, lastState } = eventHelpers(events, send, 60000);
const queues = new Set();

async function connMemory() {
  const [node] = await api('GET', '/api/nodes?columns=name');
  const n = await api('GET', `/api/nodes/${enc(node.name)}?memory=true`);
  const m = n.memory;
  return m.connection_readers + m.connection_writers + m.connection_channels + m.connection_other;
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function scenario(name, shared) {
  const memBefore = await connMemory();
  const browser = launchChromium(`http://127.0.0.1:${port}/web/test/e2e-launcher.html?tag=L${name}`);
  try {
    const tags = Array.from({ length: TABS }, (_, i) => `${name}${i}`);
    for (const tag of tags) {
      const u = new URL(`http://127.0.0.1:${port}/web/test/e2e.html`);
      u.search = new URLSearchParams({ tag, url: WS_URL, exchange: ex, bindingKey: `to.${tag}.#`, name: 'orders', shared: shared ? '1' : '0' }).toString();
      send(`L${name}`, { op: 'open', url: u.href });
    }
    for (const tag of tags) await waitFor(`${tag} connected`, () => lastState(tag) === 'connected' && of(tag, 'claimed')[0]);
    for (const tag of tags) queues.add(of(tag, 'claimed')[0].queue);
    await sleep(6000); // management stats (consumer details, memory) refresh every ~5 s
    const conns = new Set();
    for (const tag of tags) {
      const info = await waitFor(`consumer of ${tag}`, async () => {
        const i = await api('GET', `/api/queues/%2F/${enc(of(tag, 'claimed')[0].queue)}`);
        return i?.consumer_details?.[0]?.channel_details?.connection_name && i;
      });
      conns.add(info.consumer_details[0].channel_details.connection_name);
    }
    const memAfter = await connMemory();
    const leader = tags.find((tag) => of(tag, 'mode').at(-1)?.mode === 'shared-leader');

    // Latency: one message at a time round-robin over the tabs, each
    // carrying its publish time; the page reports when its handler started.
    /** @type {Map<string, number>} */
    const sentAt = new Map();
    for (let i = 0; i < PER_TAB; i++) {
      for (const tag of tags) {
        const id = `${tag}-l${i}`;
        sentAt.set(id, Date.now());
        await publish(ex, `to.${tag}.x`, id, { i });
      }
      await sleep(5);
    }
    await waitFor('every message handled', () => tags.every((tag) => of(tag, 'handle-start').length >= PER_TAB), 120000);
    const lat = { leader: [], follower: [], all: [] };
    for (const tag of tags) {
      for (const e of of(tag, 'handle-start')) {
        const ms = e.t - sentAt.get(e.id);
        lat.all.push(ms);
        (shared && tag !== leader ? lat.follower : lat.leader).push(ms);
      }
    }
    return { name, tabs: TABS, connections: conns.size, connMemDeltaKiB: Math.round((memAfter - memBefore) / 1024), lat };
  } finally {
    browser.stop();
    await sleep(3000); // the browser's connections close
  }
}

try {
  const shared = await scenario('S', true);
  const own = await scenario('O', false);
  const fmt = (xs) => (xs.length ? `${pct(xs, 50)} / ${pct(xs, 99)} ms (n=${xs.length})` : '—');
  console.log(`\n1 browser x ${TABS} tabs, ${PER_TAB} messages per tab, broker ${WS_URL}\n`);
  console.log('| | shared (default) | per tab (shared: false) |');
  console.log('|---|---|---|');
  console.log(`| broker connections | ${shared.connections} | ${own.connections} |`);
  console.log(`| broker connection memory, change (KiB) | ${shared.connMemDeltaKiB} | ${own.connMemDeltaKiB} |`);
  console.log(`| latency p50 / p99, all tabs | ${fmt(shared.lat.all)} | ${fmt(own.lat.all)} |`);
  console.log(`| latency p50 / p99, leader tab (direct) | ${fmt(shared.lat.leader)} | |`);
  console.log(`| latency p50 / p99, follower tabs (through the leader) | ${fmt(shared.lat.follower)} | |`);
} finally {
  server.closeAllConnections?.();
  server.close();
  await sleep(500);
  for (const q of queues) await api('DELETE', `/api/queues/%2F/${enc(q)}`).catch(() => {});
  await api('DELETE', `/api/exchanges/%2F/${enc(ex)}`).catch(() => {});
}
