package tabsession_test

import (
	"context"
	"fmt"

	"github.com/durablews/durablews/tabsession"
)

// Build the keys of a user's bindings from literal segments: an id that
// holds a separator or a wildcard is refused instead of widening the
// binding to other users' events.
func ExampleBindingPattern() {
	bindings := func(_ context.Context, user string) ([]tabsession.Binding, error) {
		key, err := tabsession.BindingPattern(tabsession.AnyWords, "customer", user)
		if err != nil {
			return nil, err // a 500, logged: the application let such an id in
		}
		return []tabsession.Binding{{Exchange: "events", Key: key}}, nil
	}
	for _, user := range []string{"42", "43.order", "*"} {
		b, err := bindings(context.Background(), user)
		fmt.Println(b, err)
	}
	// Output:
	// [{events customer.42.#}] <nil>
	// [] tabsession: bad binding key segment: segment 1 "43.order" contains '.', '*' or '#', which a topic exchange reads as a separator or wildcard: refuse such ids, or encode them (e.g. hex) before putting them in a key
	// [] tabsession: bad binding key segment: segment 1 "*" contains '.', '*' or '#', which a topic exchange reads as a separator or wildcard: refuse such ids, or encode them (e.g. hex) before putting them in a key
}

// The routing key of an event for one customer, built the same way.
func ExampleBindingKey() {
	key, err := tabsession.BindingKey("customer", "42", "order_paid")
	fmt.Println(key, err)
	// Output: customer.42.order_paid <nil>
}
