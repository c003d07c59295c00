package stomptab_test

import (
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

// Send's RECEIPT comes after the message is stored: it is in the bound
// queue, persistent, with the tab's headers, as soon as Send returned.
// A SEND to an exchange that does not exist ends the connection.
func TestSend_ReceiptMeansStored(t *testing.T) {
	b := newBroker(t)
	ex := b.exchange()
	q := stomptab.UniqueName("stomptab-send")
	b.cleanupQueue(q)
	require.NoError(t, b.do(func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return err
		}
		return ch.QueueBind(q, "k.*", ex, false, nil)
	}))
	tab := brokertest.DialTab(t, stomptab.Options{})
	body := []byte(`{"v":1,"tab":"t1","receipts":[]}`)
	require.NoError(t, tab.Send(brokertest.Ctx(t, 10*time.Second), "/exchange/"+ex+"/k.t1", "application/json", body, [2]string{"x-durablews-receipts", "1"}))
	require.NoError(t, b.do(func(ch *amqp.Channel) error {
		d, ok, err := ch.Get(q, true)
		require.NoError(t, err)
		require.True(t, ok, "the message is in the queue when Send returned")
		assert.Equal(t, body, d.Body)
		assert.Equal(t, "k.t1", d.RoutingKey)
		assert.Equal(t, uint8(amqp.Persistent), d.DeliveryMode)
		assert.Equal(t, "application/json", d.ContentType)
		assert.Equal(t, "1", d.Headers["x-durablews-receipts"])
		return nil
	}))

	err := tab.Send(brokertest.Ctx(t, 10*time.Second), "/exchange/"+stomptab.UniqueName("missing")+"/k", "text/plain", []byte("x"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, stomptab.ErrBrokerClosed), "%v", err)
	t.Logf("SEND to a missing exchange: %v", err)
}
