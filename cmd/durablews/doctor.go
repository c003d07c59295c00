package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3"
	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

const doctorAbout = `Checks and explains, with the fix for each problem: the broker answers on AMQP, the management
API answers, the plugins rabbitmq_management, rabbitmq_stomp and rabbitmq_web_stomp run on every
node, Web-STOMP accepts a WebSocket + STOMP CONNECT on -web-stomp-url, no resource alarm blocks
publishers, the exchanges exist and are durable, the tab-queue policy is as setup would apply it,
and the tab queues (count, without consumers, oldest idle, not governed by the policy).
Exit code 1 when a check fails (with -strict also on a warning).`

// Required plugins. rabbitmq_web_stomp needs rabbitmq_stomp; the
// management API is how setup and doctor talk to the broker.
var requiredPlugins = []string{"rabbitmq_management", "rabbitmq_stomp", "rabbitmq_web_stomp"}

type status int

const (
	statusOK status = iota
	statusInfo
	statusWarn
	statusFail
	statusSkip
)

func (s status) String() string {
	return [...]string{"ok", "info", "WARN", "FAIL", "skip"}[s]
}

// finding is the outcome of one check.
type finding struct {
	status status
	check  string
	detail string
	fix    string
}

type doctor struct {
	ctx      context.Context
	o        *options
	out      io.Writer
	logger   watermill.LoggerAdapter
	findings []finding

	mc         *rabbithole.Client
	mgmtOK     bool
	overview   *rabbithole.Overview
	nodes      []rabbithole.NodeInfo // from checkPlugins
	wsListener []int                 // Web-STOMP ports the broker listens on, from the overview
}

func runDoctor(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
	fs, o := newFlagSet("doctor", "", doctorAbout, stderr)
	strict := fs.Bool("strict", false, "exit 1 on warnings too")
	if err := parse(fs, o, args, env, stderr); err != nil {
		return usageError(err, stderr)
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("doctor takes no arguments, got %q", fs.Args()), stderr)
	}
	d := &doctor{ctx: ctx, o: o, out: stdout, logger: o.logger}
	fmt.Fprintf(stdout, "doctor: broker %s, management %s, Web-STOMP %s, vhost %s\n",
		strings.Join(redactAll(o.urls), ", "), o.mgmt, strings.Join(o.wsList, ", "), o.vhost)
	d.checkAMQP()
	d.checkManagement()
	d.checkVersion()
	d.checkPlugins()
	d.checkCluster()
	d.checkWebSTOMP()
	d.checkAlarms()
	d.checkExchanges()
	d.checkPolicy()
	d.checkDeliveryLimit()
	d.checkTabQueues()

	fails, warns := 0, 0
	for _, f := range d.findings {
		switch f.status {
		case statusFail:
			fails++
		case statusWarn:
			warns++
		}
	}
	switch {
	case fails > 0:
		fmt.Fprintf(stdout, "doctor: %d problem(s), %d warning(s): fix the FAIL lines above, then run doctor again\n", fails, warns)
		return exitFail
	case warns > 0:
		fmt.Fprintf(stdout, "doctor: no problems, %d warning(s)\n", warns)
		if *strict {
			return exitFail
		}
		return exitOK
	default:
		fmt.Fprintln(stdout, "doctor: everything looks fine")
		return exitOK
	}
}

func redactAll(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = amqpconn.RedactURL(u)
	}
	return out
}

func (d *doctor) report(st status, check, detail, fix string) {
	f := finding{status: st, check: check, detail: detail, fix: fix}
	d.findings = append(d.findings, f)
	fmt.Fprintf(d.out, "%-4s  %-17s %s\n", f.status, f.check, f.detail)
	if fix != "" {
		fmt.Fprintf(d.out, "      %-17s fix: %s\n", "", fix)
	}
}

func (d *doctor) checkAMQP() {
	for _, u := range d.o.urls {
		cfg := amqp.Config{Dial: amqp.DefaultDial(d.o.timeout), Heartbeat: 10 * time.Second,
			Properties: amqp.Table{"connection_name": "durablews doctor"}}
		conn, err := amqp.DialConfig(u, cfg)
		if err != nil {
			d.report(statusFail, "broker", fmt.Sprintf("%s: %v", amqpconn.RedactURL(u), err), amqpFix(err))
			continue
		}
		version, _ := conn.Properties["version"].(string)
		product, _ := conn.Properties["product"].(string)
		d.logger.Info("Connected to broker", watermill.LogFields{"url": amqpconn.RedactURL(u), "version": version})
		_ = conn.Close()
		d.report(statusOK, "broker", fmt.Sprintf("%s answered (%s %s)", amqpconn.RedactURL(u), product, version), "")
	}
}

func amqpFix(err error) string {
	var ae *amqp.Error
	msg := err.Error()
	switch {
	case errors.As(err, &ae) && ae.Code == amqp.AccessRefused:
		return "the broker refused the user or password of -amqp-url (DURABLEWS_AMQP_URL); guest only works from localhost unless loopback_users is changed"
	case errors.As(err, &ae) && ae.Code == amqp.NotAllowed:
		return "the user may not open this vhost: `rabbitmqctl set_permissions -p <vhost> <user> '.*' '.*' '.*'` or fix the vhost in -amqp-url"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "no such host"):
		return "start RabbitMQ (`make broker` here, or `systemctl start rabbitmq-server`) or fix host and port in -amqp-url (DURABLEWS_AMQP_URL)"
	default:
		return "check -amqp-url (DURABLEWS_AMQP_URL) and the broker log"
	}
}

func (d *doctor) checkManagement() {
	mc, err := newManagement(d.o)
	if err == nil {
		d.mc = mc
		d.overview, err = mc.Overview()
	}
	if err != nil {
		d.report(statusFail, "management API", fmt.Sprintf("%s: %v", d.o.mgmt, err), managementFix(err))
		return
	}
	d.mgmtOK = true
	d.logger.Info("Connected to management API", watermill.LogFields{"url": d.o.mgmt, "node": d.overview.Node, "rabbitmq": d.overview.RabbitMQVersion})
	for _, l := range d.overview.Listeners {
		if l.Protocol == "http/web-stomp" || l.Protocol == "https/web-stomp" {
			d.wsListener = append(d.wsListener, int(l.Port))
		}
	}
	d.report(statusOK, "management API", fmt.Sprintf("%s answered as %s (RabbitMQ %s, Erlang %s, node %s)",
		d.o.mgmt, d.o.mgmtUser, d.overview.RabbitMQVersion, d.overview.ErlangVersion, d.overview.Node), "")
}

func (d *doctor) skip(check string) {
	d.report(statusSkip, check, "not checked: needs the management API", "")
}

// pluginListeners are the overview's listener protocols that show a
// plugin is running: the listeners are live, while a node's application
// list comes from statistics that are missing or partial for the first
// seconds after a (re)start.
var pluginListeners = map[string][]string{
	"rabbitmq_management": {"http", "https"},
	"rabbitmq_stomp":      {"stomp", "stomp/ssl"},
	"rabbitmq_web_stomp":  {"http/web-stomp", "https/web-stomp"},
}

func (d *doctor) checkPlugins() {
	if !d.mgmtOK {
		d.skip("plugins")
		return
	}
	nodes, err := d.mc.ListNodes()
	if err != nil {
		d.report(statusFail, "plugins", fmt.Sprintf("cannot list nodes: %v", err), "the management user needs the monitoring or administrator tag to read nodes")
		return
	}
	d.nodes = nodes
	listening := map[string]map[string]bool{} // node -> protocol
	for _, l := range d.overview.Listeners {
		if listening[l.Node] == nil {
			listening[l.Node] = map[string]bool{}
		}
		listening[l.Node][l.Protocol] = true
	}
	var problems []string
	missingAll := map[string]bool{}
	for _, n := range nodes {
		if !n.IsRunning {
			problems = append(problems, n.Name+" is not running")
			continue
		}
		running := map[string]bool{}
		for _, app := range n.ErlangApps {
			running[app.Name] = true
		}
		var missing []string
		for _, p := range requiredPlugins {
			ok := running[p]
			for _, proto := range pluginListeners[p] {
				ok = ok || listening[n.Name][proto]
			}
			if !ok {
				missing = append(missing, p)
				missingAll[p] = true
			}
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s lacks %s (no listener, not among its running applications)", n.Name, strings.Join(missing, ", ")))
		}
	}
	if len(problems) > 0 {
		var enable []string
		for _, p := range requiredPlugins {
			if missingAll[p] {
				enable = append(enable, p)
			}
		}
		fix := "start the stopped node(s)"
		if len(enable) > 0 {
			fix = fmt.Sprintf("`rabbitmq-plugins enable %s` on every node (or add them to enabled_plugins); "+
				"Web-STOMP then listens on web_stomp.tcp.port (default 15674)", strings.Join(enable, " "))
		}
		d.report(statusFail, "plugins", strings.Join(problems, "; "), fix)
		return
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	d.report(statusOK, "plugins", fmt.Sprintf("%s running on %s", strings.Join(requiredPlugins, ", "), strings.Join(names, ", ")), "")
}

// checkCluster reports the cluster's members as the management API sees
// them: every node running, no network partition, and browsers told about
// more than one Web-STOMP endpoint when there is more than one node.
func (d *doctor) checkCluster() {
	if d.nodes == nil {
		if !d.mgmtOK {
			d.skip("cluster")
		}
		return
	}
	var names, down, partitioned []string
	for _, n := range d.nodes {
		names = append(names, n.Name)
		if !n.IsRunning {
			down = append(down, n.Name)
		}
		if len(n.Partitions) > 0 {
			partitioned = append(partitioned, fmt.Sprintf("%s cannot reach %s", n.Name, strings.Join(n.Partitions, ", ")))
		}
	}
	sort.Strings(names)
	switch {
	case len(partitioned) > 0:
		d.report(statusFail, "cluster", "network partition: "+strings.Join(partitioned, "; "),
			"the nodes disagree about the cluster: restart the nodes of the minority side (`rabbitmqctl stop_app && rabbitmqctl start_app`), see https://www.rabbitmq.com/partitions.html")
	case len(down) > 0:
		d.report(statusFail, "cluster", fmt.Sprintf("%d of %d nodes down: %s. Classic tab queues on them are unavailable, and a message routed only to them is confirmed and dropped (returned when Config.Mandatory is set)",
			len(down), len(names), strings.Join(down, ", ")),
			"start the stopped node(s); they rejoin the cluster by themselves")
	case len(names) == 1:
		d.report(statusInfo, "cluster", "single node "+names[0], "")
	default:
		d.report(statusOK, "cluster", fmt.Sprintf("%d nodes running, no partitions: %s", len(names), strings.Join(names, ", ")), "")
		if len(d.o.wsList) == 1 {
			d.report(statusInfo, "cluster", fmt.Sprintf("browsers are told about one Web-STOMP endpoint (%s) for %d nodes", d.o.ws, len(names)),
				"give every node's Web-STOMP URL (-web-stomp-url, comma-separated) or put a load balancer in front of them, so a tab can reconnect elsewhere when its node dies")
		}
	}
}

// nodeDown reports whether the management API lists a node that is not
// running.
func (d *doctor) nodeDown() bool {
	for _, n := range d.nodes {
		if !n.IsRunning {
			return true
		}
	}
	return false
}

// checkWebSTOMP does what a browser does on every Web-STOMP URL (one per
// node of a cluster): WebSocket upgrade with the v12.stomp subprotocol,
// then STOMP CONNECT with the AMQP URL's user on its vhost.
func (d *doctor) checkWebSTOMP() {
	for _, u := range d.o.wsList {
		d.checkWebSTOMPAt(u)
	}
}

func (d *doctor) checkWebSTOMPAt(wsURL string) {
	ctx, cancel := context.WithTimeout(d.ctx, d.o.timeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
	if err != nil {
		d.report(statusFail, "web-stomp", fmt.Sprintf("%s: WebSocket upgrade failed: %v", wsURL, err), d.webSTOMPFix(resp, err))
		return
	}
	defer ws.CloseNow()
	if ws.Subprotocol() != "v12.stomp" {
		d.report(statusFail, "web-stomp", fmt.Sprintf("%s: upgraded, but the server did not accept subprotocol v12.stomp (got %q)", wsURL, ws.Subprotocol()),
			"-web-stomp-url does not point at RabbitMQ's Web-STOMP (web_stomp.ws_path, default /ws), or a proxy drops Sec-WebSocket-Protocol")
		return
	}
	life, stop := context.WithCancel(context.Background())
	defer stop()
	nc := websocket.NetConn(life, ws, websocket.MessageText)
	conn, err := stomp.ConnectWithContext(ctx, nc,
		stomp.ConnOpt.Host(d.o.vhost), // go-stomp's default host "default" is refused
		stomp.ConnOpt.Login(d.o.uri.Username, d.o.uri.Password),
		stomp.ConnOpt.HeartBeat(0, 0),
		stomp.ConnOpt.AcceptVersion(stomp.V12),
		stomp.ConnOpt.DisconnectReceiptTimeout(d.o.timeout),
		stomp.ConnOpt.Logger(stompLogger{d.logger}),
	)
	if err != nil {
		d.report(statusFail, "web-stomp", fmt.Sprintf("%s: WebSocket ok, STOMP CONNECT failed: %v", wsURL, err),
			"STOMP logs in with the user and vhost of -amqp-url: check that user's password and permissions on the vhost; the broker log names the reason")
		return
	}
	server, version := conn.Server(), conn.Version()
	_ = conn.Disconnect()
	d.logger.Info("Connected to Web-STOMP", watermill.LogFields{"url": wsURL, "server": server})
	d.report(statusOK, "web-stomp", fmt.Sprintf("%s: WebSocket + STOMP CONNECT ok (%s, STOMP %s)", wsURL, server, version), "")
}

func (d *doctor) webSTOMPFix(resp *http.Response, err error) string {
	if resp == nil && d.nodeDown() {
		return "a cluster node is down (see the cluster line): if this URL is that node's, start the node; otherwise " +
			"check host and port in -web-stomp-url (DURABLEWS_WEB_STOMP_URL)"
	}
	listening := ""
	if len(d.wsListener) > 0 {
		ports := make([]string, len(d.wsListener))
		for i, p := range d.wsListener {
			ports[i] = fmt.Sprint(p)
		}
		listening = fmt.Sprintf(" (the broker reports Web-STOMP listening on port %s)", strings.Join(ports, ", "))
	} else if d.mgmtOK {
		listening = " (the broker reports no Web-STOMP listener)"
	}
	switch {
	case resp != nil && resp.StatusCode == http.StatusNotFound:
		return "the port answers HTTP but not on this path: use the path of web_stomp.ws_path (default /ws) in -web-stomp-url"
	case resp != nil:
		return fmt.Sprintf("the server answered HTTP %d instead of upgrading; point -web-stomp-url at RabbitMQ's Web-STOMP, or let the proxy in between pass WebSocket upgrades", resp.StatusCode)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) || strings.Contains(err.Error(), "connection refused") {
		return "enable Web-STOMP: `rabbitmq-plugins enable rabbitmq_web_stomp`, and check host and port in -web-stomp-url (DURABLEWS_WEB_STOMP_URL; web_stomp.tcp.port, default 15674)" + listening
	}
	return "check -web-stomp-url (DURABLEWS_WEB_STOMP_URL) and that rabbitmq_web_stomp is enabled" + listening
}

// stompLogger passes go-stomp's log lines to the Watermill logger.
type stompLogger struct{ l watermill.LoggerAdapter }

func (s stompLogger) Debugf(f string, v ...any)   { s.l.Trace("stomp: "+fmt.Sprintf(f, v...), nil) }
func (s stompLogger) Infof(f string, v ...any)    { s.l.Debug("stomp: "+fmt.Sprintf(f, v...), nil) }
func (s stompLogger) Warningf(f string, v ...any) { s.l.Info("stomp: "+fmt.Sprintf(f, v...), nil) }
func (s stompLogger) Errorf(f string, v ...any)   { s.l.Error("stomp", fmt.Errorf(f, v...), nil) }
func (s stompLogger) Debug(m string)              { s.l.Trace("stomp: "+m, nil) }
func (s stompLogger) Info(m string)               { s.l.Debug("stomp: "+m, nil) }
func (s stompLogger) Warning(m string)            { s.l.Info("stomp: "+m, nil) }
func (s stompLogger) Error(m string)              { s.l.Error("stomp", errors.New(m), nil) }

func (d *doctor) checkAlarms() {
	if !d.mgmtOK {
		d.skip("resource alarms")
		return
	}
	st, err := d.mc.HealthCheckAlarms()
	switch {
	case err != nil:
		d.report(statusFail, "resource alarms", fmt.Sprintf("cannot check: %v", err), "")
	case st.Status == "ok":
		d.report(statusOK, "resource alarms", "none: publishers are not blocked", "")
	default:
		var alarms []string
		for _, a := range st.Alarms {
			alarms = append(alarms, a.Resource+" on "+a.Node)
		}
		d.report(statusFail, "resource alarms", fmt.Sprintf("%s alarm in effect: the broker blocks every publisher (Publish waits, then fails with ErrConfirmTimeout)", strings.Join(alarms, ", ")),
			"free memory or disk on that node, or raise vm_memory_high_watermark / disk_free_limit; `rabbitmq-diagnostics alarms` shows them")
	}
}

func (d *doctor) checkExchanges() {
	if !d.mgmtOK {
		d.skip("exchanges")
		return
	}
	for _, ex := range d.o.exchangeList {
		check := "exchange"
		cur, err := d.mc.GetExchange(d.o.vhost, ex.Name)
		switch {
		case isNotFound(err):
			d.report(statusFail, check, fmt.Sprintf("%q does not exist in vhost %s: publishes fail and browser SUBSCRIBEs to it are refused", ex.Name, d.o.vhost),
				"`durablews setup` (with the same -exchanges) declares it")
		case err != nil:
			d.report(statusFail, check, fmt.Sprintf("%q: cannot read it: %v", ex.Name, err), "")
		case cur.Type != ex.Kind:
			d.report(statusFail, check, fmt.Sprintf("%q is %s, configured as %s", ex.Name, describeExchange(cur), ex.Kind),
				"pass its real kind in -exchanges, or delete and redeclare it (`durablews setup`) when no publisher uses it")
		case !cur.Durable || cur.AutoDelete || cur.Internal:
			d.report(statusFail, check, fmt.Sprintf("%q is %s: a broker restart (or the last unbind) loses it and every binding of the tab queues", ex.Name, describeExchange(cur)),
				"delete it when no publisher uses it and run `durablews setup` to declare it durable")
		default:
			d.report(statusOK, check, fmt.Sprintf("%q exists (%s)", ex.Name, describeExchange(cur)), "")
		}
	}
}

func (d *doctor) checkPolicy() {
	if !d.mgmtOK {
		d.skip("tab-queue policy")
		return
	}
	want := d.o.wantPolicy()
	cur, err := d.mc.GetPolicy(d.o.vhost, want.Name)
	switch {
	case isNotFound(err):
		d.report(statusFail, "tab-queue policy", fmt.Sprintf("policy %q is missing: abandoned tab queues never expire unless the client set x-expires, and grow without bound", want.Name),
			"`durablews setup` applies it")
	case err != nil:
		d.report(statusFail, "tab-queue policy", fmt.Sprintf("cannot read policy %q: %v", want.Name, err), "")
	default:
		if diff := policyDiff(cur, want); len(diff) > 0 {
			d.report(statusFail, "tab-queue policy", fmt.Sprintf("policy %q differs from the configured one: %s", want.Name, strings.Join(diff, "; ")),
				"`durablews setup` updates it (or pass the -tab-queue-* flags the policy was made with)")
			return
		}
		d.report(statusOK, "tab-queue policy", fmt.Sprintf("%q applies %s to queues matching %q", want.Name, formatDef(want.Definition), want.Pattern), "")
	}
}

func (d *doctor) checkTabQueues() {
	if !d.mgmtOK {
		d.skip("tab queues")
		return
	}
	qs, err := listTabQueues(d.ctx, d.mc, d.o.timeout, d.o.vhost, d.o.tabPattern)
	if err != nil {
		d.report(statusFail, "tab queues", fmt.Sprintf("cannot list queues matching %q: %v", d.o.tabPattern, err), "")
		return
	}
	var idle []tabQueue
	var unpoliced, autoDelete, transient []string
	for _, q := range qs {
		if q.Consumers == 0 {
			idle = append(idle, q)
		}
		if q.policy() != d.o.policyName {
			unpoliced = append(unpoliced, q.Name)
		}
		if q.AutoDelete {
			autoDelete = append(autoDelete, q.Name)
		}
		if !q.Durable {
			transient = append(transient, q.Name)
		}
	}
	detail := fmt.Sprintf("%d matching %q, %d without consumers", len(qs), d.o.tabPattern, len(idle))
	if oldest, ok := oldestIdle(idle); ok {
		since := oldest.idleSince()
		detail += fmt.Sprintf("; oldest idle: %s, idle %s (since %s), %d message(s)",
			oldest.Name, time.Since(since).Round(time.Second), since.UTC().Format(time.RFC3339), oldest.Messages)
		if exp, ok := d.expiresOf(oldest); ok {
			detail += fmt.Sprintf(", expires after %s unused", exp)
		}
	}
	d.report(statusInfo, "tab queues", detail, "")
	if len(unpoliced) > 0 {
		d.report(statusWarn, "tab queues", fmt.Sprintf("%d not governed by policy %q (e.g. %s): another policy with a higher priority matches them, or the policy is missing",
			len(unpoliced), d.o.policyName, examples(unpoliced)),
			"`durablews setup`; if another policy wins, raise -policy-priority above it or merge the keys into it")
	}
	if len(autoDelete) > 0 {
		d.report(statusWarn, "tab queues", fmt.Sprintf("%d are auto-delete (e.g. %s): they vanish with their tab's connection, with the messages meant for it",
			len(autoDelete), examples(autoDelete)),
			"the browser must SUBSCRIBE with durable:true and auto-delete:false (the durablews web client does)")
	}
	if len(transient) > 0 {
		d.report(statusWarn, "tab queues", fmt.Sprintf("%d are not durable (e.g. %s): a broker restart loses them and their messages", len(transient), examples(transient)),
			"the browser must SUBSCRIBE with durable:true (the durablews web client does)")
	}
}

func oldestIdle(qs []tabQueue) (tabQueue, bool) {
	var best tabQueue
	found := false
	for _, q := range qs {
		t := q.idleSince()
		if t.IsZero() {
			continue
		}
		if !found || t.Before(best.idleSince()) {
			best, found = q, true
		}
	}
	return best, found
}

// expiresOf is the effective expiry of q: the smaller of its x-expires
// argument and the policy's expires (when the policy applies to it).
func (d *doctor) expiresOf(q tabQueue) (time.Duration, bool) {
	var ms []float64
	if v, ok := q.Arguments["x-expires"].(float64); ok {
		ms = append(ms, v)
	}
	if q.policy() == d.o.policyName && d.o.tabExpires > 0 {
		ms = append(ms, float64(d.o.tabExpires.Milliseconds()))
	}
	if len(ms) == 0 {
		return 0, false
	}
	return time.Duration(slices.Min(ms)) * time.Millisecond, true
}

func examples(names []string) string {
	sort.Strings(names)
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + ", ..."
	}
	return strings.Join(names, ", ")
}
