package main

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v3"

	"github.com/durablews/durablews/broadcast"
)

// Broadcast-stream retention defaults: a day or 1 GiB, whichever is hit
// first. A stream never goes without retention (broadcast.ErrNoRetention).
const (
	defaultStreamMaxAge   = 24 * time.Hour
	defaultStreamMaxBytes = 1 << 30
)

// streamFlags are setup's flags for broadcast streams.
type streamFlags struct {
	list           string
	maxAge         time.Duration
	maxLengthBytes int64
	segmentBytes   int64
}

func addStreamFlags(fs *flag.FlagSet) *streamFlags {
	f := &streamFlags{}
	fs.StringVar(&f.list, "streams", "", "broadcast streams to declare, as `name[:exchange[:key|key...]],...`: a stream bound to the exchange\n"+
		"(default: the exchange of -exchanges when it lists one) with each routing-key pattern (default #); browsers read it at /amq/queue/<name>")
	fs.DurationVar(&f.maxAge, "stream-max-age", defaultStreamMaxAge, "stream retention x-max-age, whole seconds (0: not set; -stream-max-length-bytes must then be set)")
	fs.Int64Var(&f.maxLengthBytes, "stream-max-length-bytes", defaultStreamMaxBytes, "stream retention x-max-length-bytes (0: not set; -stream-max-age must then be set)")
	fs.Int64Var(&f.segmentBytes, "stream-max-segment-size-bytes", 0, "x-stream-max-segment-size-bytes, the unit retention removes (0: broker default, 500 MB)")
	return f
}

// configs parses -streams into validated broadcast configs.
func (f *streamFlags) configs(defaultExchange string) ([]broadcast.Config, error) {
	var out []broadcast.Config
	var errs []error
	seen := map[string]bool{}
	for _, part := range strings.Split(f.list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		fields := strings.SplitN(part, ":", 3)
		cfg := broadcast.Config{
			Stream:              fields[0],
			Exchange:            defaultExchange,
			MaxAge:              f.maxAge,
			MaxLengthBytes:      f.maxLengthBytes,
			MaxSegmentSizeBytes: f.segmentBytes,
		}
		if len(fields) > 1 && fields[1] != "" {
			cfg.Exchange = fields[1]
		}
		if cfg.Exchange == "" {
			errs = append(errs, fmt.Errorf("-streams %q: name the exchange (name:exchange[:keys]); -exchanges lists several", part))
			continue
		}
		if len(fields) > 2 && fields[2] != "" {
			cfg.BindingKeys = strings.Split(fields[2], "|")
		} else {
			cfg.BindingKeys = []string{broadcast.DefaultBindingKey}
		}
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("-streams %q: %w", part, err))
			continue
		}
		if seen[cfg.Stream] {
			errs = append(errs, fmt.Errorf("-streams: stream %q listed twice", cfg.Stream))
		}
		seen[cfg.Stream] = true
		out = append(out, cfg)
	}
	return out, errors.Join(errs...)
}

// stream makes the stream described by cfg exist with its bindings, through
// the management API like the rest of setup. An existing stream with other
// arguments is reported, never deleted: that would drop its history.
func (s *setup) stream(cfg broadcast.Config) {
	args := cfg.Arguments()
	what := fmt.Sprintf("stream %q (%s)", cfg.Stream, formatDef(args))
	cur, err := s.mc.GetQueue(s.o.vhost, cfg.Stream)
	switch {
	case err == nil:
		if diff := argsDiff(cur.Arguments, args); diff != "" || cur.Type != "stream" || !cur.Durable {
			s.fail("%s: exists as a %s queue with arguments %s; RabbitMQ cannot change them in place. "+
				"Fix: change retention with a policy (max-age, max-length-bytes), or, when its history may go, delete it "+
				"(`rabbitmqadmin delete queue name=%s`) and run setup again", what, cur.Type, formatDef(cur.Arguments), cfg.Stream)
			return
		}
		fmt.Fprintf(s.out, "  %s: exists, unchanged\n", what)
	case !isNotFound(err):
		s.fail("%s: cannot read it: %v", what, err)
		return
	case s.dryRun:
		s.changes++
		fmt.Fprintf(s.out, "  %s: missing, would create\n", what)
	default:
		_, err := s.mc.DeclareQueue(s.o.vhost, cfg.Stream, rabbithole.QueueSettings{Type: "stream", Durable: true, Arguments: args})
		if err != nil {
			s.fail("%s: create failed: %v", what, err)
			return
		}
		s.changes++
		fmt.Fprintf(s.out, "  %s: created\n", what)
	}

	have := map[string]bool{}
	if bs, err := s.mc.ListQueueBindings(s.o.vhost, cfg.Stream); err == nil {
		for _, b := range bs {
			if b.Source == cfg.Exchange {
				have[b.RoutingKey] = true
			}
		}
	} else if !isNotFound(err) {
		s.fail("stream %q: cannot read its bindings: %v", cfg.Stream, err)
		return
	}
	for _, key := range cfg.BindingKeys {
		bwhat := fmt.Sprintf("binding %s -> stream %s, key %q", cfg.Exchange, cfg.Stream, key)
		switch {
		case have[key]:
			fmt.Fprintf(s.out, "  %s: exists, unchanged\n", bwhat)
		case s.dryRun:
			s.changes++
			fmt.Fprintf(s.out, "  %s: missing, would create\n", bwhat)
		default:
			_, err := s.mc.DeclareBinding(s.o.vhost, rabbithole.BindingInfo{
				Source: cfg.Exchange, Destination: cfg.Stream, DestinationType: "queue", RoutingKey: key, Arguments: map[string]any{}})
			if err != nil {
				s.fail("%s: create failed: %v (does exchange %q exist? list it in -exchanges)", bwhat, err, cfg.Exchange)
				continue
			}
			s.changes++
			fmt.Fprintf(s.out, "  %s: created\n", bwhat)
		}
	}
}

// argsDiff compares queue arguments as the management API returns them
// (numbers as float64) with the wanted ones; "" means equal.
func argsDiff(cur map[string]any, want map[string]any) string {
	norm := func(m map[string]any) map[string]any {
		out := make(map[string]any, len(m))
		for k, v := range m {
			switch x := v.(type) {
			case int64:
				out[k] = float64(x)
			case int:
				out[k] = float64(x)
			default:
				out[k] = v
			}
		}
		return out
	}
	if reflect.DeepEqual(norm(cur), norm(want)) {
		return ""
	}
	return formatDef(cur) + " -> " + formatDef(want)
}
