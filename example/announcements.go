package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/broadcast"
)

// The announcements feed: what every visitor shares goes through one
// RabbitMQ stream (package broadcast), not through each tab's queue. Each
// page reads it from its own offset, which the browser client keeps in
// sessionStorage, so the feed survives reloads without the broker keeping
// anything per tab.

// announcementsKey is the routing key announcements are published with;
// the stream is bound to the exchange with it.
const announcementsKey = "announcements"

// maxAnnouncementRunes bounds one announcement's text.
const maxAnnouncementRunes = 280

// declareAnnouncements declares the announcements stream bound to the
// exchange, with a retention (a stream without one grows until the disk is
// full): a day, or 64 MiB in 8 MiB segments (retention removes whole
// segments).
func declareAnnouncements(ctx context.Context, conn broadcast.Channeler, cfg appConfig) error {
	return broadcast.Declare(ctx, conn, broadcast.Config{
		Stream:              cfg.Stream,
		Exchange:            cfg.Exchange,
		BindingKeys:         []string{announcementsKey},
		MaxAge:              24 * time.Hour,
		MaxLengthBytes:      64 << 20,
		MaxSegmentSizeBytes: 8 << 20,
	})
}

// announcement is the payload pages receive from the stream.
type announcement struct {
	Text string    `json:"text"`
	At   time.Time `json:"at"`
}

// handleAnnounce is POST /api/announcements {"text": "..."} (JSON or form):
// it publishes the announcement to the stream and answers with its id once
// RabbitMQ confirmed that the stream stored it. A real application would
// check that the caller may announce; the demo lets anyone.
func (a *app) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	text, ok := readField(w, r, "text", 4<<10)
	if !ok {
		return
	}
	text = strings.TrimSpace(text)
	if text == "" || !utf8.ValidString(text) || utf8.RuneCountInString(text) > maxAnnouncementRunes {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("text: want 1 to %d characters of UTF-8", maxAnnouncementRunes)})
		return
	}
	payload, err := json.Marshal(announcement{Text: text, At: time.Now().UTC()})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.PublishTimeout)
	defer cancel()
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata.Set(durablews.RoutingKeyMetadataKey, announcementsKey)
	msg.SetContext(ctx)
	if err := a.pub.Publish(a.cfg.Exchange, msg); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not confirmed by RabbitMQ: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": msg.UUID, "ms": time.Since(start).Milliseconds()})
}
