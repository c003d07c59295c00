package stomptab

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// readLoop owns the socket's input until the connection ends. It never
// blocks on anything but the socket: messages go to unbounded
// subscription buffers, receipts to channels that are only ever closed.
// in is the negotiated incoming heart-beat interval; nothing heard for
// twice that long ends the connection (stompjs does the same).
func (t *Tab) readLoop(r *frame.Reader, in time.Duration) {
	var err error
	for {
		heard := time.Now()
		if in > 0 {
			_ = t.nc.SetReadDeadline(heard.Add(2 * in))
		}
		var f *frame.Frame
		if f, err = r.Read(); err != nil {
			if silent := time.Since(heard); in > 0 && silent >= 2*in {
				err = fmt.Errorf("nothing heard for %v (heart-beat every %v): %w", silent.Round(time.Millisecond), in, err)
			}
			break
		}
		if f == nil { // heart-beat
			continue
		}
		switch f.Command {
		case frame.MESSAGE:
			t.mu.Lock()
			sub := t.subs[f.Header.Get(frame.Subscription)]
			t.mu.Unlock()
			if sub != nil {
				sub.deliver(f)
			}
		case frame.RECEIPT:
			id := f.Header.Get(frame.ReceiptId)
			t.mu.Lock()
			ch := t.receipts[id]
			delete(t.receipts, id)
			t.mu.Unlock()
			if ch != nil {
				close(ch)
			}
		case frame.ERROR:
			err = brokerError(f)
		}
		if err != nil {
			break
		}
	}
	t.end(err)
}

// end records why the connection ended, closes the socket and tells every
// waiter and subscription.
func (t *Tab) end(cause error) {
	t.mu.Lock()
	switch {
	case t.closing:
		t.err = ErrClosed
	case cause == nil:
		t.err = ErrBrokerClosed
	case errors.As(cause, new(*BrokerError)):
		t.err = cause
	default:
		t.err = fmt.Errorf("%w: %w", ErrBrokerClosed, cause)
	}
	subs := make([]*Subscription, 0, len(t.subs))
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	t.receipts = map[string]chan struct{}{} // waiters watch done
	err := t.err
	t.mu.Unlock()

	_ = t.ws.CloseNow()
	t.cancel()
	close(t.done)
	for _, s := range subs {
		s.fail(err)
	}
}

// endedLocked returns why the connection ended, or nil while it is up.
// t.mu must be held.
// After Close or Drop that is ErrClosed, whatever ended the connection.
func (t *Tab) endedLocked() error {
	if t.closing {
		return ErrClosed
	}
	return t.err
}

// endErr waits for the reader's verdict and returns it as endedLocked does.
func (t *Tab) endErr() error {
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.endedLocked()
}

// write sends one frame. A failed write ends the connection: the frame may
// be half on the wire.
//
// There is no write deadline, as in a browser: under load RabbitMQ stops
// reading a connection for a while (credit flow), and a deadline would
// turn that back-pressure into a lost connection (it did, with 1,000 tabs
// at saturation). A write blocked on a dead network ends when the reader's
// heart-beat watchdog, Close or Drop closes the socket.
func (t *Tab) write(f *frame.Frame) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	select {
	case <-t.done:
		return t.endErr()
	default:
	}
	if err := t.w.Write(f); err != nil {
		_ = t.ws.CloseNow() // the reader ends and records the cause
		t.cancel()
		if err := t.endErr(); errors.Is(err, ErrClosed) {
			return err
		}
		what := "heart-beat"
		if f != nil {
			what = f.Command
		}
		return fmt.Errorf("%w: writing %s: %w", ErrBrokerClosed, what, err)
	}
	return nil
}

// request writes f with a receipt header and waits for the RECEIPT, the
// end of the connection or ctx, whichever comes first.
func (t *Tab) request(ctx context.Context, f *frame.Frame) error {
	id := t.newID("r-")
	ch := make(chan struct{})
	t.mu.Lock()
	if t.err != nil {
		t.mu.Unlock()
		return t.err
	}
	t.receipts[id] = ch
	t.mu.Unlock()
	forget := func() {
		t.mu.Lock()
		delete(t.receipts, id)
		t.mu.Unlock()
	}

	f.Header.Set(frame.Receipt, id)
	if err := t.write(f); err != nil {
		forget()
		return err
	}
	select {
	case <-ch:
		return nil
	case <-t.done:
		select {
		case <-ch: // answered just before the end
			return nil
		default:
		}
		return t.endErr()
	case <-ctx.Done():
		forget()
		return ctx.Err()
	}
}

func (t *Tab) newID(prefix string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextID++
	return prefix + strconv.FormatUint(t.nextID, 10)
}

// heartbeats sends an EOL every out interval until the connection ends
// (out == 0: none were negotiated, nothing to do).
func (t *Tab) heartbeats(out time.Duration) {
	defer close(t.hbDone)
	if out <= 0 {
		return
	}
	tick := time.NewTicker(out)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
			_ = t.write(nil) // a failure ends the connection; done follows
		}
	}
}
