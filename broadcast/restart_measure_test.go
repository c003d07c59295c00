//go:build measure

package broadcast_test

// Measurement (go test -tags measure -run TestMeasureStreamRestartWindow -v ./broadcast/):
// publishing raw amqp091-go (one message at a time, mandatory, waiting for
// each confirm) to a stream from the moment a kill -9'ed private node
// accepts connections again, with and without broadcast.WaitReady first.
// Logs how many confirmed messages the stream does not hold.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/internal/testbroker"
)

func TestMeasureStreamRestartWindow(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("WaitReady=%v", wait), func(t *testing.T) { measureRestartWindow(t, wait) })
	}
}

func measureRestartWindow(t *testing.T, waitReady bool) {
	node := testbroker.Start(t, testbroker.Options{})
	e := newEnv(t, node.AMQPURL())
	cfg := e.stream(broadcast.Config{MaxLengthBytes: 100 << 20})
	time.Sleep(2 * time.Second)
	require.NoError(t, node.Kill())
	killed := time.Now()
	go func() {
		if err := node.StartAgain(); err != nil {
			t.Logf("start again failed, once more: %.300v", err)
			if err := node.StartAgain(); err != nil {
				t.Errorf("start again: %.300v", err)
			}
		}
		t.Logf("StartAgain returned at +%v", time.Since(killed))
	}()
	var conn *amqp.Connection
	var err error
	for {
		conn, err = amqp.Dial(node.AMQPURL())
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
		if time.Since(killed) > time.Minute {
			t.Fatal("no connection within a minute")
		}
	}
	t.Logf("dialled at +%v after kill", time.Since(killed))
	for waitReady {
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		err := broadcast.WaitReady(wctx, conn, cfg.Stream)
		wcancel()
		if !errors.Is(err, broadcast.ErrNotReady) {
			require.NoError(t, err)
			break
		}
		t.Logf("WaitReady at +%v: %v; dialling again", time.Since(killed), err)
		conn, err = amqp.Dial(node.AMQPURL())
		require.NoError(t, err)
	}
	ready := time.Now()
	t.Logf("publishing from +%v after kill", ready.Sub(killed))
	e.conn = conn
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	returns := ch.NotifyReturn(make(chan amqp.Return, 100000))
	type rec struct {
		id string
		at time.Duration
	}
	var confirmed []rec
	nacked := 0
	for i := 0; time.Since(ready) < 15*time.Second; i++ {
		id := fmt.Sprint(i)
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), e.ex, "k", true, false, amqp.Publishing{MessageId: id, DeliveryMode: 2, Body: []byte("x")})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil {
			t.Logf("wait %d: %v", i, err)
			continue
		}
		if ok {
			confirmed = append(confirmed, rec{id, time.Since(ready)})
		} else {
			nacked++
		}
	}
	returned := map[string]bool{}
	for len(returns) > 0 {
		r := <-returns
		returned[r.MessageId] = true
	}
	_, ids := e.readAll(cfg.Stream)
	have := map[string]bool{}
	for _, id := range ids {
		have[id] = true
	}
	lost, lostReturned, keptReturned := 0, 0, 0
	var firstKept, lastLost time.Duration = -1, -1
	for _, r := range confirmed {
		if returned[r.id] {
			if have[r.id] {
				keptReturned++
			} else {
				lostReturned++
			}
		}
		if !have[r.id] {
			lost++
			lastLost = r.at
		} else if firstKept < 0 {
			firstKept = r.at
		}
	}
	t.Logf("returned (mandatory): %d; of the lost: %d returned; of the stored: %d returned", len(returned), lostReturned, keptReturned)
	t.Logf("confirmed %d nacked %d stored %d lost %d; last lost confirmed at +%v, first kept at +%v after ready", len(confirmed), nacked, len(ids), lost, lastLost, firstKept)
}
