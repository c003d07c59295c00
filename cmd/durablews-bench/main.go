// Command durablews-bench runs the durablews Publisher, watermill-amqp's
// publisher and raw amqp091-go against the same RabbitMQ broker, exchange
// and queues, in one process and one run, and prints a table plus one
// ratio line per target.
//
//	go run ./cmd/durablews-bench                 # full run, ~10 minutes on 2 cores
//	go run ./cmd/durablews-bench -short          # smoke run (CI), numbers meaningless
//	go run ./cmd/durablews-bench -markdown       # README-ready tables
//	go run ./cmd/durablews-bench -scenarios 'pipelined' -contenders 'durablews|raw' -cpuprofile cpu.out
//	go run ./cmd/durablews-bench -cluster        # classic vs quorum tab queues on a private 3-node cluster (cluster.go)
//	go run ./cmd/durablews-bench -private-broker -scenarios connected   # on a private node (its own open-files limit)
//	go run ./cmd/durablews-bench -versions -markdown   # per RabbitMQ version, side by side (versions.go), ~35 min
//	go run ./cmd/durablews-bench -versions=4.0,4.3 -short   # smoke run on two versions, seconds each
//	go run ./cmd/durablews-bench -versions -scenarios receipts -markdown   # only the receipts rows, per version
//
// -versions (alone: every version of internal/brokerversion, default
// first; or a comma-separated list) runs, against each version's shared
// node in turn, the publisher scenarios one-by-one-q1 and pipelined-q1
// (durablews and raw amqp091-go only), the streams scenario and the
// receipts scenario (-scenarios narrows these), and prints one table: a
// row per metric (raw amqp091-go's msg/s as the anchors, durablews ÷ raw
// one at a time and pipelined, streams ÷ queues at each K, broker memory
// per away subscriber, receipts off vs on), a column per version. Every ratio
// divides two figures of the same run on the same broker. Make each node
// ready first: bash scripts/rabbitmq-versions.sh start VER.
//
// Scenarios (each on fresh queues, contenders interleaved and rotated
// across runs, median of -runs reported):
//
//	one-by-one-q1/q10  one message per call from one goroutine, 1 or 10 bound queues
//	pipelined-q1/q10   batches of 100 from one goroutine; 16 goroutines × 1 message
//	e2e-1tab/10tabs   publish → Web-STOMP → Go tab client (acking), fixed rate
//	fanout-N           every message to N durable tab queues (-fanout)
//	streams            K tab queues vs one stream, K away subscribers (-streams-k)
//	connected-K        K Web-STOMP tabs (acking): a queue each vs one stream (-connected-k)
//	connected-K-sat    the same above capacity (-saturation-rate): deliveries/s ceiling, broker KiB per tab
//	receipts-Ktabs     K Web-STOMP tabs (acking), delivery receipts off vs on (-receipts-k, -receipts-rate):
//	                   confirmed msg/s, publish → tab p50/p99, publish → receipt at the service p50/p99
//
// See RESULTS.md next to this file for a full run and what bounds each figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/durablews/durablews/internal/brokerversion"
	"github.com/durablews/durablews/internal/testbroker"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o := DefaultOptions()
	fs := flag.NewFlagSet("durablews-bench", flag.ContinueOnError)
	short := fs.Bool("short", false, "smoke run: 1 run, a handful of messages per contender (for CI; numbers are meaningless)")
	fs.StringVar(&o.AMQPURL, "amqp", o.AMQPURL, "AMQP URL of the broker (default $DURABLEWS_AMQP_URL, else the shared node of the RabbitMQ version $DURABLEWS_RABBITMQ names)")
	fs.StringVar(&o.WSURL, "ws", o.WSURL, "Web-STOMP URL of the same broker (default $DURABLEWS_WEB_STOMP_URL, else that node's)")
	fs.StringVar(&o.MgmtURL, "mgmt", o.MgmtURL, "management API of the same broker (default $DURABLEWS_MANAGEMENT_URL, else that node's)")
	private := fs.Bool("private-broker", false, "start a private RabbitMQ node (internal/testbroker: management, Web-STOMP, the open-files limit of this shell) and run the scenarios on it instead of -amqp/-ws/-mgmt")
	runs := fs.Int("runs", 0, "repetitions per contender, median reported (default 3; -short 1)")
	dur := fs.Duration("duration", 0, "measured window per contender and run (default 2s; -short 50ms)")
	warm := fs.Duration("warmup", 0, "publishing before each window opens (default 500ms)")
	minMsgs := fs.Int("min-msgs", 0, "a window stays open until this many messages were confirmed (default 40)")
	e2eDur := fs.Duration("e2e-duration", 0, "measured part of each end-to-end run (default 5s)")
	e2eRuns := fs.Int("e2e-runs", 0, "runs of the 1-tab latency scenario, median reported (default 5; at least -runs)")
	e2eRate := fs.Int("e2e-rate", 0, "offered msg/s in the end-to-end scenarios (default 1000)")
	satRate := fs.Int("saturation-rate", 0, "offered deliveries/s (all tabs) in the connected-K-sat scenarios (default 20000; -short 1000)")
	fanout := fs.String("fanout", "", "comma-separated tab-queue counts for the fan-out scenarios (default 1,10,100,1000)")
	connectedK := fs.String("connected-k", "", "comma-separated tab counts K for the connected-K scenarios (default 10,100,1000; -short 2)")
	streamsK := fs.String("streams-k", "", "comma-separated away-subscriber counts K for the streams scenario (default 1,10,100,1000; -short 1,10)")
	receiptsK := fs.Int("receipts-k", 0, "tabs K of the receipts-Ktabs scenario (default 10; -short 2)")
	receiptsRate := fs.Int("receipts-rate", 0, "offered msg/s of the receipts-Ktabs scenario (default: -e2e-rate deliveries/s over the K tabs)")
	payload := fs.Int("payload", 0, "message body size in bytes (default 256)")
	scen := fs.String("scenarios", "", "regexp: run only matching scenarios (one-by-one-q1, pipelined-q10, e2e-10tabs, fanout-1000, ...)")
	cont := fs.String("contenders", "", "regexp: run only matching contenders (durablews-16x1, wamqp-pool1-1x1, raw-inflight256, ...); each scenario's anchor always runs")
	markdown := fs.Bool("markdown", false, "print the tables as markdown (README-ready)")
	list := fs.Bool("list", false, "list scenarios and contenders and exit")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := fs.String("memprofile", "", "write an allocation profile at the end to this file")
	quietWait := fs.Duration("quiet-wait", o.QuietWait, "before each measurement wait up to this long for other processes to use < -quiet-cores (0 = don't wait; -short sets 0)")
	quietCores := fs.Float64("quiet-cores", o.QuietCores, "CPU cores other processes may use before a measurement starts")
	retries := fs.Int("retries", -1, "repeat a measurement up to this many times when other processes used more than -quiet-cores during it (default 2; -short 0)")
	quiet := fs.Bool("q", false, "no per-measurement progress on stderr")
	var versions versionsFlag
	fs.Var(&versions, "versions", "instead of the scenarios: the publisher ratios and the streams-vs-queues table on each RabbitMQ version's shared node, side by side (-versions alone: "+strings.Join(brokerversion.Names(), ",")+"; or -versions=4.0,4.3)")
	cluster := fs.Bool("cluster", false, "instead of the scenarios: the cost of classic vs quorum tab queues on a private 3-node cluster (with -short: a smoke run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// -versions 4.0,4.3: a bool-like flag leaves its value as the first
	// argument, and flag parsing stops there; take it and parse the rest.
	if versions.set && !versions.explicit && fs.NArg() > 0 && !strings.HasPrefix(fs.Arg(0), "-") {
		versions.value, versions.explicit = fs.Arg(0), true
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "durablews-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *short {
		o.ApplyShort()
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "quiet-wait":
			o.QuietWait = *quietWait
		case "quiet-cores":
			o.QuietCores = *quietCores
		case "retries":
			o.Retries = max(0, *retries)
		}
	})
	if *runs > 0 {
		o.Runs = *runs
	}
	if *dur > 0 {
		o.Window = *dur
	}
	if *warm > 0 {
		o.Warmup = *warm
	}
	if *minMsgs > 0 {
		o.MinMsgs = *minMsgs
	}
	if *e2eDur > 0 {
		o.E2EWindow = *e2eDur
	}
	if *e2eRuns > 0 {
		o.E2ELatencyRuns = *e2eRuns
	}
	if *e2eRate > 0 {
		o.E2ERate = *e2eRate
	}
	if *satRate > 0 {
		o.SaturationRate = *satRate
	}
	if *receiptsK > 0 {
		o.ReceiptsTabs = *receiptsK
	}
	if *receiptsRate > 0 {
		o.ReceiptsRate = *receiptsRate
	}
	if *payload > 0 {
		o.PayloadBytes = *payload
	}
	for _, l := range []struct {
		flag, value string
		to          *[]int
	}{{"fanout", *fanout, &o.FanoutQueues}, {"streams-k", *streamsK, &o.StreamSubscribers}, {"connected-k", *connectedK, &o.ConnectedTabs}} {
		if l.value == "" {
			continue
		}
		counts, err := parseCounts(l.value)
		if err != nil {
			fmt.Fprintf(os.Stderr, "durablews-bench: -%s: %v\n", l.flag, err)
			return 2
		}
		*l.to = counts
	}
	var err error
	if o.Scenarios, err = optRegexp(*scen); err != nil {
		fmt.Fprintf(os.Stderr, "durablews-bench: -scenarios: %v\n", err)
		return 2
	}
	if o.Contenders, err = optRegexp(*cont); err != nil {
		fmt.Fprintf(os.Stderr, "durablews-bench: -contenders: %v\n", err)
		return 2
	}
	if *list {
		for _, s := range scenarios(&o) {
			fmt.Printf("%-16s %s\n", s.name, s.title)
			for _, c := range s.contenders {
				fmt.Printf("    %-20s %s; %s\n", c.id, c.name, c.shape)
			}
			for _, c := range s.e2e {
				fmt.Printf("    %-20s %s; %s\n", c.id, c.name, c.shape)
			}
		}
		return 0
	}
	if !*quiet {
		o.Progress = os.Stderr
	}
	if versions.set {
		names, err := parseVersions(versions.value)
		if err != nil {
			fmt.Fprintf(os.Stderr, "durablews-bench: -versions: %v\n", err)
			return 2
		}
		var conflict []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "amqp", "ws", "mgmt", "private-broker", "contenders", "cluster", "list":
				conflict = append(conflict, "-"+f.Name)
			}
		})
		if len(conflict) > 0 {
			fmt.Fprintf(os.Stderr, "durablews-bench: -versions picks its brokers and contenders itself (-scenarios narrows its scenarios); drop %s\n", strings.Join(conflict, " "))
			return 2
		}
		if *short {
			o.SkipAwayMemory = true // half a minute of memory readings per version
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		rep, err := RunVersions(ctx, o, names)
		rep.Print(os.Stdout, *markdown)
		if err != nil {
			fmt.Fprintf(os.Stderr, "durablews-bench: -versions: %v\n", err)
			return 1
		}
		if len(rep.Errors()) > 0 {
			return 1
		}
		return 0
	}
	if *cluster {
		co := defaultClusterCost(*short)
		co.Progress = o.Progress
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runClusterCost(ctx, co, os.Stdout, *markdown); err != nil {
			fmt.Fprintf(os.Stderr, "durablews-bench: -cluster: %v\n", err)
			return 1
		}
		return 0
	}

	if *memprofile != "" {
		runtime.MemProfileRate = 512 // fine-grained: per-message allocations are small
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "durablews-bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "durablews-bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	// Ctrl-C stops the run and still deletes what it created.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["amqp"] && !set["mgmt"] {
		o.MgmtURL = "" // the -amqp host's management port, not the shared node's
	}
	if *private {
		logw := o.Progress
		if logw == nil {
			logw = io.Discard
		}
		n, err := testbroker.StartNode(testbroker.Options{NamePrefix: "dwsbench", Logf: func(f string, a ...any) { fmt.Fprintf(logw, f+"\n", a...) }})
		if err != nil {
			fmt.Fprintf(os.Stderr, "durablews-bench: -private-broker: %v\n", err)
			return 1
		}
		defer n.Close()
		o.AMQPURL, o.WSURL, o.MgmtURL = n.AMQPURL(), n.WebSTOMPURL(), n.ManagementURL()
	}
	rep, err := Run(ctx, o)
	if rep != nil {
		rep.Print(os.Stdout, *markdown)
	}
	if *memprofile != "" {
		if f, ferr := os.Create(*memprofile); ferr == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
	}
	code := 0
	if err != nil {
		fmt.Fprintf(os.Stderr, "durablews-bench: %v\n", err)
		code = 1
	}
	if rep != nil && len(rep.Errors()) > 0 {
		code = 1
	}
	return code
}

// versionsFlag is -versions: alone (like a bool flag) every version,
// with a value (-versions=4.0,4.3) those.
type versionsFlag struct {
	value         string
	set, explicit bool
}

func (v *versionsFlag) String() string   { return v.value }
func (v *versionsFlag) IsBoolFlag() bool { return true }
func (v *versionsFlag) Set(s string) error {
	v.set, v.value = true, s
	v.explicit = s != "true"
	if s == "false" {
		v.set = false
	}
	return nil
}

func optRegexp(s string) (*regexp.Regexp, error) {
	if s == "" {
		return nil, nil
	}
	return regexp.Compile(s)
}

// parseCounts parses "1,10,100": ascending positive numbers.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("%q: want ascending positive numbers, comma-separated", f)
		}
		out = append(out, n)
	}
	return out, nil
}
