package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	rabbithole "github.com/michaelklishin/rabbit-hole/v3"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/broadcast"
)

const setupAbout = `Declares the configured exchanges (durable, of their kind) and applies the tab-queue policy
(expires, max-length, overflow for queues matching -tab-queue-pattern) through the management
HTTP API, and the broadcast streams of -streams with their retention and bindings.
Idempotent: what already matches is left alone. -dry-run prints what would change.
An exchange or stream that exists with other settings is reported, never deleted.`

func runSetup(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
	fs, o := newFlagSet("setup", "", setupAbout, stderr)
	dryRun := fs.Bool("dry-run", false, "print what would change and change nothing")
	sf := addStreamFlags(fs)
	if err := parse(fs, o, args, env, stderr); err != nil {
		return usageError(err, stderr)
	}
	defaultExchange := ""
	if len(o.exchangeList) == 1 {
		defaultExchange = o.exchangeList[0].Name
	}
	streams, err := sf.configs(defaultExchange)
	if err != nil {
		return usageError(err, stderr)
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("setup takes no arguments, got %q", fs.Args()), stderr)
	}
	mc, err := newManagement(o)
	if err != nil {
		fmt.Fprintf(stderr, "durablews setup: %v\n", err)
		return exitFail
	}
	s := &setup{o: o, mc: mc, dryRun: *dryRun, out: stdout, streams: streams}
	if err := s.run(ctx); err != nil {
		fmt.Fprintf(stderr, "durablews setup: %v\n", err)
		return exitFail
	}
	return exitOK
}

func usageError(err error, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "durablews: %v\n", err)
	return exitUsage
}

type setup struct {
	o       *options
	mc      *rabbithole.Client
	dryRun  bool
	streams []broadcast.Config
	out     io.Writer
	changes int
	errs    []error
}

func (s *setup) run(ctx context.Context) error {
	ov, err := s.mc.Overview()
	if err != nil {
		return fmt.Errorf("management API %s: %v\n  fix: %s", s.o.mgmt, err, managementFix(err))
	}
	s.o.logger.Info("Connected to management API", watermill.LogFields{
		"url": s.o.mgmt, "node": ov.Node, "rabbitmq": ov.RabbitMQVersion, "user": s.o.mgmtUser})

	mode := ""
	if s.dryRun {
		mode = " (dry run: nothing is changed)"
	}
	fmt.Fprintf(s.out, "setup: vhost %s on %s (RabbitMQ %s)%s\n", s.o.vhost, s.o.mgmt, ov.RabbitMQVersion, mode)
	for _, ex := range s.o.exchangeList {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.exchange(ex)
	}
	s.policy()
	for _, st := range s.streams {
		s.stream(st)
	}

	switch {
	case len(s.errs) > 0:
		done := "applied"
		if s.dryRun {
			done = "needed"
		}
		fmt.Fprintf(s.out, "setup: FAILED: %d problem(s); %d change(s) %s\n", len(s.errs), s.changes, done)
		return errors.Join(s.errs...)
	case s.changes == 0:
		fmt.Fprintln(s.out, "setup: nothing to change")
	case s.dryRun:
		fmt.Fprintf(s.out, "setup: %d change(s) needed; run without -dry-run to apply them\n", s.changes)
	default:
		fmt.Fprintf(s.out, "setup: %d change(s) applied\n", s.changes)
	}
	return nil
}

func (s *setup) fail(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	s.errs = append(s.errs, err)
	fmt.Fprintf(s.out, "  %s\n", err)
}

func (s *setup) exchange(ex durablews.Exchange) {
	what := fmt.Sprintf("exchange %q (%s, durable)", ex.Name, ex.Kind)
	cur, err := s.mc.GetExchange(s.o.vhost, ex.Name)
	switch {
	case err == nil:
		if cur.Type == ex.Kind && cur.Durable && !cur.AutoDelete && !cur.Internal {
			fmt.Fprintf(s.out, "  %s: exists, unchanged\n", what)
			return
		}
		s.fail("%s: exists as %s; setup does not change an exchange's kind or durability in place. "+
			"Fix: when no publisher uses it, delete it (management UI, or `rabbitmqadmin delete exchange name=%s`) and run setup again, "+
			"or pass its actual kind in -exchanges", what, describeExchange(cur), ex.Name)
		return
	case !isNotFound(err):
		s.fail("%s: cannot read it: %v", what, err)
		return
	}
	if s.dryRun {
		s.changes++
		fmt.Fprintf(s.out, "  %s: missing, would create\n", what)
		return
	}
	if _, err := s.mc.DeclareExchange(s.o.vhost, ex.Name, rabbithole.ExchangeSettings{Type: ex.Kind, Durable: true}); err != nil {
		s.fail("%s: create failed: %v", what, err)
		return
	}
	s.changes++
	fmt.Fprintf(s.out, "  %s: created\n", what)
}

func describeExchange(e *rabbithole.DetailedExchangeInfo) string {
	d := []string{e.Type}
	if e.Durable {
		d = append(d, "durable")
	} else {
		d = append(d, "transient (not durable)")
	}
	if e.AutoDelete {
		d = append(d, "auto-delete")
	}
	if e.Internal {
		d = append(d, "internal")
	}
	return strings.Join(d, ", ")
}

// wantPolicy is the tab-queue policy the options describe.
func (o *options) wantPolicy() rabbithole.Policy {
	return rabbithole.Policy{
		Vhost:      o.vhost,
		Name:       o.policyName,
		Pattern:    o.tabPattern,
		ApplyTo:    "queues",
		Priority:   o.policyPriority,
		Definition: o.policyDefinition(),
	}
}

// policyDiff lists how cur differs from want ("" parts mean equal).
func policyDiff(cur *rabbithole.Policy, want rabbithole.Policy) []string {
	var d []string
	if cur.Pattern != want.Pattern {
		d = append(d, fmt.Sprintf("pattern %q -> %q", cur.Pattern, want.Pattern))
	}
	if cur.ApplyTo != want.ApplyTo {
		d = append(d, fmt.Sprintf("apply-to %s -> %s", cur.ApplyTo, want.ApplyTo))
	}
	if cur.Priority != want.Priority {
		d = append(d, fmt.Sprintf("priority %d -> %d", cur.Priority, want.Priority))
	}
	if !reflect.DeepEqual(map[string]any(cur.Definition), map[string]any(want.Definition)) {
		d = append(d, fmt.Sprintf("definition %s -> %s", formatDef(cur.Definition), formatDef(want.Definition)))
	}
	return d
}

func (s *setup) policy() {
	want := s.o.wantPolicy()
	what := fmt.Sprintf("policy %q (queues matching %q, priority %d): %s", want.Name, want.Pattern, want.Priority, formatDef(want.Definition))
	if len(want.Definition) == 0 {
		s.fail("%s: empty definition; set at least one of -tab-queue-expires, -tab-queue-max-length, -tab-queue-overflow", what)
		return
	}
	cur, err := s.mc.GetPolicy(s.o.vhost, want.Name)
	action := "create"
	switch {
	case err == nil:
		diff := policyDiff(cur, want)
		if len(diff) == 0 {
			fmt.Fprintf(s.out, "  %s: exists, unchanged\n", what)
			return
		}
		action = "update (" + strings.Join(diff, "; ") + ")"
	case !isNotFound(err):
		s.fail("policy %q: cannot read it: %v", want.Name, err)
		return
	}
	if s.dryRun {
		s.changes++
		fmt.Fprintf(s.out, "  %s: would %s\n", what, action)
		return
	}
	if _, err := s.mc.PutPolicy(s.o.vhost, want.Name, want); err != nil {
		s.fail("%s: %s failed: %v", what, strings.Fields(action)[0], err)
		return
	}
	s.changes++
	if action == "create" {
		fmt.Fprintf(s.out, "  %s: created\n", what)
	} else {
		fmt.Fprintf(s.out, "  %s: updated: %s\n", what, strings.TrimSuffix(strings.TrimPrefix(action, "update ("), ")"))
	}
}

// managementFix explains a management API error.
func managementFix(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "401"):
		return "the management API refused the credentials: set -management-user/-management-password (DURABLEWS_MANAGEMENT_USER/_PASSWORD) " +
			"to a user with the policymaker tag (setup writes a policy) and monitoring (doctor reads the nodes), or administrator " +
			"(`rabbitmqctl set_user_tags <user> administrator`)"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"), strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		return "enable the management plugin (`rabbitmq-plugins enable rabbitmq_management`) and check -management-url " +
			"(DURABLEWS_MANAGEMENT_URL; default the AMQP host on port 15672)"
	default:
		return "check -management-url (DURABLEWS_MANAGEMENT_URL) and that the management plugin is enabled (`rabbitmq-plugins enable rabbitmq_management`)"
	}
}
