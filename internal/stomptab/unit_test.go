package stomptab_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/durablews/durablews/internal/stomptab"
)

// The SUBSCRIBE frame must match web/internal.js subscribeHeaders.
func TestSubHeadersMatchBrowserClient(t *testing.T) {
	s := stomptab.Sub{Exchange: "events", BindingKey: "customer.42.#", QueueName: "tab-abc12345-orders"}
	assert.Equal(t, "/exchange/events/customer.42.#", s.Destination())
	assert.Equal(t, [][2]string{
		{"id", "tab-abc12345-orders"},
		{"durable", "true"},
		{"auto-delete", "false"},
		{"exclusive", "false"},
		{"x-queue-name", "tab-abc12345-orders"},
		{"x-expires", "3600000"},
		{"prefetch-count", "10"},
	}, s.Headers())

	s = stomptab.Sub{Exchange: "a/b", BindingKey: "x/y", QueueName: "q", Expires: 2 * time.Second, Prefetch: 50}
	assert.Equal(t, "/exchange/a%2Fb/x%2Fy", s.Destination())
	assert.Contains(t, s.Headers(), [2]string{"x-expires", "2000"})
	assert.Contains(t, s.Headers(), [2]string{"prefetch-count", "50"})
	assert.Equal(t, "/exchange/fan", stomptab.Sub{Exchange: "fan"}.Destination())
}

func TestNames(t *testing.T) {
	id := stomptab.NewTabID()
	assert.Regexp(t, regexp.MustCompile(`^[a-z2-7]{26}$`), id) // web/internal.js generateTabId
	assert.NotEqual(t, id, stomptab.NewTabID())
	assert.Equal(t, "tab-"+id+"-orders", stomptab.QueueName(id, "orders"))
	assert.Regexp(t, `^tab-[a-z2-7]{26}-x$`, stomptab.RandomQueueName("x"))
	assert.Regexp(t, `^p-[0-9a-f]{12}$`, stomptab.UniqueName("p"))
}

func TestCollectorDeduplicates(t *testing.T) {
	c := stomptab.NewCollector()
	assert.True(t, c.Add(stomptab.Message{ID: "a"}))
	assert.True(t, c.Add(stomptab.Message{ID: "b"}))
	assert.False(t, c.Add(stomptab.Message{ID: "a", Redelivered: true}))
	assert.True(t, c.Add(stomptab.Message{})) // no id: never a duplicate
	assert.True(t, c.Add(stomptab.Message{}))
	assert.Equal(t, []string{"a", "b", "", ""}, c.IDs())
	assert.Equal(t, stomptab.Stats{Deliveries: 5, Unique: 4, Duplicates: 1, Redelivered: 1}, c.Stats())
	assert.Equal(t, stomptab.Delivery{ID: "a", Redelivered: true, Duplicate: true}, c.Log()[2])
}
