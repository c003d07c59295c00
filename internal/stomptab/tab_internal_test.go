package stomptab

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"github.com/stretchr/testify/assert"
)

func TestBrokerErrorIsBrokerClosed(t *testing.T) {
	err := fmt.Errorf("stomptab: STOMP CONNECT: %w",
		brokerError(frame.New(frame.ERROR, frame.Message, "Bad CONNECT")))
	assert.ErrorIs(t, err, ErrBrokerClosed)
	assert.NotErrorIs(t, err, ErrClosed)
	assert.Contains(t, err.Error(), "Bad CONNECT")
	var be *BrokerError
	assert.True(t, errors.As(err, &be))
	assert.Equal(t, "Bad CONNECT", be.Message)

	f := frame.New(frame.ERROR, frame.Message, "access_refused")
	f.Body = []byte("access to queue 'q' refused\n")
	assert.Equal(t, "stomptab: broker sent ERROR: access_refused: access to queue 'q' refused", brokerError(f).Error())
}

func TestNegotiateHeartbeats(t *testing.T) {
	s := time.Second
	for _, c := range []struct{ mine, sx, sy, out, in time.Duration }{
		{10 * s, 10 * s, 10 * s, 10 * s, 10 * s},
		{2 * s, 10 * s, 5 * s, 5 * s, 10 * s}, // the larger wish wins
		{10 * s, 0, 0, 0, 0},                  // the server wants none
		{0, 10 * s, 10 * s, 0, 0},             // the tab wants none
		{10 * s, 4 * s, 0, 0, 10 * s},
	} {
		out, in := negotiateHeartbeats(c.mine, c.sx, c.sy)
		assert.Equal(t, [2]time.Duration{c.out, c.in}, [2]time.Duration{out, in}, "%+v", c)
	}
}
