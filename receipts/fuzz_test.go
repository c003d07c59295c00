package receipts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/durablews/durablews/receipts"
)

// FuzzDecodeBatch: whatever a tab (or anyone with write access to the
// exchange) sends, DecodeBatch returns receipts or an ErrMalformed, never
// panics; what it accepts has the routing key's user and tab, survives
// EncodeBatch and decodes to the same receipts again.
func FuzzDecodeBatch(f *testing.F) {
	f.Add("0123456789abcdef.k3xq7r2m", []byte(`{"v":1,"tab":"k3xq7r2m","receipts":[{"id":"m1","sub":"orders","at":1718000000123}]}`))
	f.Add("u.t", []byte(`{"v":1,"tab":"t","receipts":[{"id":"m","sub":"s","at":1,"stream":"p","offset":7},{"id":"m","sub":"s","at":2}]}`))
	f.Add("u.t", []byte(`{"v":1,"tab":"x","receipts":[{"id":"m","sub":"s","at":1}]}`))
	f.Add("u.t", []byte(`{"v":2}`))
	f.Add("a.b.c", []byte(`null`))
	f.Add("u.t", []byte(`{"v":1,"tab":"t","receipts":[{"id":"\ud800","sub":"s","at":1e3}]}`))
	at := time.Unix(1, 0).UTC()
	f.Fuzz(func(t *testing.T, key string, body []byte) {
		rs, err := receipts.DecodeBatch(key, body, at)
		if err != nil {
			if !errors.Is(err, receipts.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if rs != nil {
				t.Fatalf("receipts with an error: %v", rs)
			}
			return
		}
		if len(rs) == 0 || len(rs) > receipts.MaxBatchReceipts {
			t.Fatalf("%d receipts accepted", len(rs))
		}
		user, tab, err := receipts.ParseRoutingKey(key)
		if err != nil {
			t.Fatalf("accepted a batch whose key does not parse: %v", err)
		}
		entries := make([]receipts.Entry, len(rs))
		for i, r := range rs {
			if r.UserKey != user || r.TabID != tab || r.ReceivedAt != at || r.MessageID == "" || r.Subscription == "" {
				t.Fatalf("receipt %d: %+v (key %q)", i, r, key)
			}
			entries[i] = receipts.Entry{ID: r.MessageID, Subscription: r.Subscription, HandledAt: r.HandledAt, Stream: r.Stream, Offset: r.Offset}
		}
		again, err := receipts.EncodeBatch(tab, entries)
		if err != nil {
			t.Fatalf("EncodeBatch refused what DecodeBatch accepted: %v", err)
		}
		rs2, err := receipts.DecodeBatch(key, again, at)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v\n%s", err, again)
		}
		for i := range rs {
			if rs[i] != rs2[i] {
				t.Fatalf("receipt %d changed in a round trip: %+v != %+v", i, rs[i], rs2[i])
			}
		}
	})
}
