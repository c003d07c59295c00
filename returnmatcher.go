package durablews

import (
	"strconv"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// returnMatcher matches the basic.returns of a confirm channel to the
// mandatory publishes awaiting them, by the token each publish carries in
// PublishTokenHeader.
type returnMatcher struct {
	mu       sync.Mutex
	awaiting map[uint64]*awaitedReturn // by publish sequence number (the token)
}

// returnKey is what a basic.return tells about the message it returns.
type returnKey struct{ messageID, exchange, routingKey string }

// awaitedReturn is a mandatory publish whose confirm has not been handled.
type awaitedReturn struct {
	tag uint64 // publish sequence number on the channel, sent as PublishTokenHeader
	key returnKey
	dc  *amqp.DeferredConfirmation // nil until sent
	ret *amqp.Return               // set when the broker returned it
}

// await registers the publish about to be sent as tag.
func (m *returnMatcher) await(tag uint64, key returnKey) *awaitedReturn {
	a := &awaitedReturn{tag: tag, key: key}
	m.mu.Lock()
	m.awaiting[tag] = a
	m.mu.Unlock()
	return a
}

// sent records a's confirmation once it was sent.
func (m *returnMatcher) sent(a *awaitedReturn, dc *amqp.DeferredConfirmation) {
	m.mu.Lock()
	a.dc = dc
	m.mu.Unlock()
}

// returned matches a basic.return to the publish its token names. A
// return without a token (a broker that dropped the headers) goes to the
// earliest publish it can belong to: same message id, exchange and
// routing key, not returned yet, and not confirmed yet (a return precedes
// its message's ack). A return nobody awaits, e.g. of a publish
// forgotten, is dropped.
func (m *returnMatcher) returned(r amqp.Return) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := returnKey{r.MessageId, r.Exchange, r.RoutingKey}
	if tok, ok := r.Headers[PublishTokenHeader].(string); ok {
		if tag, err := strconv.ParseUint(tok, 10, 64); err == nil {
			if a := m.awaiting[tag]; a != nil && a.key == key && a.ret == nil {
				a.ret = &r
			}
			return
		}
	}
	var first *awaitedReturn
	for _, a := range m.awaiting {
		if a.key == key && a.ret == nil && (a.dc == nil || !isDone(a.dc.Done())) && (first == nil || a.tag < first.tag) {
			first = a
		}
	}
	if first != nil {
		first.ret = &r
	}
}

// take ends the wait for a's return once its confirm came, and returns
// the return if the broker sent one.
func (m *returnMatcher) take(a *awaitedReturn) *amqp.Return {
	if a == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.awaiting, a.tag)
	return a.ret
}

// forget gives up on a before its confirm came: a return of it that comes
// later names it by its token and is dropped.
func (m *returnMatcher) forget(a *awaitedReturn) {
	if a == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.awaiting, a.tag)
}
