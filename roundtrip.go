package durablews

// roundTrip is a broker round trip (declaring an exchange, opening a
// channel) run in its own goroutine, so a caller can stop waiting for it
// (deadline, Close) while amqp091-go, which cannot cancel a round trip,
// waits on.
type roundTrip struct {
	done chan struct{}
	err  error // valid once done is closed
}

func (r *roundTrip) finish(err error) {
	r.err = err
	close(r.done)
}

func failedRoundTrip(err error) *roundTrip {
	r := &roundTrip{done: make(chan struct{})}
	r.finish(err)
	return r
}
