package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/durablews/durablews/internal/brokerversion"
)

// sampleTabQueue is a tab queue name as tabsession and the browser client
// make them, for telling whether a policy pattern reaches tab queues.
const sampleTabQueue = "tab-0123456789abcdef-abcdefghijklmnopqrstuvwxyz-orders"

// checkVersion says which RabbitMQ runs and whether durablews's guarantee
// was proven on that series (README "Supported RabbitMQ versions").
func (d *doctor) checkVersion() {
	if !d.mgmtOK {
		d.skip("broker version")
		return
	}
	v := d.overview.RabbitMQVersion
	series := v
	if parts := strings.SplitN(v, ".", 3); len(parts) >= 2 {
		series = parts[0] + "." + parts[1]
	}
	supported := brokerversion.Names()
	if !slices.Contains(supported, series) {
		d.report(statusWarn, "broker version", fmt.Sprintf("RabbitMQ %s: durablews's guarantee is proven on %s only (each series's tests: README \"Supported RabbitMQ versions\")",
			v, strings.Join(supported, ", ")),
			"run durablews's guarantee suite against this broker before relying on it (make test-matrix shows how), or use a supported series")
		return
	}
	d.report(statusOK, "broker version", fmt.Sprintf("RabbitMQ %s (series %s: supported)", v, series), "")
}

// checkDeliveryLimit warns about a policy or operator policy that sets
// delivery-limit on tab queues: a quorum tab queue then drops a message
// after that many deliveries to a tab whose connection keeps dropping
// before its ack (there is no dead-letter target). durablews declares
// quorum tab queues with x-delivery-limit -1 on 4.x, but a policy's
// non-negative limit wins over that.
func (d *doctor) checkDeliveryLimit() {
	if !d.mgmtOK {
		d.skip("delivery limit")
		return
	}
	type limit struct{ kind, name, pattern, applyTo string }
	var found []string
	check := func(l limit, def map[string]any) {
		v, ok := def["delivery-limit"]
		if !ok {
			return
		}
		if n, isNum := v.(float64); isNum && n < 0 {
			return // -1: no limit
		}
		if !appliesToQueues(l.applyTo) {
			return
		}
		re, err := regexp.Compile(l.pattern)
		if err != nil || !re.MatchString(sampleTabQueue) {
			return
		}
		found = append(found, fmt.Sprintf("%s %q (pattern %q) sets delivery-limit %v", l.kind, l.name, l.pattern, formatValue(v)))
	}
	pols, err := d.mc.ListPoliciesIn(d.o.vhost)
	if err != nil {
		d.report(statusFail, "delivery limit", fmt.Sprintf("cannot list policies: %v", err), "")
		return
	}
	for _, p := range pols {
		check(limit{"policy", p.Name, p.Pattern, p.ApplyTo}, p.Definition)
	}
	ops, err := d.mc.ListOperatorPoliciesIn(d.o.vhost)
	if err != nil {
		d.report(statusFail, "delivery limit", fmt.Sprintf("cannot list operator policies: %v", err), "")
		return
	}
	for _, p := range ops {
		check(limit{"operator policy", p.Name, p.Pattern, p.ApplyTo}, p.Definition)
	}
	if len(found) > 0 {
		d.report(statusWarn, "delivery limit", strings.Join(found, "; ")+
			": a quorum tab queue drops a message after that many deliveries to a tab whose connection keeps dropping before its ack",
			"remove delivery-limit from the policy for ^tab- queues (durablews declares quorum tab queues with x-delivery-limit -1 on RabbitMQ 4.x)")
		return
	}
	d.report(statusOK, "delivery limit", "no policy limits deliveries of tab queues", "")
}

func appliesToQueues(applyTo string) bool {
	switch applyTo {
	case "", "all", "queues", "quorum_queues":
		return true
	}
	return false
}
