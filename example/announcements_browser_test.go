package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/broadcast"
)

// e. The announcements feed, one broadcast stream every page reads from
// its own offset, survives reloads: a reload while announcements are
// published, then leaving the page while more are published and coming
// back. Every announcement is shown once, and the page shows exactly the
// stream's content in the stream's order (ids and offsets, read back over
// AMQP): each page load resumed at the message right after the last one
// the tab handled.
func (h *harness) testAnnouncements(t *testing.T) {
	tab := h.openTab(t, "77", nil)
	first := h.announce(t, "first", 3)
	tab.waitFeed(t, first)

	// 1. A reload while announcements are published.
	done := make(chan []string, 1)
	go func() {
		var ids []string
		for i := range 4 {
			time.Sleep(30 * time.Millisecond)
			id, err := h.postAnnouncement(fmt.Sprintf("during reload %d", i))
			if err != nil {
				t.Error(err)
				break
			}
			ids = append(ids, id)
		}
		done <- ids
	}()
	tab.do(t, "reload", chromedp.Reload())
	during := <-done
	tab.waitLoaded(t, 2)
	tab.waitFeed(t, slices.Concat(first, during))
	left := tab.feedStats(t)

	// 2. Away from the page while more are published, then back.
	tab.do(t, "leave the page", chromedp.Navigate("about:blank"))
	away := h.announce(t, "while away", 3)
	tab.do(t, "come back", chromedp.Navigate(tab.url))
	tab.waitLoaded(t, 3)
	all := slices.Concat(first, during, away)
	tab.waitFeed(t, all)
	st := tab.feedStats(t)

	// What the stream holds, read independently over AMQP.
	ids, offsets := h.readStream(t, len(all))
	if !slices.Equal(st.Shown, ids) || !slices.Equal(st.Offsets, offsets) {
		t.Errorf("the feed is not the stream:\n page   %v %v\n stream %v %v", st.Shown, st.Offsets, ids, offsets)
	}
	if !slices.Equal(ids, all) {
		t.Errorf("stream order %v, published %v", ids, all)
	}
	if st.LastOffset == nil || *st.LastOffset != offsets[len(offsets)-1] {
		t.Errorf("the client's last offset is %v, want %d", st.LastOffset, offsets[len(offsets)-1])
	}
	// The page came back at the message after the last it handled: what it
	// handled after coming back is exactly the away announcements (the
	// resume's repeated frame at the last offset is skipped, not shown).
	if st.Client.Handled != len(away) || st.Client.Duplicates != 0 || st.Client.Gaps != 0 || st.Client.Skipped < 1 {
		t.Errorf("after coming back the stream subscription counted %+v; want handled %d, skipped >= 1 (the frame at the last offset), no duplicates, no gaps", st.Client, len(away))
	}
	var gaps []any
	tab.mustEval(t, `durablewsDemo.feedGaps`, &gaps)
	if len(gaps) != 0 {
		t.Errorf("gaps reported: %v", gaps)
	}
	t.Logf("e: %d announced before + %d during a reload + %d while away; the feed shows each once, offsets %v; left at offset %v, resumed with %+v",
		len(first), len(during), len(away), st.Offsets, *left.LastOffset, st.Client)
	tab.screenshot(t, "e-announcements")
}

type feedStats struct {
	Shown      []string `json:"shown"`
	Offsets    []int64  `json:"offsets"`
	LastOffset *int64   `json:"lastOffset"`
	Client     struct {
		Handled    int `json:"handled"`
		Duplicates int `json:"duplicates"`
		Skipped    int `json:"skipped"`
		Gaps       int `json:"gaps"`
	} `json:"client"`
}

func (tb *tab) feedStats(t *testing.T) feedStats {
	t.Helper()
	var st feedStats
	tb.mustEval(t, `durablewsDemo.feedStats()`, &st)
	return st
}

// waitFeed waits until the feed shows every id of want, then checks that it
// shows each exactly once and nothing else.
func (tb *tab) waitFeed(t *testing.T, want []string) {
	t.Helper()
	js, _ := json.Marshal(want)
	tb.waitFor(t, fmt.Sprintf("%d announcements shown", len(want)),
		fmt.Sprintf(`(() => { const s = new Set(durablewsDemo.feedShown); return %s.every((id) => s.has(id)); })()`, js))
	var shown []string
	tb.mustEval(t, `durablewsDemo.feedShown`, &shown)
	if !slices.Equal(shown, want) {
		t.Errorf("%s: the feed shows %v, want %v (each once, in order)", tb.name, shown, want)
	}
}

// announce publishes n announcements through the API, one at a time.
func (h *harness) announce(t *testing.T, what string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h.postAnnouncementOK(t, what+" "+strconv.Itoa(i))
	}
	return ids
}

func (h *harness) postAnnouncementOK(t *testing.T, text string) string {
	t.Helper()
	id, err := h.postAnnouncement(text)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (h *harness) postAnnouncement(text string) (string, error) {
	body, _ := json.Marshal(map[string]string{"text": text})
	resp, err := h.http.Post(h.app.URL()+"/api/announcements", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("POST /api/announcements: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.ID == "" {
		return "", fmt.Errorf("POST /api/announcements: %s %s (%v)", resp.Status, out.Error, err)
	}
	return out.ID, nil
}

// readStream reads the first n messages of the announcements stream over
// AMQP: their ids and offsets.
func (h *harness) readStream(t *testing.T, n int) (ids []string, offsets []int64) {
	t.Helper()
	err := h.withChannel(func(ch *amqp.Channel) error {
		if err := ch.Qos(n, 0, false); err != nil {
			return err
		}
		deliveries, err := ch.Consume(h.app.cfg.Stream, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
		if err != nil {
			return err
		}
		timeout := time.After(waitTimeout)
		for len(ids) < n {
			select {
			case d := <-deliveries:
				off, err := broadcast.DeliveryOffset(d.Headers)
				if err != nil {
					return err
				}
				ids = append(ids, d.MessageId)
				offsets = append(offsets, off)
			case <-timeout:
				return fmt.Errorf("read %d of %d messages", len(ids), n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read stream %s: %v", h.app.cfg.Stream, err)
	}
	return ids, offsets
}
