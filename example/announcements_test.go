package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// POST /api/announcements stores the announcement in the stream (declared
// by newApp, bound to the exchange) before it answers; bad input is 400.
func TestPostAnnouncementReachesTheStream(t *testing.T) {
	a, srv := newTestApp(t)
	for _, body := range []string{"", "   ", strings.Repeat("x", maxAnnouncementRunes+1), "\xff"} {
		resp, err := http.PostForm(srv.URL+"/api/announcements", url.Values{"text": {body}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("text %q: %s, want 400", body, resp.Status)
		}
	}
	resp, err := http.Post(srv.URL+"/api/announcements", "application/json", strings.NewReader(`{"text":"maintenance at 22:00"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.ID == "" {
		t.Fatalf("POST /api/announcements: %s, %+v, %v", resp.Status, out, err)
	}
	h := &harness{amqpURL: a.cfg.AMQPURL}
	err = h.withChannel(func(ch *amqp.Channel) error {
		if err := ch.Qos(10, 0, false); err != nil {
			return err
		}
		deliveries, err := ch.Consume(a.cfg.Stream, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
		if err != nil {
			return err
		}
		select {
		case d := <-deliveries:
			var body announcement
			if err := json.Unmarshal(d.Body, &body); err != nil || body.Text != "maintenance at 22:00" || d.MessageId != out.ID || d.RoutingKey != announcementsKey {
				t.Errorf("stream holds id %s key %s body %s (%v); want id %s", d.MessageId, d.RoutingKey, d.Body, err, out.ID)
			}
		case <-time.After(10 * time.Second):
			t.Error("the stream holds no message after the confirmed POST")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
