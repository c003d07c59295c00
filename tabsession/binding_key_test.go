package tabsession_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/tabsession"
)

func TestBindingKey(t *testing.T) {
	for _, tc := range []struct {
		segments []string
		want     string
	}{
		{[]string{"customer", "42"}, "customer.42"},
		{[]string{"customer", "42", "order_paid"}, "customer.42.order_paid"},
		{[]string{"tenant-ä", "x y"}, "tenant-ä.x y"}, // anything but the three is a literal
		{[]string{strings.Repeat("a", 255)}, strings.Repeat("a", 255)},
	} {
		got, err := tabsession.BindingKey(tc.segments...)
		require.NoError(t, err, "%q", tc.segments)
		assert.Equal(t, tc.want, got)
	}

	// Ids that would widen "customer." + id + ".#" to someone else's events.
	for _, tc := range []struct {
		segments []string
		reason   string
	}{
		{[]string{"customer", "43.order"}, "contains '.', '*' or '#'"}, // customer.43.order.# : part of 43's events
		{[]string{"customer", "*"}, "contains '.', '*' or '#'"},        // customer.*.# : every customer
		{[]string{"customer", "#"}, "contains '.', '*' or '#'"},        // customer.#.# : every customer
		{[]string{"customer", "4#2"}, "contains '.', '*' or '#'"},
		{[]string{"customer", ""}, "segment 1 is empty"}, // customer..# : nobody's, a bug upstream
		{[]string{"customer", "\xff"}, "not valid UTF-8"},
		{nil, "no segments"},
		{[]string{strings.Repeat("a", 200), strings.Repeat("b", 55)}, "at most 255"},
	} {
		key, err := tabsession.BindingKey(tc.segments...)
		assert.ErrorIs(t, err, tabsession.ErrBadKeySegment, "%q", tc.segments)
		assert.ErrorContains(t, err, tc.reason, "%q", tc.segments)
		assert.Empty(t, key)
		pattern, err := tabsession.BindingPattern(tabsession.AnyWords, tc.segments...)
		assert.ErrorIs(t, err, tabsession.ErrBadKeySegment, "%q", tc.segments)
		assert.Empty(t, pattern)
	}
}

func TestBindingPattern(t *testing.T) {
	got, err := tabsession.BindingPattern(tabsession.AnyWords, "customer", "42")
	require.NoError(t, err)
	assert.Equal(t, "customer.42.#", got)
	got, err = tabsession.BindingPattern(tabsession.AnyWord, "customer", "42")
	require.NoError(t, err)
	assert.Equal(t, "customer.42.*", got)
	assert.Equal(t, "#", tabsession.AnyWords.String())
	assert.Equal(t, "*", tabsession.AnyWord.String())

	_, err = tabsession.BindingPattern(tabsession.Wildcard{}, "customer", "42")
	assert.ErrorContains(t, err, "zero Wildcard")
	_, err = tabsession.BindingPattern(tabsession.AnyWords, strings.Repeat("a", 254))
	assert.ErrorContains(t, err, "at most 255", "254 bytes + \".#\"")
	got, err = tabsession.BindingPattern(tabsession.AnyWords, strings.Repeat("a", 253))
	require.NoError(t, err)
	assert.Len(t, got, 255)
}
