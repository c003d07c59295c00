package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/prommetrics"
)

const publishAbout = `Publishes one persistent message to the exchange of <topic> with <routing-key>, through
durablews.Publisher (publisher confirms), and prints the broker's confirmation or why the message
was not confirmed. The payload is the third argument, or stdin when it is "-" or missing.
The exchange must exist (durablews setup declares it); publish never declares one. A topic that
is not in -exchanges is taken as a topic exchange of that name. For a fanout or headers exchange
list it in -exchanges with its kind and pass "" as the routing key.`

// metadataFlag is a repeatable key=value flag.
type metadataFlag map[string]string

func (m metadataFlag) String() string { return "" }
func (m metadataFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	m[k] = val
	return nil
}

func runPublish(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
	fs, o := newFlagSet("publish", " <topic> <routing-key> [payload|-]", publishAbout, stderr)
	confirmTimeout := fs.Duration("confirm-timeout", durablews.DefaultConfirmTimeout, "how long to wait for the confirm, including reconnects (Config.ConfirmTimeout)")
	mandatory := fs.Bool("mandatory", false, "fail with \"returned\" when no queue is bound for the routing key (Config.Mandatory)")
	binaryFrames := fs.Bool("binary-frames", false, "the broker uses web_stomp.ws_frame = binary, so non-UTF-8 payloads are allowed (Config.BinaryFrames)")
	maxPayload := fs.Int("max-payload-bytes", durablews.DefaultMaxPayloadBytes, "reject larger payloads (Config.MaxPayloadBytes)")
	uuid := fs.String("uuid", "", "message UUID, the browser's de-duplication key (default: a new UUID)")
	meta := metadataFlag{}
	fs.Var(meta, "metadata", "`key=value` metadata, sent as a header (repeatable); content_type and correlation_id map to the AMQP properties")
	if err := parse(fs, o, args, env, stderr); err != nil {
		return usageError(err, stderr)
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		fs.Usage()
		return usageError(fmt.Errorf("publish wants <topic> <routing-key> [payload|-], got %d argument(s)", fs.NArg()), stderr)
	}
	topic, key := fs.Arg(0), fs.Arg(1)
	var payload []byte
	if fs.NArg() == 3 && fs.Arg(2) != "-" {
		payload = []byte(fs.Arg(2))
	} else {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, int64(*maxPayload)+1))
		if err != nil {
			fmt.Fprintf(stderr, "durablews publish: read payload from stdin: %v\n", err)
			return exitFail
		}
		payload = b
	}

	cfg := durablews.NewConfig(o.urls[0])
	cfg.URLs = o.urls
	for _, ex := range o.exchangeList {
		ex.Passive = true // publish never declares: setup owns the topology
		cfg.Exchanges[ex.Name] = ex
	}
	if _, ok := cfg.Exchanges[topic]; !ok && topic != "" {
		cfg.Exchanges[topic] = durablews.Exchange{Name: topic, Kind: durablews.KindTopic, Passive: true}
	}
	cfg.ConfirmTimeout = *confirmTimeout
	cfg.Mandatory = *mandatory
	cfg.BinaryFrames = *binaryFrames
	cfg.MaxPayloadBytes = *maxPayload
	cfg.AMQP.Dial = amqp.DefaultDial(o.timeout)
	cfg.AMQP.Properties = amqp.Table{"connection_name": "durablews publish"}
	cfg.RoutingKey = func(string, *message.Message) (string, error) { return key, nil }

	pub, err := durablews.NewPublisher(cfg, o.logger)
	if err != nil {
		fmt.Fprintf(stderr, "durablews publish: %s\n", strings.TrimPrefix(err.Error(), "durablews: "))
		return exitFail
	}
	defer func() {
		if err := pub.Close(); err != nil {
			o.logger.Error("Close publisher", err, nil)
		}
	}()

	id := *uuid
	if id == "" {
		id = watermill.NewUUID()
	}
	msg := message.NewMessage(id, payload)
	for k, v := range meta {
		msg.Metadata.Set(k, v)
	}
	msg.SetContext(ctx)
	ex := cfg.Exchanges[topic]
	started := time.Now()
	err = pub.Publish(topic, msg)
	took := time.Since(started)
	where := fmt.Sprintf("topic %q -> exchange %q (%s), routing key %q, message %s, %d bytes", topic, ex.Name, ex.Kind, key, id, len(payload))
	if err == nil {
		fmt.Fprintf(stdout, "confirmed: %s, in %s\n", where, took.Round(10*time.Microsecond))
		return exitOK
	}
	var pe *durablews.PublishError
	if errors.As(err, &pe) && len(pe.Failed) == 1 {
		f := pe.Failed[0].Err
		fmt.Fprintf(stdout, "NOT confirmed (%s): %s, after %s: %v\n", prommetrics.NotConfirmedReason(f), where, took.Round(10*time.Microsecond), f)
		if hint := publishHint(f); hint != "" {
			fmt.Fprintf(stdout, "  fix: %s\n", hint)
		}
		return exitFail
	}
	fmt.Fprintf(stdout, "NOT published: %s: %v\n", where, err)
	return exitFail
}

func publishHint(err error) string {
	switch {
	case errors.Is(err, durablews.ErrUnroutable):
		return "no queue is bound for this routing key (no tab of that user is subscribed, or its queue expired)"
	case errors.Is(err, durablews.ErrNacked):
		return "a queue refused it: a tab queue at max-length with overflow reject-publish; other queues may have it"
	case strings.Contains(err.Error(), "NOT_FOUND"):
		return "the exchange does not exist: run `durablews setup` (with the same -exchanges)"
	}
	return ""
}
