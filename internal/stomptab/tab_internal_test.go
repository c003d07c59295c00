package stomptab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"github.com/stretchr/testify/assert"
)

// The shapes in which go-stomp v3.1.3 reports a socket the broker closed;
// the write error text is the one seen in a failed CI run.
func TestIsClosedByPeer(t *testing.T) {
	errorFrame := func(msg string) error { // what sendError hands a receipt waiter
		return stomp.Error{Message: msg, Frame: frame.New(frame.ERROR, frame.Message, msg)}
	}
	for _, err := range []error{
		errorFrame("connection closed"),
		errorFrame("failed to write msg: failed to write frame: failed to flush: write tcp 127.0.0.1:47970->127.0.0.1:27156: write: broken pipe"),
		errorFrame("failed to write msg: write tcp 127.0.0.1:1->127.0.0.1:2: write: connection reset by peer"),
		errorFrame("failed to read: EOF"),
		stomp.ErrClosedUnexpectedly,
		fmt.Errorf("write: %w", syscall.EPIPE),
		fmt.Errorf("read: %w", syscall.ECONNRESET),
		io.EOF,
		&net.OpError{Op: "write", Err: net.ErrClosed},
	} {
		assert.True(t, isClosedByPeer(err), "%v", err)
	}
	for _, err := range []error{
		nil,
		errors.New("broken pipe"),
		errorFrame("access_refused"),
		errorFrame("Bad CONNECT"),
		errorFrame("not a broken pipe: at all"),
		stomp.ErrNotReceivedMessage,
	} {
		assert.False(t, isClosedByPeer(err), "%v", err)
	}
}
