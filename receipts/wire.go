package receipts

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The wire format of a receipt batch (docs/receipts.md).
const (
	// DefaultExchange is the receipts exchange when none is named: a
	// durable topic exchange that browser tabs SEND their batches to.
	DefaultExchange = "durablews.receipts"
	// WireVersion is the batch body's "v".
	WireVersion = 1
	// Header is the header every batch carries, with the value "1" (the
	// STOMP plugin copies the SEND frame's header into the AMQP headers).
	// Decoding does not need it; it tells receipts apart from anything
	// else a person might find in the queue.
	Header = "x-durablews-receipts"
	// ContentType of a batch body.
	ContentType = "application/json"
	// MaxBatchReceipts bounds the receipts of one batch. The browser
	// client sends at most receipts.maxBatch (default 100); a larger
	// batch is refused as malformed.
	MaxBatchReceipts = 10000
	// MaxKeyPart is the longest user key or tab id, in bytes.
	MaxKeyPart = 64
	// maxField bounds a message id, subscription or stream name: an AMQP
	// short string.
	maxField = 255
)

// Entry is one receipt as a tab sends it: the id of the message it
// handled, the subscription that handled it, and when. EncodeBatch writes
// entries exactly as the browser client does, for Go test tabs and
// benchmarks.
type Entry struct {
	// ID is the message id the tab de-duplicates by (its
	// amqp-message-id, the Watermill UUID the Publisher sent). Required.
	ID string
	// Subscription is the name of the tab's subscription that handled
	// the message. Required.
	Subscription string
	// HandledAt is when the handler resolved; it is sent as whole
	// milliseconds since the Unix epoch. Zero means now.
	HandledAt time.Time
	// Stream names the stream of a stream subscription; "" for a per-tab
	// queue (then Offset is not sent).
	Stream string
	// Offset is the message's stream offset; only sent with Stream.
	Offset int64
}

// wireBatch and wireReceipt are the JSON of a batch body. Unknown fields
// are ignored, so later clients may add some.
type wireBatch struct {
	V        *int          `json:"v"`
	Tab      *string       `json:"tab"`
	Receipts []wireReceipt `json:"receipts"`
}

type wireReceipt struct {
	ID     string          `json:"id"`
	Sub    string          `json:"sub"`
	At     json.RawMessage `json:"at"`
	Stream string          `json:"stream,omitempty"`
	Offset *int64          `json:"offset,omitempty"`
}

// RoutingKey returns the routing key a tab sends its batches with,
// "<userKey>.<tabID>", or an error saying which part is invalid. Each
// part is 1 to MaxKeyPart characters of A-Z, a-z, 0-9, '_' and '-' (a
// tab session's user key is 16 lowercase hex characters and its tab id
// 8 to 64 of a-z and 0-9).
func RoutingKey(userKey, tabID string) (string, error) {
	if err := checkKeyPart("user key", userKey); err != nil {
		return "", err
	}
	if err := checkKeyPart("tab id", tabID); err != nil {
		return "", err
	}
	return userKey + "." + tabID, nil
}

// ParseRoutingKey splits a batch's routing key "<userKey>.<tabId>" into
// its parts. The error wraps ErrMalformed.
func ParseRoutingKey(key string) (userKey, tabID string, err error) {
	for i := 0; i < len(key); i++ {
		if key[i] == '.' {
			userKey, tabID = key[:i], key[i+1:]
			if err := checkKeyPart("user key", userKey); err != nil {
				return "", "", malformed(nil, "routing key %.80q: %v", key, err)
			}
			if err := checkKeyPart("tab id", tabID); err != nil {
				return "", "", malformed(nil, "routing key %.80q: %v", key, err)
			}
			return userKey, tabID, nil
		}
	}
	return "", "", malformed(nil, "routing key %.80q is not <userKey>.<tabId>", key)
}

func checkKeyPart(what, s string) error {
	if s == "" || len(s) > MaxKeyPart {
		return fmt.Errorf("%s %.80q must be 1 to %d characters", what, s, MaxKeyPart)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%s %.80q may hold only A-Z, a-z, 0-9, '_' and '-' (found %q)", what, s, rune(c))
		}
	}
	return nil
}

// EncodeBatch returns the body of a batch of entries sent by tab tabID:
//
//	{"v":1,"tab":"<tabID>","receipts":[{"id":"…","sub":"…","at":1718000000000}, …]}
//
// It checks what DecodeBatch checks, so what it returns decodes.
func EncodeBatch(tabID string, entries []Entry) ([]byte, error) {
	if err := checkKeyPart("tab id", tabID); err != nil {
		return nil, fmt.Errorf("receipts: encode batch: %w", err)
	}
	if len(entries) == 0 || len(entries) > MaxBatchReceipts {
		return nil, fmt.Errorf("receipts: encode batch: %d entries; a batch holds 1 to %d", len(entries), MaxBatchReceipts)
	}
	now := time.Now()
	b := wireBatch{V: new(int), Tab: &tabID, Receipts: make([]wireReceipt, len(entries))}
	*b.V = WireVersion
	for i, e := range entries {
		at := e.HandledAt
		if at.IsZero() {
			at = now
		}
		w := wireReceipt{ID: e.ID, Sub: e.Subscription, Stream: e.Stream,
			At: strconv.AppendInt(nil, at.UnixMilli(), 10)}
		if e.Stream != "" {
			w.Offset = &e.Offset
		}
		if err := checkEntry(w.ID, w.Sub, w.Stream, w.Offset, at.UnixMilli()); err != nil {
			return nil, fmt.Errorf("receipts: encode batch: entry %d: %w", i, err)
		}
		b.Receipts[i] = w
	}
	return json.Marshal(b)
}

// NewPublishing returns the AMQP message a tab's batch of entries becomes
// once the Web-STOMP plugin took its SEND frame: the body of EncodeBatch,
// persistent, content type ContentType and Header "1". Publish it to the
// receipts exchange with routing key RoutingKey(userKey, tabID).
func NewPublishing(tabID string, entries []Entry) (amqp.Publishing, error) {
	body, err := EncodeBatch(tabID, entries)
	if err != nil {
		return amqp.Publishing{}, err
	}
	return amqp.Publishing{
		Headers:      amqp.Table{Header: "1"},
		ContentType:  ContentType,
		DeliveryMode: amqp.Persistent,
		Body:         body,
	}, nil
}

// DecodeBatch decodes the body of a batch delivered with routingKey into
// its receipts, each with the routing key's UserKey and TabID and with
// ReceivedAt set to receivedAt. The user key and tab id come from the
// routing key, the part the broker authorised, never from the body; a
// body whose "tab" differs from the routing key's tab is refused
// (ErrTabMismatch).
//
// Every error wraps ErrMalformed and says what is wrong; a batch is
// decoded whole or not at all. Fields the format does not know are
// ignored.
func DecodeBatch(routingKey string, body []byte, receivedAt time.Time) ([]Receipt, error) {
	userKey, tabID, err := ParseRoutingKey(routingKey)
	if err != nil {
		return nil, err
	}
	var b wireBatch
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, malformed(nil, "body of batch %s is not a JSON batch object: %v", routingKey, err)
	}
	switch {
	case b.V == nil:
		return nil, malformed(nil, "batch %s has no \"v\"", routingKey)
	case *b.V != WireVersion:
		return nil, malformed(ErrUnsupportedVersion, "batch %s has \"v\":%d; this version reads %d", routingKey, *b.V, WireVersion)
	case b.Tab == nil:
		return nil, malformed(nil, "batch %s has no \"tab\"", routingKey)
	case *b.Tab != tabID:
		return nil, malformed(ErrTabMismatch, "batch with routing key %s names tab %.80q in its body; refused", routingKey, *b.Tab)
	case len(b.Receipts) == 0:
		return nil, malformed(nil, "batch %s has no receipts", routingKey)
	case len(b.Receipts) > MaxBatchReceipts:
		return nil, malformed(nil, "batch %s has %d receipts, over MaxBatchReceipts (%d)", routingKey, len(b.Receipts), MaxBatchReceipts)
	}
	out := make([]Receipt, len(b.Receipts))
	for i, w := range b.Receipts {
		ms, err := parseMillis(w.At)
		if err == nil {
			err = checkEntry(w.ID, w.Sub, w.Stream, w.Offset, ms)
		}
		if err != nil {
			return nil, malformed(nil, "batch %s, receipt %d: %v", routingKey, i, err)
		}
		r := Receipt{
			MessageID:    w.ID,
			UserKey:      userKey,
			TabID:        tabID,
			Subscription: w.Sub,
			Stream:       w.Stream,
			HandledAt:    time.UnixMilli(ms).UTC(),
			ReceivedAt:   receivedAt,
		}
		if w.Offset != nil {
			r.Offset = *w.Offset
		}
		out[i] = r
	}
	return out, nil
}

// maxMillis is 9999-12-31T23:59:59.999Z.
const maxMillis = 253402300799999

// parseMillis reads "at": a JSON integer, milliseconds since the epoch.
func parseMillis(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Errorf("\"at\" is missing")
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("\"at\" %.40s is not an integer number of milliseconds since the epoch", raw)
	}
	return ms, nil
}

func checkEntry(id, sub, stream string, offset *int64, ms int64) error {
	switch {
	case id == "" || len(id) > maxField:
		return fmt.Errorf("\"id\" %.80q must be 1 to %d bytes", id, maxField)
	case sub == "" || len(sub) > maxField:
		return fmt.Errorf("\"sub\" %.80q must be 1 to %d bytes", sub, maxField)
	case len(stream) > maxField:
		return fmt.Errorf("\"stream\" %.80q is over %d bytes", stream, maxField)
	case !utf8.ValidString(id) || !utf8.ValidString(sub) || !utf8.ValidString(stream):
		return fmt.Errorf("\"id\", \"sub\" or \"stream\" is not valid UTF-8")
	case ms <= 0 || ms > maxMillis:
		return fmt.Errorf("\"at\" %d is not a time in milliseconds since the epoch (1 to %d)", ms, int64(maxMillis))
	case stream == "" && offset != nil:
		return fmt.Errorf("\"offset\" %d without \"stream\"", *offset)
	case stream != "" && offset == nil:
		return fmt.Errorf("\"stream\" %.80q without \"offset\"", stream)
	case offset != nil && *offset < 0:
		return fmt.Errorf("\"offset\" %d is negative", *offset)
	}
	return nil
}

func malformed(reason error, format string, args ...any) error {
	return &malformedError{reason: reason, msg: fmt.Sprintf(format, args...)}
}
