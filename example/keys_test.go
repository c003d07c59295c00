package main

import (
	"context"
	"errors"
	"testing"

	"github.com/durablews/durablews/tabsession"
)

// TestKeysAreBuiltFromLiteralSegments: the demo's binding and routing keys
// refuse ids that would widen a binding to another customer's events, even
// if an id got past the login's own check.
func TestKeysAreBuiltFromLiteralSegments(t *testing.T) {
	bindings := tabSessionConfig(defaultAppConfig()).Bindings
	got, err := bindings(context.Background(), "42")
	if err != nil || len(got) != 1 || got[0].Key != "customer.42.#" {
		t.Fatalf("Bindings(42) = %v, %v; want customer.42.#", got, err)
	}
	for _, id := range []string{"43.order", "*", "#", ""} {
		if got, err := bindings(context.Background(), id); !errors.Is(err, tabsession.ErrBadKeySegment) {
			t.Errorf("Bindings(%q) = %v, %v; want ErrBadKeySegment", id, got, err)
		}
	}
	if rk, err := routingKey("42", "order_paid"); err != nil || rk != "customer.42.order_paid" {
		t.Errorf("routingKey(42, order_paid) = %q, %v", rk, err)
	}
}
