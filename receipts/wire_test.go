package receipts_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/receipts"
)

var received = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestDecodeBatch_Valid(t *testing.T) {
	body := `{"v":1,"tab":"k3xq7r2m4a6b8c2d","receipts":[` +
		`{"id":"m1","sub":"orders","at":1718000000123},` +
		`{"id":"m2","sub":"prices","at":1718000000456,"stream":"prices","offset":0},` +
		`{"id":"m3","sub":"prices","at":1718000000789,"stream":"prices","offset":42,"later":"ignored"}],"extra":true}`
	rs, err := receipts.DecodeBatch("0123456789abcdef.k3xq7r2m4a6b8c2d", []byte(body), received)
	require.NoError(t, err)
	require.Len(t, rs, 3)
	assert.Equal(t, receipts.Receipt{
		MessageID: "m1", UserKey: "0123456789abcdef", TabID: "k3xq7r2m4a6b8c2d", Subscription: "orders",
		HandledAt: time.UnixMilli(1718000000123).UTC(), ReceivedAt: received,
	}, rs[0])
	assert.Equal(t, "prices", rs[1].Stream)
	assert.Equal(t, int64(0), rs[1].Offset)
	assert.Equal(t, int64(42), rs[2].Offset)
	assert.Equal(t, "m3/k3xq7r2m4a6b8c2d", rs[2].MessageUUID())
}

func TestDecodeBatch_Refused(t *testing.T) {
	const key = "user_1.tab1"
	ok := `{"id":"m","sub":"s","at":1}`
	for _, tc := range []struct {
		name, key, body, want string
		is                    error
	}{
		{"key without dot", "usertab", `{}`, "is not <userKey>.<tabId>", nil},
		{"key with three parts", "u.t.x", `{}`, "tab id \"t.x\"", nil},
		{"key with wildcard", "u.*", `{}`, "may hold only", nil},
		{"empty user key", ".tab", `{}`, "user key \"\" must be 1 to 64", nil},
		{"long tab id", "u." + strings.Repeat("a", 65), `{}`, "must be 1 to 64", nil},
		{"not JSON", key, `{"v":1,`, "is not a JSON batch object", nil},
		{"array", key, `[1]`, "is not a JSON batch object", nil},
		{"trailing data", key, `{"v":1,"tab":"tab1","receipts":[` + ok + `]} x`, "is not a JSON batch object", nil},
		{"no v", key, `{"tab":"tab1","receipts":[` + ok + `]}`, `has no "v"`, nil},
		{"v 2", key, `{"v":2,"tab":"tab1","receipts":[` + ok + `]}`, `"v":2`, receipts.ErrUnsupportedVersion},
		{"v string", key, `{"v":"1","tab":"tab1","receipts":[` + ok + `]}`, "is not a JSON batch object", nil},
		{"no tab", key, `{"v":1,"receipts":[` + ok + `]}`, `has no "tab"`, nil},
		{"other tab", key, `{"v":1,"tab":"tab2","receipts":[` + ok + `]}`, `names tab "tab2"`, receipts.ErrTabMismatch},
		{"no receipts", key, `{"v":1,"tab":"tab1","receipts":[]}`, "has no receipts", nil},
		{"null receipts", key, `{"v":1,"tab":"tab1","receipts":null}`, "has no receipts", nil},
		{"no id", key, `{"v":1,"tab":"tab1","receipts":[{"sub":"s","at":1}]}`, `receipt 0: "id"`, nil},
		{"long id", key, `{"v":1,"tab":"tab1","receipts":[{"id":"` + strings.Repeat("x", 256) + `","sub":"s","at":1}]}`, `"id"`, nil},
		{"no sub", key, `{"v":1,"tab":"tab1","receipts":[` + ok + `,{"id":"m","at":1}]}`, `receipt 1: "sub"`, nil},
		{"no at", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s"}]}`, `"at" is missing`, nil},
		{"at null", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":null}]}`, `"at" is missing`, nil},
		{"at string", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":"1"}]}`, "not an integer number of milliseconds", nil},
		{"at fraction", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":1.5}]}`, "not an integer number of milliseconds", nil},
		{"at zero", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":0}]}`, "is not a time", nil},
		{"at year 10000", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":253402300800000}]}`, "is not a time", nil},
		{"offset without stream", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":1,"offset":3}]}`, `"offset" 3 without "stream"`, nil},
		{"stream without offset", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":1,"stream":"p"}]}`, `without "offset"`, nil},
		{"negative offset", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":1,"stream":"p","offset":-1}]}`, "is negative", nil},
		{"fractional offset", key, `{"v":1,"tab":"tab1","receipts":[{"id":"m","sub":"s","at":1,"stream":"p","offset":1.5}]}`, "is not a JSON batch object", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := receipts.DecodeBatch(tc.key, []byte(tc.body), received)
			require.Error(t, err)
			assert.Nil(t, rs)
			assert.ErrorIs(t, err, receipts.ErrMalformed)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDecodeBatch_TooManyReceipts(t *testing.T) {
	entries := make([]string, receipts.MaxBatchReceipts+1)
	for i := range entries {
		entries[i] = `{"id":"m","sub":"s","at":1}`
	}
	_, err := receipts.DecodeBatch("u.t", []byte(`{"v":1,"tab":"t","receipts":[`+strings.Join(entries, ",")+`]}`), received)
	assert.ErrorIs(t, err, receipts.ErrMalformed)
	assert.ErrorContains(t, err, "over MaxBatchReceipts")
}

func TestEncodeBatch_AsTheBrowserSendsIt(t *testing.T) {
	at := time.UnixMilli(1718000000123)
	body, err := receipts.EncodeBatch("k3xq7r2m", []receipts.Entry{
		{ID: "m1", Subscription: "orders", HandledAt: at},
		{ID: "m2", Subscription: "prices", HandledAt: at, Stream: "prices", Offset: 0},
	})
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":1,"tab":"k3xq7r2m","receipts":[`+
		`{"id":"m1","sub":"orders","at":1718000000123},`+
		`{"id":"m2","sub":"prices","at":1718000000123,"stream":"prices","offset":0}]}`, string(body))

	rs, err := receipts.DecodeBatch("abc.k3xq7r2m", body, received)
	require.NoError(t, err)
	assert.Equal(t, at.UTC(), rs[0].HandledAt)

	// A zero HandledAt is now.
	before := time.Now().Truncate(time.Millisecond)
	body, err = receipts.EncodeBatch("k3xq7r2m", []receipts.Entry{{ID: "m", Subscription: "s"}})
	require.NoError(t, err)
	rs, err = receipts.DecodeBatch("abc.k3xq7r2m", body, received)
	require.NoError(t, err)
	assert.WithinRange(t, rs[0].HandledAt, before, time.Now())
}

func TestEncodeBatch_RefusesWhatWouldNotDecode(t *testing.T) {
	for name, tc := range map[string]struct {
		tab     string
		entries []receipts.Entry
		want    string
	}{
		"no entries":   {"tab1", nil, "0 entries"},
		"bad tab":      {"tab.1", []receipts.Entry{{ID: "m", Subscription: "s"}}, "tab id"},
		"no id":        {"tab1", []receipts.Entry{{Subscription: "s"}}, `entry 0: "id"`},
		"no sub":       {"tab1", []receipts.Entry{{ID: "m"}}, `"sub"`},
		"invalid utf8": {"tab1", []receipts.Entry{{ID: "m\xff", Subscription: "s"}}, "UTF-8"},
		"neg offset":   {"tab1", []receipts.Entry{{ID: "m", Subscription: "s", Stream: "p", Offset: -2}}, "negative"},
		"before 1970":  {"tab1", []receipts.Entry{{ID: "m", Subscription: "s", HandledAt: time.Unix(-5, 0)}}, `"at"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := receipts.EncodeBatch(tc.tab, tc.entries)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestNewPublishing_LooksLikeTheSTOMPPluginsMessage(t *testing.T) {
	p, err := receipts.NewPublishing("tab1", []receipts.Entry{{ID: "m", Subscription: "s", HandledAt: time.UnixMilli(5)}})
	require.NoError(t, err)
	assert.Equal(t, amqp.Persistent, p.DeliveryMode)
	assert.Equal(t, "application/json", p.ContentType)
	assert.Equal(t, amqp.Table{"x-durablews-receipts": "1"}, p.Headers)
	assert.Empty(t, p.MessageId, "the STOMP plugin sets no message id")
	assert.True(t, json.Valid(p.Body))
}

func TestRoutingKey(t *testing.T) {
	k, err := receipts.RoutingKey("0123456789abcdef", "k3xq7r2m")
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef.k3xq7r2m", k)
	u, tab, err := receipts.ParseRoutingKey(k)
	require.NoError(t, err)
	assert.Equal(t, [2]string{"0123456789abcdef", "k3xq7r2m"}, [2]string{u, tab})

	_, err = receipts.RoutingKey("user.x", "tab")
	assert.ErrorContains(t, err, "user key \"user.x\" may hold only")
	_, err = receipts.RoutingKey("user", "")
	assert.ErrorContains(t, err, "tab id \"\" must be 1 to 64")
	_, _, err = receipts.ParseRoutingKey("#")
	assert.True(t, errors.Is(err, receipts.ErrMalformed))
}
