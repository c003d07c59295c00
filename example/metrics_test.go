package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// GET /metrics serves the publisher's and the receipts' metrics: three
// confirmed events of a customer with no tab open become three fallbacks.
func TestMetricsEndpoint(t *testing.T) {
	a, srv := newTestApp(t, func(c *appConfig) { c.FallbackAfter = 200 * time.Millisecond })
	resp, err := http.PostForm(srv.URL+"/api/events", url.Values{"customer": {"7"}, "count": {"3"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/events: %s", resp.Status)
	}
	want := []string{
		fmt.Sprintf(`durablews_publisher_confirmed_total{topic=%q} 3`, a.cfg.Exchange),
		fmt.Sprintf(`durablews_publisher_not_confirmed_total{reason="timeout",topic=%q} 0`, a.cfg.Exchange),
		`durablews_publisher_in_flight 0`,
		`durablews_receipts_expectations_missed_total 3`,
		`durablews_receipts_expectations_met_total 0`,
		`durablews_receipts_batches_total 0`,
		`durablews_receipts_kept 0`,
	}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		body = get(t, srv.URL+"/metrics")
		missing := 0
		for _, line := range want {
			if !strings.Contains(body, "\n"+line+"\n") {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /metrics after 10 s lacks %d of the lines %q:\n%s", missing, want, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", u, resp.Status, err)
	}
	return string(b)
}
