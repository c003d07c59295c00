package durablews

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// The path of a message, from Publish to its confirm:
//
//  1. Publish (this file) checks the topic and prepares the batch: each
//     message validated and marshalled into an outgoing (outgoing.go).
//  2. A publishCall (publishcall.go) sends the batch in passes, each over
//     a live connection (Publisher.liveConnection, publisher.go; replaced
//     when lost by reconnect.go; the connection itself in connection.go)
//     and a confirm channel of the exchange (publishCall.channelFor:
//     declared once per connection, exchangechannels.go; the channel
//     opened on demand, lazychannel.go, confirmchannel.go).
//  3. A pipeline (pipeline.go) sends the messages of a pass with many in
//     flight, each holding one of the Publisher's MaxInFlight slots, and
//     takes their confirms in publish order; a return is matched to its
//     publish by a token (returnmatcher.go). Writes run under the call's
//     deadline (calldeadline.go).
//  4. What a pass could not settle (confirm lost with a channel or the
//     connection, nacked, exchange deleted) goes through the retry
//     decision (publishCall.next, retrydecision.go) into the next pass.
//  5. result (this file) turns the outcomes into nil or a *PublishError.

// Publish publishes msgs to the exchange mapped to topic and returns nil
// only after the broker confirmed every one of them. Otherwise it returns
// a *PublishError listing the confirmed UUIDs and, for each other message,
// why it was not confirmed (ErrNacked, ErrUnroutable, ErrRefused,
// ErrConfirmTimeout, ErrConnectionLost, ErrInvalidMessage, ErrNotSent,
// ErrUnknownTopic, ErrPublisherClosed or the message context's error).
// The one error that is not a *PublishError is ErrPublisherClosed for a
// call with no messages after Close: there is no message to name.
// With Config.RetryNacks a nacked message is sent again until
// ConfirmTimeout, and fails with ErrNacked only if the broker was still
// nacking it then.
//
// Publish with no messages returns nil and does nothing, as Watermill
// publishers do. The topic is looked up in Config.Exchanges, then in
// Config.ExchangeFor.
//
// Messages are validated before anything is sent: if one is invalid
// (nil, no routing key, not deliverable to a browser, not persistent,
// a header AMQP cannot carry), none is published. Each message's Context
// is honoured: a cancelled message is not sent, or if already sent, no
// longer waited for.
//
// Every wait, including declaring the exchange and opening a channel on a
// connection the broker blocks, ends when Config.ConfirmTimeout runs out.
// A write still in progress then (a large message to a broker that
// stopped reading: a frozen node, a resource alarm) cannot be cancelled,
// so the publisher drops the connection under it; the message fails with
// ErrNotSent wrapping ErrConfirmTimeout, and the other callers' messages
// whose confirm was lost with it are republished on the next connection.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.closedMu.RLock()
	if p.closed {
		p.closedMu.RUnlock()
		if len(msgs) == 0 {
			return ErrPublisherClosed // no message to name it for
		}
		return p.failAll(topic, msgs, fmt.Errorf("%w: %w", ErrNotSent, ErrPublisherClosed))
	}
	p.calls.Add(1)
	p.closedMu.RUnlock()
	defer p.calls.Done()

	if len(msgs) == 0 {
		return nil // nothing to confirm, as with every Watermill publisher
	}
	if topic == "" {
		return p.failAll(topic, msgs, fmt.Errorf("%w: %w: empty topic: pass one of the configured topics %s", ErrNotSent, ErrUnknownTopic, p.cfg.knownTopics()))
	}
	ex, err := p.cfg.exchangeFor(topic)
	if err != nil {
		return p.failAll(topic, msgs, fmt.Errorf("%w: %w", ErrNotSent, err))
	}

	results := make([]error, len(msgs))
	out, invalid := p.prepare(topic, ex, msgs, results)
	if invalid {
		for i := range results {
			if results[i] == nil {
				results[i] = fmt.Errorf("%w: another message of this batch is invalid, so none was published", ErrNotSent)
			}
		}
		return p.result(topic, msgs, results)
	}

	p.cfg.Observer.Published(topic, len(out))
	call := publishCall{p: p, topic: topic, ex: ex, results: results, dl: p.callDeadline()}
	defer call.end()
	for len(out) > 0 {
		out = call.pass(out)
	}
	return p.result(topic, msgs, results)
}

// failAll fails every message of a call with err.
func (p *Publisher) failAll(topic string, msgs []*message.Message, err error) error {
	results := make([]error, len(msgs))
	for i := range results {
		results[i] = err
	}
	return p.result(topic, msgs, results)
}

// result is nil when every message was confirmed, else a *PublishError
// with each message's outcome.
func (p *Publisher) result(topic string, msgs []*message.Message, results []error) error {
	// The common case, all confirmed, builds no PublishError.
	var pe *PublishError
	for i, err := range results {
		if err == nil {
			continue
		}
		p.cfg.Observer.NotConfirmed(topic, err)
		if pe == nil {
			pe = &PublishError{Topic: topic}
		}
		f := MessageError{Index: i, Err: err}
		if msgs[i] != nil {
			f.UUID = msgs[i].UUID
		}
		pe.Failed = append(pe.Failed, f)
	}
	if pe == nil {
		if p.trace {
			p.logger.Trace("Published and confirmed", watermill.LogFields{"topic": topic, "messages": len(msgs)})
		}
		return nil
	}
	for i, err := range results {
		if err == nil {
			pe.Confirmed = append(pe.Confirmed, msgs[i].UUID)
		}
	}
	return pe
}
