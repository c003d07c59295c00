package durablews

import "time"

// Observer receives what the Publisher does, for metrics. Calls are made
// synchronously on publishing goroutines, so implementations must be fast
// and safe for concurrent use. prommetrics.Metrics is the Prometheus one.
type Observer interface {
	// Published: a Publish call passed validation and starts sending
	// this many messages to topic.
	Published(topic string, messages int)
	// Confirmed: the broker confirmed one message, latency after it was
	// (last) sent.
	Confirmed(topic string, latency time.Duration)
	// NotConfirmed: one message of a Publish call ended unconfirmed; err
	// wraps one of the Err* values (errors.Is) or a context error.
	NotConfirmed(topic string, err error)
	// Reconnected: a new connection replaced a lost one.
	Reconnected(url string)
}

type nopObserver struct{}

func (nopObserver) Published(string, int)           {}
func (nopObserver) Confirmed(string, time.Duration) {}
func (nopObserver) NotConfirmed(string, error)      {}
func (nopObserver) Reconnected(string)              {}

// RetryObserver is an Observer that also wants to know when messages are
// sent again, before their Publish call ends. The Publisher calls Retried
// if its Config.Observer implements it; Metrics does.
type RetryObserver interface {
	Observer
	// Retried: messages of a Publish call to topic are about to be sent
	// again; reason wraps ErrNacked (the broker nacked them and
	// Config.RetryNacks is on) or ErrConnectionLost (their confirm was
	// lost with a channel or the connection).
	Retried(topic string, messages int, reason error)
}
