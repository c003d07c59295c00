package broadcast

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Channeler opens AMQP channels; *amqp091.Connection is one.
type Channeler interface {
	Channel() (*amqp.Channel, error)
}

// ErrMismatch is wrapped by Declare's error when the stream exists with
// other arguments (or as another queue type).
var ErrMismatch = errors.New("broadcast: the stream exists with other arguments")

// ErrNoExchange is wrapped by Declare's error when the exchange to bind
// to does not exist.
var ErrNoExchange = errors.New("broadcast: the exchange does not exist")

// Declare creates the stream described by cfg, if missing, and binds it to
// cfg.Exchange with each binding key. It is idempotent: call it at startup
// and after reconnects.
//
// It fails with ErrMismatch when the stream exists with other arguments
// (RabbitMQ cannot change them in place), ErrNoExchange when the exchange
// is missing, and with cfg.Validate's error before touching the broker.
// Declare uses its own short-lived channels, because a refused declare
// closes the channel it was sent on.
func Declare(ctx context.Context, conn Channeler, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	err := withChannel(ctx, conn, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(cfg.Stream, true, false, false, false, cfg.Arguments())
		return err
	})
	if isCode(err, amqp.PreconditionFailed) {
		return fmt.Errorf("%w: %q: %v. Fix: RabbitMQ cannot change a stream's arguments by declaring it again; "+
			"change retention with a policy (max-age, max-length-bytes), or delete the stream (its history is lost) and declare it again",
			ErrMismatch, cfg.Stream, reason(err))
	}
	if err != nil {
		return fmt.Errorf("broadcast: declare stream %q: %w", cfg.Stream, err)
	}
	for _, key := range cfg.BindingKeys {
		err := withChannel(ctx, conn, func(ch *amqp.Channel) error {
			return ch.QueueBind(cfg.Stream, key, cfg.Exchange, false, nil)
		})
		if isCode(err, amqp.NotFound) {
			return fmt.Errorf("%w: bind stream %q to %q: %v. Fix: declare the exchange first (durablews setup -exchanges %s)",
				ErrNoExchange, cfg.Stream, cfg.Exchange, reason(err), cfg.Exchange)
		}
		if err != nil {
			return fmt.Errorf("broadcast: bind stream %q to exchange %q with key %q: %w", cfg.Stream, cfg.Exchange, key, err)
		}
	}
	return nil
}

// withChannel runs f on a fresh channel and closes it. amqp091-go's
// methods take no context, so on ctx's end the channel is closed, which
// makes f's pending call return.
func withChannel(ctx context.Context, conn Channeler, f func(*amqp.Channel) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- f(ch) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = ch.Close()
		<-done
		return ctx.Err()
	}
	_ = ch.Close() // already closed after a refused call
	return err
}

func isCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}

// reason is the broker's text of an AMQP error.
func reason(err error) string {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return err.Error()
}
