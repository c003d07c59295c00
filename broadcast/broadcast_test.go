package broadcast_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/broadcast"
)

func TestValidate(t *testing.T) {
	ok := broadcast.Config{Stream: "prices", Exchange: "events", MaxAge: time.Hour}
	require.NoError(t, ok.Validate())
	onlyBytes := broadcast.Config{Stream: "prices", Exchange: "events", MaxLengthBytes: 1 << 20}
	require.NoError(t, onlyBytes.Validate())

	for name, c := range map[string]struct {
		cfg  broadcast.Config
		want string
	}{
		"no retention":   {broadcast.Config{Stream: "s", Exchange: "e"}, "needs retention"},
		"no stream":      {broadcast.Config{Exchange: "e", MaxAge: time.Hour}, "Config.Stream is empty"},
		"no exchange":    {broadcast.Config{Stream: "s", MaxAge: time.Hour}, "Config.Exchange is empty"},
		"amq. prefix":    {broadcast.Config{Stream: "amq.s", Exchange: "e", MaxAge: time.Hour}, "reserves"},
		"negative":       {broadcast.Config{Stream: "s", Exchange: "e", MaxAge: time.Hour, MaxLengthBytes: -1}, "must not be negative"},
		"fractional age": {broadcast.Config{Stream: "s", Exchange: "e", MaxAge: 1500 * time.Millisecond}, "whole number of seconds"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	assert.ErrorIs(t, broadcast.Config{Stream: "s", Exchange: "e"}.Validate(), broadcast.ErrNoRetention)
}

func TestArguments(t *testing.T) {
	for age, want := range map[time.Duration]string{
		24 * time.Hour: "1D", 36 * time.Hour: "36h", 90 * time.Minute: "90m", 61 * time.Second: "61s", 7 * 24 * time.Hour: "7D",
	} {
		args := broadcast.Config{MaxAge: age}.Arguments()
		assert.Equal(t, want, args["x-max-age"], "%v", age)
	}
	args := broadcast.Config{MaxLengthBytes: 5, MaxSegmentSizeBytes: 3, InitialClusterSize: 2}.Arguments()
	assert.Equal(t, amqp.Table{"x-queue-type": "stream", "x-max-length-bytes": int64(5),
		"x-stream-max-segment-size-bytes": int64(3), "x-initial-cluster-size": int64(2)}, args)
}

func TestPositionWire(t *testing.T) {
	ts := time.Date(2026, 11, 28, 4, 0, 0, 900_000_000, time.UTC)
	for _, c := range []struct {
		pos          broadcast.Position
		header, json string
	}{
		{broadcast.LastPosition(0), "offset=0", `{"last":0}`},
		{broadcast.LastPosition(1234), "offset=1234", `{"last":1234}`},
		{broadcast.TimestampPosition(ts), "timestamp=1795838400", `{"timestamp":1795838400}`},
		{broadcast.Position{}, "first", `{"first":true}`},
		{broadcast.Position{Kind: broadcast.KindNext}, "next", `{"next":true}`},
	} {
		assert.Equal(t, c.header, c.pos.Header())
		b, err := json.Marshal(c.pos)
		require.NoError(t, err)
		assert.JSONEq(t, c.json, string(b))
	}
}

// failingConn fails the test if Declare touches the broker.
type failingConn struct{ t *testing.T }

func (f failingConn) Channel() (*amqp.Channel, error) {
	f.t.Error("Declare opened a channel for an invalid Config")
	return nil, amqp.ErrClosed
}

func TestDeclareRefusesNoRetentionBeforeTheBroker(t *testing.T) {
	err := broadcast.Declare(context.Background(), failingConn{t}, broadcast.Config{Stream: "s", Exchange: "e"})
	require.ErrorIs(t, err, broadcast.ErrNoRetention)
	t.Log(err)
}

// Declare is idempotent, binds only the given keys, and says what to do
// when the stream exists with other retention or the exchange is missing.
func TestDeclare(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sharedAMQP)
	cfg := e.stream(broadcast.Config{BindingKeys: []string{"price.#"}, MaxAge: time.Hour, MaxLengthBytes: 10 << 20})
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, broadcast.Declare(ctx, e.conn, cfg), "declaring again is a no-op")

	pub := e.publisher()
	in := e.publish(pub, "price.a", 2, 2, 64)
	e.publish(pub, "other.b", 1, 1, 64) // not bound: the stream does not get it
	last := e.publish(pub, "price.c", 1, 1, 64)
	_, got := e.readAMQP(cfg.Stream, "first", 3)
	assert.Equal(t, append(in, last...), got, "only price.# reaches the stream")

	other := cfg
	other.MaxAge = 2 * time.Hour
	err := broadcast.Declare(ctx, e.conn, other)
	require.ErrorIs(t, err, broadcast.ErrMismatch)
	assert.Contains(t, err.Error(), "x-max-age")
	assert.Contains(t, err.Error(), "policy")
	t.Log(err)

	missing := cfg
	missing.Exchange = e.ex + "-missing"
	err = broadcast.Declare(ctx, e.conn, missing)
	require.ErrorIs(t, err, broadcast.ErrNoExchange)
	assert.Contains(t, err.Error(), "durablews setup -exchanges")
	t.Log(err)
}

// EndPosition is "first" for an empty stream, then the first offset of the
// last chunk; a page starting there receives everything published after
// the call (and the rest of that chunk).
func TestEndPosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sharedAMQP)
	cfg := e.stream(broadcast.Config{MaxLengthBytes: 10 << 20})
	ctx := ctxT(t, 30*time.Second)

	pos, err := broadcast.EndPosition(ctx, e.conn, cfg.Stream, 300*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, broadcast.KindFirst, pos.Kind, "empty stream")

	pub := e.publisher()
	before := e.publish(pub, "k", 5, 1, 64) // one chunk each: every publish waits for its confirm
	offsets, _ := e.readAMQP(cfg.Stream, "first", len(before))
	// A non-empty stream answers at once; the long wait only keeps a
	// loaded machine from turning the answer into the KindFirst fallback
	// (DefaultEndWait is 2 s), which the assertion below would call wrong.
	pos, err = broadcast.EndPosition(ctx, e.conn, cfg.Stream, 20*time.Second)
	require.NoError(t, err)
	assert.Equal(t, broadcast.LastPosition(offsets[4]), pos)

	after := e.publish(pub, "k", 3, 3, 64)
	_, got := e.readAMQP(cfg.Stream, pos.Offset, 4)
	assert.Equal(t, append(before[4:], after...), got, "from the position: the page's last message, then all that followed")

	_, err = broadcast.EndPosition(ctx, e.conn, cfg.Stream+"-missing", 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not exist")
}
