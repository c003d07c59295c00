// Command durablews sets up, checks and pokes the RabbitMQ broker behind
// durablews.
//
//	durablews setup   [flags]            declare the exchanges, the tab-queue policy and -streams (idempotent; -dry-run)
//	durablews doctor  [flags]            check the broker, plugins, Web-STOMP, exchanges, policy and tab queues
//	durablews publish [flags] <topic> <routing-key> [payload|-]
//	                                     publish one message and print its confirmation
//
// Every flag can also be set by an environment variable: DURABLEWS_ and the
// flag name in upper case with - as _, e.g. -amqp-url is DURABLEWS_AMQP_URL and
// -confirm-timeout is DURABLEWS_CONFIRM_TIMEOUT. A flag on the command line
// wins over the environment. Run "durablews <command> -h" for the flags.
//
// Exit codes: 0 success (doctor: nothing wrong), 1 failure (doctor: at
// least one check failed), 2 usage error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// run is the whole command with the process environment; main is a thin
// wrapper so that tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, os.LookupEnv, stdout, stderr)
}

// lookupEnv is os.LookupEnv's signature; tests pass their own environment.
type lookupEnv func(string) (string, bool)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int
}

var commands = []command{
	{"setup", "declare the configured exchanges, apply the tab-queue policy, declare -streams (idempotent; -dry-run prints the changes)", runSetup},
	{"doctor", "check broker, plugins, Web-STOMP, exchanges, tab-queue policy and tab queues; exit 1 if something is wrong", runDoctor},
	{"publish", "publish one message: publish [flags] <topic> <routing-key> [payload|-]; prints the confirmation", runPublish},
}

func runEnv(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], env, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "durablews: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: durablews <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every flag can be set by an environment variable: DURABLEWS_<FLAG> in upper case with - as _,")
	fmt.Fprintln(w, "e.g. -amqp-url is DURABLEWS_AMQP_URL. Flags on the command line win. \"durablews <command> -h\" lists the flags.")
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 failure (doctor: a check failed), 2 usage error.")
}
