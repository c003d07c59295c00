package amqpconn

import (
	"strconv"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BrokerVersion is the version RabbitMQ reports in connection.start's
// server properties, e.g. "4.0.5"; "" when the server names none.
func BrokerVersion(conn *amqp.Connection) string {
	if conn == nil {
		return ""
	}
	v, _ := conn.Properties["version"].(string)
	return v
}

// majorVersion is the leading number of a version like "4.0.5", or -1.
func majorVersion(version string) int {
	head, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(head)
	if err != nil {
		return -1
	}
	return n
}

// UnlimitedDeliveries returns the declare argument that keeps a quorum
// queue from dropping a message that was delivered many times without an
// ack (a tab whose connection keeps dropping with the message in flight),
// on a broker of the given version; nil when none is needed:
//
//   - RabbitMQ 4.0 and newer give every quorum queue a delivery limit of 20
//     and no dead-letter target, so the 21st delivery drops the message.
//     x-delivery-limit -1 turns the limit off (measured on 4.0.5 and 4.3.6:
//     delivered after 30 cuts).
//   - Before 4.0 there is no limit unless one is set, and 3.10 reads -1 as a
//     limit: the message is dropped after its first redelivery (measured on
//     3.10.8). So nothing is sent.
//
// An unknown version (no "version" property) is treated as 4.0 or newer:
// a RabbitMQ that old names its version.
func UnlimitedDeliveries(version string) amqp.Table {
	if m := majorVersion(version); m >= 0 && m < 4 {
		return nil
	}
	return amqp.Table{"x-delivery-limit": int64(-1)}
}
