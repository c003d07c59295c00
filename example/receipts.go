package main

// Delivery receipts in the demo: every tab sends a receipt for each event
// its handler showed (web client, tab sessions: the session's receipts
// destination); the app reads them from its durable receipts queue
// (receipts.Subscriber), keeps them in a receipts.Tracker, answers POST
// /api/events with wait_ms once tabs handled the events ("handled by 2 tabs
// in 41 ms"), and lists a fallback for every event no tab of its customer
// handled within FallbackAfter (a real service would send an e-mail or a
// push notification there): GET /api/fallbacks.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/durablews/durablews/receipts"
)

// maxFallbacks bounds the fallbacks the app lists (the newest are kept).
const maxFallbacks = 200

// receiptsExchange and receiptsQueue name the demo's receipts exchange and
// its own durable receipts queue, after its events exchange (so that tests
// with their own exchange do not share them).
func receiptsExchange(cfg appConfig) string { return cfg.Exchange + ".receipts" }
func receiptsQueue(cfg appConfig) string    { return cfg.Exchange + ".receipts.app" }

// receiptsSide is the service's side of delivery receipts.
type receiptsSide struct {
	sub       *receipts.Subscriber
	tracker   *receipts.Tracker
	fallbacks fallbackLog
	after     time.Duration
	logger    watermill.LoggerAdapter
}

func newReceiptsSide(cfg appConfig) (*receiptsSide, error) {
	urls := splitURLs(cfg.AMQPURL)
	sub, err := receipts.NewSubscriber(receipts.Config{
		URL:      urls[0], // the receipts consumer reconnects to the first node
		Exchange: receiptsExchange(cfg),
		Queue:    receiptsQueue(cfg),
		Quorum:   cfg.QuorumQueues,
	}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	// Declared before any page can send a receipt: a SEND to a missing
	// exchange closes the tab's connection.
	if err := sub.SubscribeInitialize(receipts.DefaultBindingKey); err != nil {
		_ = sub.Close()
		return nil, fmt.Errorf("declare the receipts exchange and queue: %w", err)
	}
	rs := &receiptsSide{sub: sub, after: cfg.FallbackAfter, logger: cfg.Logger}
	if rs.logger == nil {
		rs.logger = watermill.NopLogger{}
	}
	rs.tracker, err = receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub}, cfg.Logger)
	if err != nil {
		_ = sub.Close()
		return nil, err
	}
	return rs, nil
}

// expect arms the fallback of one confirmed event: if no tab of userKey
// handled it within the app's FallbackAfter, it is listed (and logged).
func (rs *receiptsSide) expect(customer, userKey string, ev publishedEvent) {
	rs.tracker.ExpectUser(ev.ID, userKey, rs.after, func(string) {
		f := fallback{Customer: customer, ID: ev.ID, Event: ev.Event, Order: ev.Order, At: time.Now().UTC(),
			Text: fmt.Sprintf("no tab of customer %s handled %s #%d within %v: would send an e-mail", customer, ev.Event, ev.Order, rs.after)}
		rs.logger.Info("Fallback: "+f.Text, watermill.LogFields{"message_uuid": ev.ID})
		rs.fallbacks.add(f)
	})
}

// eventReceipts is what POST /api/events with wait_ms says about one event.
type eventReceipts struct {
	Tabs int   `json:"tabs"`           // tabs whose receipt arrived by the answer
	Ms   int64 `json:"ms,omitempty"`   // from the request's start to the first receipt
	Late bool  `json:"late,omitempty"` // no receipt of the customer's tabs within wait_ms
}

// wait waits up to wait for receipts of each event from tabs tabs of
// userKey (at least one) and reports, per event, how many tabs sent one by
// then: more may have, if the customer has more tabs open.
func (rs *receiptsSide) wait(ctx context.Context, start time.Time, userKey string, ids []string, tabs int, wait time.Duration) (map[string]eventReceipts, string) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out := make(map[string]eventReceipts, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			var err error
			if tabs <= 1 {
				_, err = rs.tracker.WaitUser(ctx, id, userKey)
			} else {
				// Only the customer's tabs get its events: all of an
				// event's receipts are theirs.
				_, err = rs.tracker.WaitTabs(ctx, id, tabs)
			}
			r := eventReceipts{Late: err != nil}
			if err == nil {
				r.Ms = time.Since(start).Milliseconds()
			}
			mu.Lock()
			out[id] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	byTab := map[string]bool{}
	var late int
	var last int64
	for _, id := range ids {
		r := out[id]
		for _, rc := range rs.tracker.Receipts(id) {
			if rc.UserKey == userKey {
				r.Tabs++
				byTab[rc.TabID] = true
			}
		}
		out[id] = r
		if r.Late {
			late++
		}
		last = max(last, r.Ms)
	}
	var summary string
	switch {
	case late == len(ids):
		summary = fmt.Sprintf("no tab handled %s within %v", plural(len(ids), "event"), wait)
	case late > 0:
		summary = fmt.Sprintf("%d of %s handled by %s; %d not within %v", len(ids)-late, plural(len(ids), "event"), plural(len(byTab), "tab"), late, wait)
	default:
		summary = fmt.Sprintf("handled by %s in %d ms", plural(len(byTab), "tab"), last)
	}
	return out, summary
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (rs *receiptsSide) Close() error {
	err := rs.tracker.Close()
	if serr := rs.sub.Close(); err == nil {
		err = serr
	}
	return err
}

// fallback is one event no tab of its customer handled in time.
type fallback struct {
	Customer string    `json:"customer"`
	ID       string    `json:"id"`
	Event    string    `json:"event"`
	Order    int64     `json:"order"`
	At       time.Time `json:"at"`
	Text     string    `json:"text"`
}

// fallbackLog keeps the newest maxFallbacks fallbacks.
type fallbackLog struct {
	mu   sync.Mutex
	list []fallback
}

func (l *fallbackLog) add(f fallback) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, f)
	if len(l.list) > maxFallbacks {
		l.list = slices.Delete(l.list, 0, len(l.list)-maxFallbacks)
	}
}

func (l *fallbackLog) of(customer string) []fallback {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []fallback{}
	for _, f := range l.list {
		if f.Customer == customer {
			out = append(out, f)
		}
	}
	return out
}

// handleFallbacks is GET /api/fallbacks?customer=42: the customer's
// fallbacks, oldest first.
func (a *app) handleFallbacks(w http.ResponseWriter, r *http.Request) {
	customer := r.URL.Query().Get("customer")
	if !customerRE.MatchString(customer) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("customer %q: want 1-32 of A-Z a-z 0-9 _ -", customer)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"fallbacks": a.receipts.fallbacks.of(customer), "after_ms": a.cfg.FallbackAfter.Milliseconds()})
}

// userKey is the receipts user key of a customer's tabs: with tab sessions
// the keyed part tabsession puts in the routing key, in trusted mode the
// customer id the page sends (receipts.userKey).
func (a *app) userKey(customer string) string {
	if a.sessions != nil {
		return a.sessions.UserKey(customer)
	}
	return customer
}
