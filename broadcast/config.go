package broadcast

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DefaultBindingKey binds every routing key of the exchange.
const DefaultBindingKey = "#"

// ErrNoRetention is returned by Validate for a Config without MaxAge and
// MaxLengthBytes: such a stream grows until the broker's disk is full.
var ErrNoRetention = errors.New("broadcast: a stream needs retention: set MaxAge and/or MaxLengthBytes (durablews setup: -stream-max-age / -stream-max-length-bytes)")

// Config describes one broadcast stream.
type Config struct {
	// Stream is the stream's (queue's) name. Tabs subscribe to
	// /amq/queue/<Stream>. Required.
	Stream string
	// Exchange the stream is bound to; it must exist. Required.
	Exchange string
	// BindingKeys are the routing-key patterns bound (for a topic exchange,
	// e.g. "price.#"). Default: DefaultBindingKey.
	BindingKeys []string

	// MaxAge is x-max-age: segments whose messages are all older are
	// removed. Whole seconds.
	MaxAge time.Duration
	// MaxLengthBytes is x-max-length-bytes: the oldest segments are
	// removed while the stream is larger.
	MaxLengthBytes int64
	// MaxSegmentSizeBytes is x-stream-max-segment-size-bytes, the size of
	// one segment file, which is the unit retention removes. Zero leaves
	// the broker's default (500 MB).
	MaxSegmentSizeBytes int64
	// InitialClusterSize is x-initial-cluster-size, the number of replicas.
	// Zero leaves the broker's default (every node of the cluster).
	InitialClusterSize int
}

func (c *Config) setDefaults() {
	if len(c.BindingKeys) == 0 {
		c.BindingKeys = []string{DefaultBindingKey}
	}
}

// Validate reports what is wrong with the Config, and how to fix it.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Stream == "":
		errs = append(errs, errors.New("broadcast: Config.Stream is empty: name the stream"))
	case len(c.Stream) > 255:
		errs = append(errs, fmt.Errorf("broadcast: stream name is %d bytes long; RabbitMQ allows 255", len(c.Stream)))
	case strings.HasPrefix(c.Stream, "amq."):
		errs = append(errs, fmt.Errorf("broadcast: stream name %q starts with amq., which RabbitMQ reserves; pick another name", c.Stream))
	}
	if c.Exchange == "" {
		errs = append(errs, errors.New("broadcast: Config.Exchange is empty: name the exchange to bind the stream to (the default exchange cannot be bound)"))
	}
	if c.MaxAge < 0 || c.MaxLengthBytes < 0 || c.MaxSegmentSizeBytes < 0 || c.InitialClusterSize < 0 {
		errs = append(errs, errors.New("broadcast: MaxAge, MaxLengthBytes, MaxSegmentSizeBytes and InitialClusterSize must not be negative"))
	} else if c.MaxAge == 0 && c.MaxLengthBytes == 0 {
		errs = append(errs, ErrNoRetention)
	}
	if c.MaxAge > 0 && c.MaxAge%time.Second != 0 {
		errs = append(errs, fmt.Errorf("broadcast: MaxAge %v is not a whole number of seconds (x-max-age counts seconds)", c.MaxAge))
	}
	return errors.Join(errs...)
}

// Arguments are the queue.declare arguments of the stream.
func (c Config) Arguments() amqp.Table {
	args := amqp.Table{"x-queue-type": "stream"}
	if c.MaxAge > 0 {
		args["x-max-age"] = maxAge(c.MaxAge)
	}
	if c.MaxLengthBytes > 0 {
		args["x-max-length-bytes"] = c.MaxLengthBytes
	}
	if c.MaxSegmentSizeBytes > 0 {
		args["x-stream-max-segment-size-bytes"] = c.MaxSegmentSizeBytes
	}
	if c.InitialClusterSize > 0 {
		args["x-initial-cluster-size"] = int64(c.InitialClusterSize)
	}
	return args
}

// maxAge formats d for x-max-age in the largest unit that divides it
// (D, h, m or s): the broker compares arguments textually on redeclare, so
// one duration must always give the same text.
func maxAge(d time.Duration) string {
	s := int64(d / time.Second)
	for _, u := range []struct {
		unit string
		secs int64
	}{{"D", 86400}, {"h", 3600}, {"m", 60}} {
		if s%u.secs == 0 {
			return strconv.FormatInt(s/u.secs, 10) + u.unit
		}
	}
	return strconv.FormatInt(s, 10) + "s"
}
