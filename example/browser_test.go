package main

// End-to-end test of the demo in headless Chromium (Debian's /usr/bin/chromium,
// installed by scripts/chromium.sh) in tab-session mode, against a PRIVATE
// RabbitMQ node that internal/oauthbroker boots and configures with
// scripts/rabbitmq-tab-sessions.sh (the shared broker is never touched): the
// real page, the real browser client from web/, the real Web-STOMP plugin and
// OAuth 2 backend. Screenshots go to ../artifacts/; with
// DURABLEWS_DEMO_SCREENSHOT=path the test also writes the README screenshot.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/durablews/durablews/internal/oauthbroker"
	"github.com/durablews/durablews/internal/testbroker"
	"github.com/durablews/durablews/tabsession"
)

const chromiumPath = "/usr/bin/chromium"

// waitTimeout bounds every wait for the page; reconnects after a 1.5 s cut
// take up to ~5 s with the page's back-off.
const waitTimeout = 20 * time.Second

// watchdogTimeout bounds the whole browser test (it takes ~10-30 s).
const watchdogTimeout = 3 * time.Minute

// harness is one app + one browser shared by the scenarios.
type harness struct {
	t        *testing.T
	app      *app
	amqpURL  string
	wsURL    string
	key      []byte // the private node's tab-token signing key
	exchange string
	browser  context.Context
	// keepExchange: the clean-up deletes only the tab queues.
	keepExchange bool
	// stopBrowser kills the browser (idempotent).
	stopBrowser func()
	http        *http.Client

	mu     sync.Mutex
	queues map[string]bool // tab queues to delete at the end
}

func TestBrowser(t *testing.T) {
	started := time.Now()
	node, key := startSessionNode(t)
	t.Logf("private tab-session node %s up after %v", node.Name(), time.Since(started).Round(time.Millisecond))
	h := &harness{
		t:        t,
		amqpURL:  node.AMQPURL(),
		wsURL:    node.WebSTOMPURL(),
		key:      key,
		exchange: "durablews-example-test-" + randHex(6),
		queues:   map[string]bool{},
	}
	h.start(t, appConfig{
		Logger: &testLogger{t: t},
		// Short, so that the fallback subtest does not wait long.
		FallbackAfter: 2 * time.Second,
	})
	// A watchdog: chromedp calls can block past their context when the
	// browser wedges. Stopping the browser makes them fail, so a hang becomes
	// a failure with goroutine stacks instead of go test's 10-minute timeout.
	watchdog := time.AfterFunc(watchdogTimeout, func() {
		fmt.Fprintf(os.Stderr, "TestBrowser: still running after %v; goroutines:\n", watchdogTimeout)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		h.stopBrowser()
	})
	t.Cleanup(func() { watchdog.Stop() })
	t.Logf("app on %s, exchange %s, browser up after %v", h.app.URL(), h.exchange, time.Since(started).Round(time.Millisecond))

	t.Run("a_live_events", h.testLive)
	t.Run("b1_drop_connection", h.testDropConnection)
	t.Run("b2_reload", h.testReload)
	t.Run("b3_queue_lost", h.testQueueLost)
	t.Run("c_two_tabs_and_other_customer", h.testTwoTabs)
	t.Run("d_other_customers_binding_refused", h.testForeignBinding)
	t.Run("e_announcements_survive_reloads", h.testAnnouncements)
	t.Run("f_receipts_and_fallbacks", h.testReceipts)
	if path := os.Getenv("DURABLEWS_DEMO_SCREENSHOT"); path != "" {
		t.Run("docs_screenshot", func(t *testing.T) { h.docsScreenshot(t, path) })
	}
	t.Logf("browser scenarios took %v", time.Since(started).Round(time.Millisecond))
}

// startSessionNode checks that Chromium is installed and starts a
// private node configured for tab sessions exactly as
// scripts/rabbitmq-tab-sessions.sh configures the shared one; it returns
// the node and its signing key.
func startSessionNode(t *testing.T) (*testbroker.Node, []byte) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is missing (%v): run `bash scripts/chromium.sh` (or `make chromium`) to install Debian's chromium", err)
	}
	node, files, _ := oauthbroker.Start(t, testbroker.Options{})
	key, err := tabsession.LoadSigningKey(files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return node, key
}

// start starts the demo app of cfg on h's broker (cfg's zero AMQPURL and
// WebSTOMPURL: h's), its HTTP client and a headless browser, all closed at
// the end of the test, and cleans the broker up after them.
func (h *harness) start(t *testing.T, cfg appConfig) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Exchange, cfg.Stream = h.exchange, h.exchange+".announcements"
	cfg.WebDir = "../web"
	cfg.SigningKey, cfg.KeyID = h.key, oauthbroker.KeyID
	if cfg.AMQPURL == "" {
		cfg.AMQPURL = h.amqpURL
	}
	if cfg.WebSTOMPURL == "" {
		cfg.WebSTOMPURL = h.wsURL
	}
	a, err := newApp(cfg)
	if err != nil {
		t.Fatalf("start the demo app: %v", err)
	}
	h.app = a
	t.Cleanup(h.cleanupBroker) // runs last: after the app and the browser are gone
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("app.Close: %v", err)
		}
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{}
	h.http = &http.Client{Transport: transport, Timeout: 40 * time.Second}
	t.Cleanup(transport.CloseIdleConnections)
	h.browser, h.stopBrowser = startBrowser(t)
}

// a. Open the page for a customer, publish N events through the API: all N
// are shown, once each, in publish order.
func (h *harness) testLive(t *testing.T) {
	tab := h.openTab(t, "42", nil)
	var ids []string
	for _, n := range []int{1, 10, 14} {
		ids = append(ids, h.publish(t, "42", n)...)
	}
	shown := tab.waitShown(t, ids)
	if !slices.Equal(shown, ids) {
		t.Errorf("shown in a different order than published:\n got %v\nwant %v", shown, ids)
	}
	st := tab.stats(t)
	if st.Duplicates != 0 || st.Client.Duplicates != 0 {
		t.Errorf("duplicates dropped on a quiet connection: %+v", st)
	}
	t.Logf("a: published %d, shown %d (each once, in order); duplicates dropped %d; client stats %+v", len(ids), len(shown), st.Duplicates, st.Client)
	tab.screenshot(t, "a-live-events")
}

// b(i). "Drop connection" closes the tab's socket while events flow, and
// refuses reconnects for 2 s (a network cut) while more are published:
// afterwards every event is shown exactly once.
func (h *harness) testDropConnection(t *testing.T) {
	const cut = 2 * time.Second
	tab := h.openTab(t, "42", url.Values{"cut": {strconv.Itoa(int(cut.Milliseconds()))}})
	before := h.publish(t, "42", 5)
	tab.waitShown(t, before)

	// Publish in the background, in batches, and cut the connection while
	// the batches flow: some events are in flight (delivered, not acked)
	// when the socket closes.
	pub := h.publishAsync(t, "42", 3, 10, 20*time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	connectedBefore := tab.countStates(t, "connected")
	clicked := time.Now()
	tab.do(t, "click Drop connection", chromedp.Click(chromedp.ID("drop")))
	flowing, err := pub.wait()
	if err != nil {
		t.Fatal(err)
	}
	// The socket closes once the closing handshake is done; then the tab
	// retries and fails until the cut ends.
	tab.waitFor(t, "reconnecting after Drop connection", `durablewsDemo.state === 'reconnecting'`)
	away := h.publish(t, "42", 10)
	elapsed := time.Since(clicked)
	if n := tab.countStates(t, "connected"); n != connectedBefore {
		t.Errorf("the tab was connected again within %v of Drop connection, before the %v cut ended", elapsed, cut)
	}
	t.Logf("b1: published %d while the tab was cut off (%v into the %v cut)", len(away), elapsed.Round(time.Millisecond), cut)
	all := slices.Concat(before, flowing, away)
	shown := tab.waitShown(t, all)
	back := time.Since(clicked)
	reconnecting := tab.countStates(t, "reconnecting")
	if reconnecting == 0 {
		t.Errorf("the tab never went through 'reconnecting' after Drop connection: %+v", tab.stateLog(t))
	}
	st := tab.stats(t)
	t.Logf("b1: %d before + %d published as the socket closed + %d during the cut; all shown after %v and %d failed attempts: %d shown, each once; redelivered %d; duplicates dropped %d (client %+v)",
		len(before), len(flowing), len(away), back.Round(time.Millisecond), reconnecting, len(shown), tab.countRedelivered(t), st.Duplicates, st.Client)
	if got := h.readyMessages(t, st.Queue); got != 0 {
		t.Errorf("queue %s still has %d ready messages", st.Queue, got)
	}
	tab.screenshot(t, "b1-after-drop")
}

// b(iii). The tab's queue disappears while the tab is cut off (what an
// x-expires deadline, an operator or a broker crash right after the
// declare does): the tab session creates it again and the page is told
// that the events of the gap are missing, instead of silently not
// showing them.
func (h *harness) testQueueLost(t *testing.T) {
	const cut = 2 * time.Second
	tab := h.openTab(t, "42", url.Values{"cut": {strconv.Itoa(int(cut.Milliseconds()))}})
	before := h.publish(t, "42", 3)
	tab.waitShown(t, before)
	queue := tab.stats(t).Queue

	tab.do(t, "click Drop connection", chromedp.Click(chromedp.ID("drop")))
	tab.waitFor(t, "reconnecting after Drop connection", `durablewsDemo.state === 'reconnecting'`)
	if err := h.withChannel(func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(queue, false, false, false)
		return err
	}); err != nil {
		t.Fatalf("delete the tab's queue %s: %v", queue, err)
	}
	gap := h.publish(t, "42", 4) // confirmed, but no queue is bound for them any more
	tab.waitFor(t, "connected again, with queueReset", `durablewsDemo.stateLog.some((s) => s.state === 'connected' && s.queueReset)`)
	var status string
	tab.mustEval(t, `document.getElementById('status').textContent`, &status)
	if !strings.Contains(status, "created again") {
		t.Errorf("the page does not say its queue was created again: status %q", status)
	}
	after := h.publish(t, "42", 3)
	shown := tab.waitShown(t, slices.Concat(before, after))
	for _, id := range gap {
		if slices.Contains(shown, id) {
			t.Errorf("event %s published while the queue was gone was shown: the signal would be wrong", id)
		}
	}
	resets := 0
	for _, s := range tab.stateLog(t) {
		if s.QueueReset {
			resets++
		}
	}
	if resets != 1 {
		t.Errorf("queueReset reported %d times, want 1: %+v", resets, tab.stateLog(t))
	}
	t.Logf("b3: queue %s deleted during a %v cut; %d events of the gap missing and the page told so (%q); %d before and %d after shown", queue, cut, len(gap), status, len(before), len(after))
	tab.screenshot(t, "b3-queue-lost")
}

// b(ii). Reload the page (sessionStorage keeps the tab id, so the same
// queue): events published during the reload, and while the tab is away
// altogether, are each shown exactly once once the page is back.
func (h *harness) testReload(t *testing.T) {
	tab := h.openTab(t, "42", nil)
	before := h.publish(t, "42", 5)
	tab.waitShown(t, before)
	st0 := tab.stats(t)

	// 1. A reload while events are being published.
	step := time.Now()
	pub := h.publishAsync(t, "42", 5, 4, 40*time.Millisecond)
	tab.do(t, "reload", chromedp.Reload())
	during, err := pub.wait()
	if err != nil {
		t.Fatal(err)
	}
	tab.waitLoaded(t, 2)
	reloaded := time.Since(step)

	// 2. The tab leaves the page; events are published while no page of it
	// is open; then it comes back (a reload with a gap in the middle).
	step = time.Now()
	tab.do(t, "leave the page", chromedp.Navigate("about:blank"))
	away := h.publish(t, "42", 12)
	tab.do(t, "come back", chromedp.Navigate(tab.url))
	tab.waitLoaded(t, 3)
	t.Logf("b2: reload to connected %v; away and back to connected %v", reloaded.Round(time.Millisecond), time.Since(step).Round(time.Millisecond))

	all := slices.Concat(before, during, away)
	shown := tab.waitShown(t, all)
	st := tab.stats(t)
	if st.TabID != st0.TabID || st.Queue != st0.Queue {
		t.Errorf("tab id/queue changed across reloads: %s/%s -> %s/%s", st0.TabID, st0.Queue, st.TabID, st.Queue)
	}
	t.Logf("b2: %d before + %d published during a reload + %d while the tab was away; shown %d, each once, after 2 reloads (same tab id %s, queue %s); redelivered %d; duplicates dropped %d",
		len(before), len(during), len(away), len(shown), st.TabID, st.Queue, tab.countRedelivered(t), st.Duplicates)
	if got := h.readyMessages(t, st.Queue); got != 0 {
		t.Errorf("queue %s still has %d ready messages", st.Queue, got)
	}
	tab.screenshot(t, "b2-after-reloads")
}

// c. Two tabs of the same customer (two targets, each with its own
// sessionStorage, so two queues) each get every event; a tab of another
// customer gets none of them, and only its own.
func (h *harness) testTwoTabs(t *testing.T) {
	one := h.openTab(t, "42", nil)
	two := h.openTab(t, "42", nil)
	// Customer 43 is another user: another browser (context), with its own
	// login cookie.
	other := h.openTabWith(t, "43", nil, tabOptions{newBrowserContext: true})
	s1, s2 := one.stats(t), two.stats(t)
	if s1.TabID == s2.TabID || s1.Queue == s2.Queue {
		t.Fatalf("two tabs share a tab id or queue: %+v %+v", s1, s2)
	}

	ids := h.publish(t, "42", 15)
	shown1 := one.waitShown(t, ids)
	shown2 := two.waitShown(t, ids)
	mine := h.publish(t, "43", 3)
	shownOther := other.waitShown(t, mine)
	// 43's events came after 42's on the same exchange: had any of 42's
	// reached tab 43, it would be shown by now.
	time.Sleep(200 * time.Millisecond)
	shownOther = other.shown(t)
	if !slices.Equal(shownOther, mine) {
		t.Errorf("customer 43's tab shows %v, want only its own %v", shownOther, mine)
	}
	for _, tab := range []*tab{one, two} {
		for _, id := range tab.shown(t) {
			if slices.Contains(mine, id) {
				t.Errorf("a customer 42 tab shows customer 43's event %s", id)
			}
		}
	}
	t.Logf("c: 15 events for 42 -> tab 1 shows %d, tab 2 shows %d (queues %s, %s); 3 events for 43 -> tab 43 shows %d, none of 42's",
		len(shown1), len(shown2), s1.Queue, s2.Queue, len(shownOther))
	one.screenshot(t, "c-tab1-customer42")
	other.screenshot(t, "c-tab-customer43")
}

// d. A tab logged in as customer 42 whose page asks the tab-session endpoint
// for customer 43's binding (customer.43.#) is refused with 403, shows it as
// a fatal state and does not retry; it never receives 43's events, while a
// tab of 43 (another browser) gets them.
func (h *harness) testForeignBinding(t *testing.T) {
	other := h.openTabWith(t, "43", nil, tabOptions{newBrowserContext: true})
	evil := h.openTabWith(t, "42", url.Values{"bind": {"customer.43.#"}}, tabOptions{noWait: true})
	evil.waitFor(t, "fatal 403 state", `!!window.durablewsDemo && durablewsDemo.state === 'closed' && durablewsDemo.stateLog.some((s) => s.fatal && s.status === 403)`)
	var shownState, status string
	evil.mustEval(t, `document.getElementById('conn-text').textContent`, &shownState)
	evil.mustEval(t, `document.getElementById('status').textContent`, &status)
	if !strings.Contains(shownState, "403") || !strings.Contains(status, "not allowed") {
		t.Errorf("the page does not show the 403: state %q, status %q", shownState, status)
	}
	mine := h.publish(t, "43", 5)
	other.waitShown(t, mine)
	time.Sleep(300 * time.Millisecond)
	if got := evil.shown(t); len(got) != 0 {
		t.Errorf("customer 42's tab asking for customer.43.# shows %v", got)
	}
	log := evil.stateLog(t)
	if n := evil.countStates(t, "connecting"); n != 1 || log[len(log)-1].State != "closed" {
		t.Errorf("the refused tab retried or changed state after the 403: %+v", log)
	}
	for _, s := range log {
		if s.State == "connected" || s.State == "reconnecting" {
			t.Errorf("the refused tab was %s: %+v", s.State, log)
		}
	}
	t.Logf("d: tab of 42 asking for customer.43.#: %q, %q, state log %+v; 43's tab shows its %d events, 42's tab none", shownState, status, log, len(mine))
	evil.screenshot(t, "d-foreign-binding-403")
}

// docsScreenshot stages the README's screenshot (docs/demo.png) on an app
// with the demo's own exchange: a few live events, then Drop connection while
// events flow and more during the cut. Events in flight when the socket
// closes come back marked redelivered; it tries a few fresh tabs until one
// shows that. Two announcements fill the feed column.
func (h *harness) docsScreenshot(t *testing.T, path string) {
	exchange := defaultAppConfig().Exchange
	a, err := newApp(appConfig{Addr: "127.0.0.1:0", AMQPURL: h.amqpURL, WebSTOMPURL: h.app.cfg.WebSTOMPURL,
		Exchange: exchange, WebDir: "../web", SigningKey: h.key, KeyID: oauthbroker.KeyID, Logger: &testLogger{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	d := &harness{t: t, app: a, amqpURL: h.amqpURL, exchange: exchange, keepExchange: true,
		browser: h.browser, http: h.http, queues: map[string]bool{}}
	t.Cleanup(d.cleanupBroker)
	t.Cleanup(func() { _ = a.Close() })
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	news := []string{d.postAnnouncementOK(t, "New: live order tracking for every customer"),
		d.postAnnouncementOK(t, "Maintenance tonight 22:00-22:15 UTC: tabs reconnect by themselves")}
	for attempt := 1; ; attempt++ {
		// A browser context per attempt: a tab left open by an earlier
		// attempt would share its connection (shared mode), and Drop
		// connection acts on the tab holding it.
		tab := d.openTabWith(t, "42", url.Values{"cut": {"2000"}}, tabOptions{newBrowserContext: true})
		tab.waitFeed(t, news)
		ids := d.publish(t, "42", 1)
		ids = append(ids, d.publish(t, "42", 2)...)
		tab.waitShown(t, ids)
		pub := d.publishAsync(t, "42", 2, 3, 10*time.Millisecond)
		time.Sleep(10 * time.Millisecond)
		tab.do(t, "click Drop connection", chromedp.Click(chromedp.ID("drop")))
		flowing, err := pub.wait()
		if err != nil {
			t.Fatal(err)
		}
		tab.waitFor(t, "reconnecting", `durablewsDemo.state === 'reconnecting'`)
		ids = slices.Concat(ids, flowing, d.publish(t, "42", 3))
		tab.waitShown(t, ids)
		tab.waitFor(t, "status line", `document.getElementById('status').textContent.includes('none lost')`)
		tab.waitFor(t, "every row's receipt confirmed", `[...document.querySelectorAll('#events td.receipt')].every((td) => td.textContent === '✓')`)
		if n := tab.countRedelivered(t); n > 0 || attempt == 5 {
			tab.writeScreenshot(t, path)
			t.Logf("docs: attempt %d: %d events shown, %d redelivered", attempt, len(ids), n)
			return
		}
	}
}

// ---- browser ----

func startBrowser(t *testing.T) (context.Context, func()) {
	t.Helper()
	dir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoSandbox,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1200, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// The first Run starts the browser; it must not have a timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v (run `bash scripts/chromium.sh` to check it starts headless)", chromiumPath, err)
	}
	pid := chromedp.FromContext(ctx).Browser.Process().Pid
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			cancelAlloc() // waits for the browser process
		})
	}
	t.Cleanup(func() {
		// Registered after t.TempDir, so this runs before the directory is removed.
		stop()
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("chromium (pid %d) still runs after the browser was closed", pid)
		}
		if n := killChromiumUsing(dir, 3*time.Second); n > 0 {
			t.Errorf("%d chromium child processes outlived the browser; killed them", n)
		}
	})
	return ctx, stop
}

// killChromiumUsing kills the processes started with --user-data-dir=dir
// until none is left, and returns how many it found.
func killChromiumUsing(dir string, limit time.Duration) int {
	want := []byte("--user-data-dir=" + dir)
	found := map[int]bool{}
	deadline := time.Now().Add(limit)
	for quiet := 0; quiet < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		entries, _ := os.ReadDir("/proc")
		n := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil || !slices.ContainsFunc(bytes.Split(cmd, []byte{0}), func(arg []byte) bool { return bytes.Equal(arg, want) }) {
				continue
			}
			if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && bytes.Contains(st, []byte(") Z ")) {
				continue // a zombie, already dead
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			found[pid] = true
			n++
		}
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return len(found)
}

// tab is one browser tab (a chromedp target) showing the demo page.
type tab struct {
	h    *harness
	ctx  context.Context
	url  string
	name string

	mu     sync.Mutex
	errors []string // uncaught exceptions and console.error calls
}

// tabOptions change how openTabWith opens a tab.
type tabOptions struct {
	// newBrowserContext opens the tab in a new browser context (like
	// another browser: its own cookies, so its own demo login).
	newBrowserContext bool
	// noWait returns once the page is navigated, not once it is connected.
	noWait bool
}

func (h *harness) openTab(t *testing.T, customer string, extra url.Values) *tab {
	t.Helper()
	return h.openTabWith(t, customer, extra, tabOptions{})
}

func (h *harness) openTabWith(t *testing.T, customer string, extra url.Values, o tabOptions) *tab {
	t.Helper()
	q := url.Values{"customer": {customer}}
	for k, v := range extra {
		q[k] = v
	}
	var ctxOpts []chromedp.ContextOption
	if o.newBrowserContext {
		ctxOpts = append(ctxOpts, chromedp.WithNewBrowserContext())
	}
	ctx, cancel := chromedp.NewContext(h.browser, ctxOpts...)
	tb := &tab{h: h, ctx: ctx, url: h.app.URL() + "/?" + q.Encode(), name: t.Name() + "/" + customer}
	if err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg = d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			var parts []string
			for _, a := range ev.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, string(a.Value))
				}
			}
			msg = "console.error: " + strings.Join(parts, " ")
		default:
			return
		}
		tb.mu.Lock()
		tb.errors = append(tb.errors, msg)
		tb.mu.Unlock()
	}); err != nil {
		cancel()
		t.Fatalf("open a tab: %v", err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		errs := slices.Clone(tb.errors)
		tb.mu.Unlock()
		for _, e := range errs {
			t.Errorf("page error in %s: %s", tb.name, e)
		}
		cancel()
	})
	tb.do(t, "open "+tb.url, chromedp.EmulateViewport(1200, 800), chromedp.Navigate(tb.url))
	if !o.noWait {
		tb.waitLoaded(t, 1)
	}
	return tb
}

// waitLoaded waits until the page (its load number loads in this tab) is
// connected, and remembers its queue for the clean-up.
func (tb *tab) waitLoaded(t *testing.T, loads int) {
	t.Helper()
	expr := fmt.Sprintf(`!!window.durablewsDemo && durablewsDemo.loads === %d && durablewsDemo.state === 'connected'`, loads)
	tb.waitFor(t, "page load "+strconv.Itoa(loads)+" connected", expr)
	for _, s := range tb.stateLog(t) {
		if s.State == "reconnecting" && s.Error != "" && !strings.Contains(s.Error, "1006") {
			t.Logf("%s: page load %d: a connection attempt failed: %+v", tb.name, loads, s)
		}
	}
	st := tb.stats(t)
	tb.h.mu.Lock()
	tb.h.queues[st.Queue] = true
	tb.h.mu.Unlock()
}

func (tb *tab) waitFor(t *testing.T, what, expr string) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(waitTimeout)
	for {
		ok, err := eval[bool](tb, expr)
		if err == nil && ok {
			if d := time.Since(start); d > 3*time.Second {
				log, _ := eval[json.RawMessage](tb, `durablewsDemo.stateLog.slice(-6)`)
				t.Logf("%s: slow: %v waiting for %s; last states %s", tb.name, d.Round(time.Millisecond), what, log)
			}
			return
		}
		if time.Now().After(deadline) {
			state, _ := eval[json.RawMessage](tb, `window.durablewsDemo ? {state: durablewsDemo.state, shown: durablewsDemo.shown.length, log: durablewsDemo.stateLog.slice(-5), stats: durablewsDemo.stats()} : null`)
			t.Fatalf("%s: timed out after %v waiting for %s (last error %v); page: %s", tb.name, waitTimeout, what, err, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do runs browser actions in the tab, each call bounded by waitTimeout.
func (tb *tab) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

func eval[T any](tb *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

func (tb *tab) mustEval(t *testing.T, expr string, out any) {
	t.Helper()
	raw, err := eval[json.RawMessage](tb, expr)
	if err != nil {
		t.Fatalf("%s: evaluate %s: %v", tb.name, expr, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s: decode %s: %v", tb.name, raw, err)
	}
}

func (tb *tab) shown(t *testing.T) []string {
	t.Helper()
	var ids []string
	tb.mustEval(t, `durablewsDemo.shown`, &ids)
	return ids
}

func (tb *tab) state(t *testing.T) string {
	t.Helper()
	var s string
	tb.mustEval(t, `durablewsDemo.state`, &s)
	return s
}

// countStates counts the page's changes to state so far.
func (tb *tab) countStates(t *testing.T, state string) int {
	t.Helper()
	n := 0
	for _, s := range tb.stateLog(t) {
		if s.State == state {
			n++
		}
	}
	return n
}

type stateEntry struct {
	State   string  `json:"state"`
	Attempt int     `json:"attempt"`
	DelayMs float64 `json:"delayMs"`
	Error   string  `json:"error"`
	Status  int     `json:"status"`
	Fatal   bool    `json:"fatal"`
	// QueueReset: 'connected' after the server had to create the queue again.
	QueueReset bool `json:"queueReset"`
}

func (tb *tab) stateLog(t *testing.T) []stateEntry {
	t.Helper()
	var log []stateEntry
	tb.mustEval(t, `durablewsDemo.stateLog`, &log)
	return log
}

type pageStats struct {
	Shown      int    `json:"shown"`
	Duplicates int    `json:"duplicates"`
	Queue      string `json:"queue"`
	TabID      string `json:"tabId"`
	Client     struct {
		Delivered  int `json:"delivered"`
		Handled    int `json:"handled"`
		Duplicates int `json:"duplicates"`
		Acked      int `json:"acked"`
		Stale      int `json:"stale"`
	} `json:"client"`
}

func (tb *tab) stats(t *testing.T) pageStats {
	t.Helper()
	var st pageStats
	tb.mustEval(t, `durablewsDemo.stats()`, &st)
	return st
}

func (tb *tab) countRedelivered(t *testing.T) int {
	t.Helper()
	var n int
	tb.mustEval(t, `document.querySelectorAll('#events .badge').length`, &n)
	return n
}

// waitShown waits until every id in want is shown, then checks that the page
// shows each exactly once and nothing else, and returns what it shows.
func (tb *tab) waitShown(t *testing.T, want []string) []string {
	t.Helper()
	js, _ := json.Marshal(want)
	tb.waitFor(t, fmt.Sprintf("%d events shown", len(want)),
		fmt.Sprintf(`(() => { const s = new Set(durablewsDemo.shown); return %s.every((id) => s.has(id)); })()`, js))
	shown := tb.shown(t)
	counts := map[string]int{}
	for _, id := range shown {
		counts[id]++
	}
	for _, id := range want {
		if counts[id] != 1 {
			t.Errorf("%s: event %s shown %d times, want exactly once", tb.name, id, counts[id])
		}
		delete(counts, id)
	}
	for id, n := range counts {
		t.Errorf("%s: shows %d× an event it should not: %s", tb.name, n, id)
	}
	return shown
}

func (tb *tab) screenshot(t *testing.T, name string) {
	t.Helper()
	tb.writeScreenshot(t, filepath.Join("..", "artifacts", "example-"+name+".png"))
}

func (tb *tab) writeScreenshot(t *testing.T, path string) {
	t.Helper()
	// End the highlight animation of new rows, so they show as they will stay.
	if _, err := eval[bool](tb, `(document.querySelectorAll('tr.fresh').forEach((r) => r.classList.remove('fresh')), true)`); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// ---- API and broker ----

func (h *harness) publish(t *testing.T, customer string, n int) []string {
	t.Helper()
	ids, err := h.post(customer, n)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (h *harness) post(customer string, n int) ([]string, error) {
	body, _ := json.Marshal(map[string]any{"customer": customer, "count": n})
	resp, err := h.http.Post(h.app.URL()+"/api/events", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("POST /api/events: %w", err)
	}
	defer resp.Body.Close()
	var out eventsResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("POST /api/events: %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || len(out.IDs) != n {
		return nil, fmt.Errorf("POST /api/events: %s, %d ids for %d events: %s %v", resp.Status, len(out.IDs), n, out.Error, out.Failed)
	}
	return out.IDs, nil
}

type asyncPublish struct {
	done chan struct{}
	ids  []string
	err  error
}

// publishAsync publishes batches×size events in the background, pausing
// between batches.
func (h *harness) publishAsync(t *testing.T, customer string, batches, size int, pause time.Duration) *asyncPublish {
	p := &asyncPublish{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := range batches {
			if i > 0 {
				time.Sleep(pause)
			}
			ids, err := h.post(customer, size)
			if err != nil {
				p.err = err
				return
			}
			p.ids = append(p.ids, ids...)
		}
	}()
	t.Cleanup(func() { <-p.done })
	return p
}

func (p *asyncPublish) wait() ([]string, error) {
	<-p.done
	return p.ids, p.err
}

func (h *harness) withChannel(f func(ch *amqp.Channel) error) error {
	conn, err := amqp.Dial(h.amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

// readyMessages is how many messages wait in queue (not counting unacked).
func (h *harness) readyMessages(t *testing.T, queue string) int {
	t.Helper()
	var n int
	err := h.withChannel(func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		n = q.Messages
		return err
	})
	if err != nil {
		t.Errorf("inspect queue %s: %v", queue, err)
	}
	return n
}

func (h *harness) cleanupBroker() {
	h.mu.Lock()
	queues := make([]string, 0, len(h.queues))
	for q := range h.queues {
		queues = append(queues, q)
	}
	h.mu.Unlock()
	err := h.withChannel(func(ch *amqp.Channel) error {
		var errs []error
		for _, q := range queues {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				errs = append(errs, err)
			}
		}
		if !h.keepExchange {
			errs = append(errs, ch.ExchangeDelete(h.exchange, false, false))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		h.t.Errorf("clean up exchange %s and %d queues: %v", h.exchange, len(queues), err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testLogger logs warnings and errors of the app to the test log.
type testLogger struct {
	t      *testing.T
	fields watermill.LogFields
}

func (l *testLogger) Error(msg string, err error, fields watermill.LogFields) {
	l.t.Logf("app error: %s: %v %v", msg, err, l.fields.Add(fields))
}
func (l *testLogger) Info(string, watermill.LogFields)  {}
func (l *testLogger) Debug(string, watermill.LogFields) {}
func (l *testLogger) Trace(string, watermill.LogFields) {}
func (l *testLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return &testLogger{t: l.t, fields: l.fields.Add(fields)}
}

// TestMain fails the package if a test leaves goroutines behind (app,
// publisher, router, chromedp).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
