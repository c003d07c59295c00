package tabsession

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// Binding is one binding of a tab's queue: messages published to Exchange
// with a routing key matching Key (topic pattern for topic exchanges, exact
// key for direct ones, ignored by fanout) reach the tab.
type Binding struct {
	Exchange string `json:"exchange"`
	Key      string `json:"key"`
}

// cleanBindings validates the application's bindings and drops duplicates.
func cleanBindings(in []Binding) ([]Binding, error) {
	out := make([]Binding, 0, len(in))
	seen := make(map[Binding]bool, len(in))
	for _, b := range in {
		switch {
		case b.Exchange == "":
			return nil, fmt.Errorf("a binding with an empty exchange (the default exchange cannot be bound)")
		case len(b.Exchange) > amqpconn.MaxShortString || len(b.Key) > amqpconn.MaxShortString:
			return nil, fmt.Errorf("binding %+v: exchange and key are limited to %d bytes", b, amqpconn.MaxShortString)
		case !utf8.ValidString(b.Exchange) || !utf8.ValidString(b.Key):
			return nil, fmt.Errorf("binding %+v is not valid UTF-8", b)
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out, nil
}

// selectBindings returns the requested subset of allowed (all of allowed
// when nothing was requested).
func selectBindings(allowed []Binding, requested *[]Binding) ([]Binding, *httpError) {
	if requested == nil {
		return allowed, nil
	}
	if len(*requested) == 0 {
		return nil, badRequest("bindings is an empty list: omit it to get every binding you are allowed, or list some")
	}
	ok := make(map[Binding]bool, len(allowed))
	for _, b := range allowed {
		ok[b] = true
	}
	var out, refused []Binding
	seen := make(map[Binding]bool)
	for _, b := range *requested {
		if !ok[b] {
			refused = append(refused, b)
			continue
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	if len(refused) > 0 {
		parts := make([]string, len(refused))
		for i, b := range refused {
			parts[i] = fmt.Sprintf("%q %q", b.Exchange, b.Key)
		}
		return nil, forbidden(nil, "binding not allowed for this user: %s (omit bindings to get the allowed ones)", strings.Join(parts, ", "))
	}
	return out, nil
}

// bindAll binds queue to every granted binding and, with a management
// client, removes the bindings that are no longer granted. For a queue that
// existed (check), lost reports that a granted binding was missing before
// this request: the broker lost it (a kill -9 right after the bind) or it
// is newly granted. Either way events for it may not have reached the tab,
// so the session says queue_created and the page reloads its state. Only
// the management API can tell (AMQP binds are silent), so without one lost
// is always false.
func (h *Handler) bindAll(ch *amqp.Channel, queue string, granted []Binding, check bool, brokerErr func(string, error) error) (lost bool, err error) {
	var mgmt *rabbithole.Client
	var present []rabbithole.BindingInfo
	if h.mgmt != nil {
		// Listed before binding, so that a missing binding shows.
		if mgmt, present, err = h.listBindings(queue); err != nil {
			return false, err
		}
	}
	have := make(map[Binding]bool, len(present))
	for _, bi := range present {
		if bi.Source != "" && bi.DestinationType == "queue" && bi.Destination == queue && len(bi.Arguments) == 0 {
			have[Binding{Exchange: bi.Source, Key: bi.RoutingKey}] = true
		}
	}
	for _, b := range granted {
		if err := ch.QueueBind(queue, b.Key, b.Exchange, false, nil); err != nil {
			return false, brokerErr(fmt.Sprintf("bind queue %s to exchange %q with key %q", queue, b.Exchange, b.Key), err)
		}
		if check && mgmt != nil && !have[b] {
			lost = true
			h.logger.Info("Tab queue was missing a granted binding (lost by the broker, or newly granted); the session reports queue_created", watermill.LogFields{"queue": queue, "exchange": b.Exchange, "key": b.Key})
		}
	}
	if mgmt == nil {
		return lost, nil
	}
	return lost, h.removeStaleBindings(mgmt, queue, present, granted)
}

// listBindings lists queue's bindings through the first management API (of
// one per node) that answers, and returns that client. It fails closed: if
// no management API can be asked, the request fails with 503 rather than
// hand out a token for a queue that may still be bound to a revoked key.
func (h *Handler) listBindings(queue string) (*rabbithole.Client, []rabbithole.BindingInfo, error) {
	h.mu.Lock()
	start := h.mgmtIdx
	h.mu.Unlock()
	var errs []error
	for k := range h.mgmt {
		i := (start + k) % len(h.mgmt)
		infos, err := h.mgmt[i].ListQueueBindings(h.vhost, queue)
		if err == nil {
			h.mu.Lock()
			h.mgmtIdx = i
			h.mu.Unlock()
			return h.mgmt[i], infos, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", h.mgmt[i].Endpoint, err))
	}
	return nil, nil, unavailable(fmt.Errorf("management API: list bindings of %s: %w", queue, errors.Join(errs...)))
}

// removeStaleBindings deletes every binding of queue in present (except the
// default exchange's) that is not granted. A failure is 503 (fail closed).
func (h *Handler) removeStaleBindings(mgmt *rabbithole.Client, queue string, present []rabbithole.BindingInfo, granted []Binding) error {
	keep := make(map[Binding]bool, len(granted))
	for _, b := range granted {
		keep[b] = true
	}
	for _, bi := range present {
		if bi.Source == "" || bi.DestinationType != "queue" || bi.Destination != queue {
			continue
		}
		if len(bi.Arguments) == 0 && keep[Binding{Exchange: bi.Source, Key: bi.RoutingKey}] {
			continue
		}
		resp, err := mgmt.DeleteBinding(h.vhost, bi)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return unavailable(fmt.Errorf("management API: delete binding %s -> %s (%q): %w", bi.Source, queue, bi.RoutingKey, err))
		}
		h.logger.Info("Removed a tab queue binding the user is no longer allowed", watermill.LogFields{"queue": queue, "exchange": bi.Source, "key": bi.RoutingKey})
	}
	return nil
}
