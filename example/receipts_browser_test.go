package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durablews/durablews/receipts"
)

// f. Delivery receipts in the demo: every event a tab showed gets its
// receipt at the app (the row's ✓ and the app's tracker), a publish with
// wait_ms answers "handled by 2 tabs", and events published for a customer
// with no tab open become fallbacks after FallbackAfter.
func (h *harness) testReceipts(t *testing.T) {
	const customer = "77"
	a, b := h.openTab(t, customer, nil), h.openTab(t, customer, nil)
	res := h.postWait(t, customer, 5, 2, 10*time.Second)
	t.Logf("f: POST /api/events wait_ms: %q (confirmed in %d ms)", res.Handled, res.Millis)
	if !strings.HasPrefix(res.Handled, "handled by 2 tabs in ") {
		t.Errorf("answer %q: want handled by 2 tabs", res.Handled)
	}
	for _, id := range res.IDs {
		if r := res.Receipts[id]; r.Late || r.Tabs != 2 {
			t.Errorf("event %s: receipts %+v, want 2 tabs", id, r)
		}
	}
	ukey := h.app.userKey(customer)
	for _, tb := range []*tab{a, b} {
		tb.waitShown(t, res.IDs)
		tb.waitFor(t, "5 receipts confirmed", fmt.Sprintf(`durablewsDemo.receiptsConfirmed.length >= %d && document.querySelectorAll('#events td.receipt').length >= 5 && [...document.querySelectorAll('#events td.receipt')].slice(0, 5).every((td) => td.textContent === '✓')`, len(res.IDs)))
		var tabID string
		tb.mustEval(t, `durablewsDemo.stats().tabId`, &tabID)
		for _, id := range res.IDs {
			found := slices.ContainsFunc(h.app.receipts.tracker.Receipts(id), func(r receipts.Receipt) bool { return r.TabID == tabID && r.UserKey == ukey })
			if !found {
				t.Errorf("no receipt of tab %s for %s at the app", tabID, id)
			}
		}
	}

	// Nobody of customer 78 is connected: its events become fallbacks.
	start := time.Now()
	lonely := h.postWait(t, "78", 3, 1, 500*time.Millisecond)
	if !strings.HasPrefix(lonely.Handled, "no tab handled 3 events") {
		t.Errorf("answer with no tab open: %q", lonely.Handled)
	}
	var got []fallback
	for deadline := time.Now().Add(h.app.cfg.FallbackAfter + 10*time.Second); len(got) < 3; {
		got = h.app.receipts.fallbacks.of("78")
		if time.Now().After(deadline) {
			t.Fatalf("fallbacks of customer 78 after %v: %+v", time.Since(start), got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("f: fallback after %v: %s", time.Since(start).Round(time.Millisecond), got[0].Text)
	// One fallback per event; their timers fire in any order.
	var gotIDs []string
	for _, f := range got {
		gotIDs = append(gotIDs, f.ID)
	}
	slices.Sort(gotIDs)
	want := slices.Sorted(slices.Values(lonely.IDs))
	if !slices.Equal(gotIDs, want) {
		t.Errorf("fallbacks for %v, want one for each of %v", gotIDs, want)
	}
	if fb := h.app.receipts.fallbacks.of(customer); len(fb) != 0 {
		t.Errorf("customer %s's tabs handled everything, yet fallbacks: %+v", customer, fb)
	}
	// A page of customer 78 lists them.
	c := h.openTab(t, "78", nil)
	c.waitFor(t, "3 fallbacks listed", `durablewsDemo.fallbacks.length === 3 && document.querySelectorAll('#fallbacks li').length === 3`)
}

func (h *harness) postWait(t *testing.T, customer string, n, tabs int, wait time.Duration) eventsResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"customer": customer, "count": n, "wait_ms": wait.Milliseconds(), "wait_tabs": tabs})
	resp, err := h.http.Post(h.app.URL()+"/api/events", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out eventsResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST /api/events: %s: %v", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || len(out.IDs) != n {
		t.Fatalf("POST /api/events: %s, %d ids for %d events: %s %v", resp.Status, len(out.IDs), n, out.Error, out.Failed)
	}
	return out
}
