package tabsession

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/durablews/durablews/broadcast"
)

// Stream is a broadcast stream a tab session grants: the tab's token may
// read it (and nothing else of it), and the browser client subscribes to
// it with subscribe({stream: Name}).
type Stream struct {
	Name string `json:"name"`
	// Destination is the STOMP destination, /amq/queue/<Name>: it does not
	// declare the stream (the token could not anyway).
	Destination string `json:"destination"`
	// Start is where a tab without an offset of its own starts reading. Set
	// by Prepare only (the stream's end when the page was rendered, see
	// broadcast.EndPosition); nil in the endpoint's answers, where the
	// client's own offset (or "next") applies.
	Start *broadcast.Position `json:"start,omitempty"`
}

// streamNamePattern is what a granted stream may be called: the web
// client's name rule ([A-Za-z0-9_.-]), which also keeps the token's scope
// unambiguous (no '/', '*' or '%', which the broker's scope parser treats
// specially).
var streamNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,255}$`)

// tabQueuePrefix starts every tab queue's name (queueName).
const tabQueuePrefix = "tab-"

// cleanStreams validates the application's stream names and drops
// duplicates.
func cleanStreams(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		switch {
		case !streamNamePattern.MatchString(s):
			return nil, fmt.Errorf("stream %q: a stream name is 1 to 255 characters of A-Z a-z 0-9 _ . -", s)
		case strings.HasPrefix(s, tabQueuePrefix):
			// Granting read on a name of the tab queues' namespace would let
			// a tab read another tab's queue.
			return nil, fmt.Errorf("stream %q: names starting with %q are the tab queues'; rename the stream", s, tabQueuePrefix)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// grantStreams asks Config.Streams which streams user may read. Without
// the callback a session grants none.
func (h *Handler) grantStreams(ctx context.Context, user string) ([]Stream, *httpError) {
	if h.cfg.Streams == nil {
		return nil, nil
	}
	names, err := callGuarded("Streams", func() ([]string, error) { return h.cfg.Streams(ctx, user) })
	var cp *callbackPanic
	switch {
	case errors.As(err, &cp):
		return nil, internalError(cp)
	case errors.Is(err, ErrForbidden):
		return nil, forbidden(err, "this user may not read broadcast streams")
	case err != nil:
		return nil, internalError(fmt.Errorf("Streams callback: %w", err))
	}
	if names, err = cleanStreams(names); err != nil {
		return nil, internalError(fmt.Errorf("Streams callback returned %w", err))
	}
	out := make([]Stream, len(names))
	for i, n := range names {
		out[i] = Stream{Name: n, Destination: "/amq/queue/" + n}
	}
	return out, nil
}

// streamNames lists the names of streams.
func streamNames(streams []Stream) []string {
	out := make([]string, len(streams))
	for i, s := range streams {
		out[i] = s.Name
	}
	return out
}

// positionStreams sets each stream's Start to its current end
// (broadcast.EndPosition), all streams at once. A stream that does not
// exist is a deployment error (500): the application granted a stream
// nobody declared.
func (h *Handler) positionStreams(ctx context.Context, streams []Stream) *httpError {
	if len(streams) == 0 {
		return nil
	}
	conn, err := h.connection()
	if err != nil {
		return unavailable(err)
	}
	errs := make([]error, len(streams))
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			pos, err := broadcast.EndPosition(ctx, conn, streams[i].Name, h.cfg.StreamEndWait)
			if err != nil {
				errs[i] = err
				return
			}
			streams[i].Start = &pos
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if conn.IsClosed() {
			return unavailable(err)
		}
		return internalError(err)
	}
	return nil
}
