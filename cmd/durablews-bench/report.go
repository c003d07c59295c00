package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// table is a list of rows printed either aligned (text) or as a
// GitHub-flavoured markdown table.
type table struct {
	head []string
	rows [][]string
	// numFrom is the first column right-aligned in markdown (0: the third).
	numFrom int
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer, markdown bool) {
	if markdown {
		fmt.Fprintf(w, "| %s |\n", strings.Join(t.head, " | "))
		seps := make([]string, len(t.head))
		numFrom := t.numFrom
		if numFrom == 0 {
			numFrom = 2
		}
		for i := range seps {
			seps[i] = "---"
			if i >= numFrom {
				seps[i] = "---:"
			}
		}
		fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
		for _, r := range t.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
		}
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.head, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

func num(v float64) string {
	switch {
	case v >= 100:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func groupThousands(s string) string {
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

func cores(u cpuUse) (client, broker, other string) {
	client = fmt.Sprintf("%.2f", u.Client)
	broker, other = "-", fmt.Sprintf("%.2f", u.Other)
	if u.BrokerKnown {
		broker = fmt.Sprintf("%.2f", u.Broker)
	}
	return
}

// Print writes the report: throughput and fan-out table, end-to-end
// table, then the ratio lines.
func (r *Report) Print(w io.Writer, markdown bool) {
	m := r.Machine
	if markdown {
		fmt.Fprintf(w, "Machine: %d CPUs (%s), %s RAM, Linux %s; broker %s on %s; %s.\n\n", m.CPUs, m.CPUModel, m.Memory, m.Kernel, m.Broker, m.Erlang, m.GoVersion)
		fmt.Fprintf(w, "Run: %s, %d run(s) per contender (median shown, min–max in brackets), warm-up %v, window ≥ %v and ≥ %d msgs; %d-byte persistent messages, durable topic exchange, durable classic queues; %s.\n\n",
			r.Started.Format("2006-01-02 15:04 MST"), r.Options.Runs, r.Options.Warmup, r.Options.Window, r.Options.MinMsgs, r.Options.PayloadBytes, r.Finished.Sub(r.Started).Round(time.Second))
		if r.Options.E2ELatencyRuns > r.Options.Runs {
			fmt.Fprintf(w, "The 1-tab end-to-end latency scenario runs %d times per contender (median of the per-run p50/p99): one run's p99 is its 50 slowest messages and moves with a single scheduling stall of the machine.\n\n", r.Options.E2ELatencyRuns)
		}
		if r.Options.Retries > 0 {
			fmt.Fprintf(w, "A measurement during which other processes used more than %.2f cores is repeated (up to %d times).\n\n", r.Options.QuietCores, r.Options.Retries)
		}
		if r.QuietWaited > 0 {
			fmt.Fprintf(w, "The run waited %v in total for other processes on the machine to calm down before measurements (the \"other CPU\" column shows what remained).\n\n", r.QuietWaited.Round(time.Second))
		}
	} else {
		fmt.Fprintf(w, "\nmachine: %s, Linux %s, %s\n", m.Summary(), m.Kernel, m.Erlang)
		fmt.Fprintf(w, "run: %d run(s) per contender (median; min-max), warm-up %v, window >= %v and >= %d msgs, %d-byte persistent messages; took %s\n\n",
			r.Options.Runs, r.Options.Warmup, r.Options.Window, r.Options.MinMsgs, r.Options.PayloadBytes, r.Finished.Sub(r.Started).Round(time.Second))
	}

	tp := &table{head: []string{"scenario", "contender", "shape", "msg/s", "min–max", "× anchor", "allocs/msg", "B/msg", "client µs/msg", "client CPU", "broker CPU", "other CPU"}}
	e2e := &table{head: []string{"scenario", "contender", "shape", "offered msg/s", "delivered msg/s (all tabs)", "p50 ms", "p99 ms", "p99 × anchor", "backlog", "broker KiB/tab", "client CPU", "broker CPU", "other CPU"}}
	rc := &table{head: []string{"scenario", "contender", "offered msg/s", "confirmed msg/s", "× anchor", "delivered msg/s (all tabs)", "publish → tab p50 ms", "p99 ms", "p99 × anchor", "publish → receipt at the service p50 ms", "p99 ms", "receipts missing", "backlog", "client CPU", "broker CPU", "other CPU"}}
	for _, s := range r.Scenarios {
		anchor := s.contender(s.Anchor)
		var as sample
		var aok bool
		if anchor != nil {
			as, aok = anchor.Median()
		}
		for _, c := range s.Contenders {
			med, ok := c.Median()
			name := c.Name
			if c.ID == s.Anchor {
				name += " (anchor)"
			}
			if markdown && strings.HasPrefix(c.ID, "durablews") {
				name = "**" + name + "**"
			}
			if !ok {
				errText := "no result"
				if len(c.Errs) > 0 {
					errText = "ERROR: " + c.Errs[0].Error()
				}
				switch s.Kind {
				case kindReceipts:
					rc.add(s.Name, name, errText, "", "", "", "", "", "", "", "", "", "", "", "", "")
				case kindE2E:
					e2e.add(s.Name, name, c.Shape, errText, "", "", "", "", "", "", "", "", "")
				default:
					tp.add(s.Name, name, c.Shape, errText, "", "", "", "", "", "", "", "")
				}
				continue
			}
			cl, br, ot := cores(med.CPU)
			switch s.Kind {
			case kindReceipts:
				rate, p99 := "-", "-"
				if aok && as.Rate > 0 {
					rate = fmt.Sprintf("%.2f", med.Rate/as.Rate)
				}
				if aok && as.P99 > 0 {
					p99 = fmt.Sprintf("%.2f", float64(med.P99)/float64(as.P99))
				}
				rp50, rp99, missing := "-", "-", "-"
				if med.RP50 > 0 {
					rp50, rp99, missing = fmt.Sprintf("%.2f", ms(med.RP50)), fmt.Sprintf("%.2f", ms(med.RP99)), fmt.Sprint(med.ReceiptsMissing)
				}
				rc.add(s.Name, name, num(med.Offered), num(med.Rate), rate, num(med.Delivered), fmt.Sprintf("%.2f", ms(med.P50)), fmt.Sprintf("%.2f", ms(med.P99)), p99, rp50, rp99, missing, fmt.Sprint(med.Backlog), cl, br, ot)
			case kindE2E:
				ratio := "-"
				if aok && as.P99 > 0 {
					ratio = fmt.Sprintf("%.2f", float64(med.P99)/float64(as.P99))
				}
				e2e.add(s.Name, name, c.Shape, num(med.Offered), num(med.Rate), fmt.Sprintf("%.2f", ms(med.P50)), fmt.Sprintf("%.2f", ms(med.P99)), ratio, fmt.Sprint(med.Backlog), tabKiB(med.TabKiB), cl, br, ot)
			default:
				lo, hi := c.RangeRate()
				ratio := "-"
				if aok && as.Rate > 0 {
					ratio = fmt.Sprintf("%.2f", med.Rate/as.Rate)
				}
				rate := num(med.Rate)
				if markdown && strings.HasPrefix(c.ID, "durablews") {
					rate = "**" + rate + "**"
				}
				us := "-"
				if med.Rate > 0 {
					us = fmt.Sprintf("%.1f", med.CPU.Client*1e6/med.Rate)
				}
				tp.add(s.Name, name, c.Shape, rate, num(lo)+"–"+num(hi), ratio, fmt.Sprintf("%.1f", med.Allocs), num(med.Bytes), us, cl, br, ot)
			}
		}
	}
	if len(tp.rows) > 0 {
		if markdown {
			fmt.Fprintln(w, "### Confirmed throughput (one durable topic exchange; the scenario's queues all bound)")
			fmt.Fprintln(w)
		}
		tp.print(w, markdown)
		fmt.Fprintln(w)
	}
	if len(e2e.rows) > 0 {
		if markdown {
			fmt.Fprintln(w, "### End to end: publish → RabbitMQ Web-STOMP → Go tab client (acking each message)")
			fmt.Fprintln(w)
		}
		e2e.print(w, markdown)
		fmt.Fprintln(w)
	}
	if len(rc.rows) > 0 {
		if markdown {
			fmt.Fprintln(w, "### Delivery receipts: publish → Web-STOMP tabs (acking), receipts off vs on (tab → receipts exchange → receipts.Subscriber + Tracker)")
			fmt.Fprintln(w)
		}
		rc.print(w, markdown)
		fmt.Fprintln(w)
	}
	if markdown {
		fmt.Fprintln(w, "### Ratios (same run, medians)")
		fmt.Fprintln(w)
	}
	for _, s := range r.Scenarios {
		for _, n := range s.Notes {
			if markdown {
				n = "- " + n
			}
			fmt.Fprintln(w, n)
		}
		for _, rt := range s.Ratios {
			line := rt.String()
			if markdown {
				verdict := ""
				if rt.Target != 0 && !rt.Missing {
					verdict = " **MISS**"
					if rt.Pass {
						verdict = " **PASS**"
					}
					line = strings.TrimSuffix(strings.TrimSuffix(line, " PASS"), " MISS")
				}
				line = "- `" + line + "`" + verdict
			}
			fmt.Fprintln(w, line)
		}
	}
	if errs := r.Errors(); len(errs) > 0 {
		fmt.Fprintf(w, "\n%d error(s):\n", len(errs))
		for _, e := range errs {
			fmt.Fprintf(w, "  %v\n", e)
		}
	}
}

func (rt Ratio) String() string {
	if rt.Missing {
		return fmt.Sprintf("ratio: %s: %s: MISSING (a contender has no result)", rt.Scenario, rt.Label)
	}
	var what, target string
	switch rt.Metric {
	case "p99":
		what = fmt.Sprintf("p99 %.2f ms / %.2f ms = %.2f", rt.Num/1e6, rt.Den/1e6, rt.Value)
		if rt.Target != 0 {
			target = fmt.Sprintf("target ≤ %.2f", rt.Target)
		}
	default:
		what = fmt.Sprintf("%s / %s msg/s = %.2f", num(rt.Num), num(rt.Den), rt.Value)
		if rt.Queues > 1 {
			what += fmt.Sprintf("; durablews writes %s queue entries/s", num(rt.Num*float64(rt.Queues)))
		}
		if rt.Target != 0 {
			target = fmt.Sprintf("target ≥ %.2f", rt.Target)
		}
	}
	if rt.Target == 0 {
		return fmt.Sprintf("ratio: %s: %s: %s (no target; for information)", rt.Scenario, rt.Label, what)
	}
	verdict := "MISS"
	if rt.Pass {
		verdict = "PASS"
	}
	return fmt.Sprintf("ratio: %s: %s: %s (%s) %s", rt.Scenario, rt.Label, what, target, verdict)
}

// tabKiB is the broker-memory-per-tab cell ("-" where not measured).
func tabKiB(k float64) string {
	if k == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", k)
}
