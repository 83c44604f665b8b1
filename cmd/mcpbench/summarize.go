package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/alterhost/alterhost/internal/load"
)

// The targets at the MCP level: a Wasm tool's p50 latency at most
// 1.10× and its throughput at least 0.90× the native go-sdk tool's.
const (
	maxP50Ratio  = 1.10
	minRateRatio = 0.90
)

// group is the runs of one label on one tool, protocol and session count.
type group struct {
	tool, protocol, label string
	sessions              int
	runs                  []record
}

func (g *group) median(f func(record) float64) float64 {
	xs := make([]float64, len(g.runs))
	for i, r := range g.runs {
		xs[i] = f(r)
	}
	return load.Median(xs)
}

// summarize is the summarize job: the load records in the files, grouped,
// as a markdown table of medians with ratios to the baseline label.
func summarize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("summarize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	baseline := fs.String("baseline", "native", "the label the others are compared with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("summarize: no files given")
	}
	var recs []record
	for _, name := range fs.Args() {
		rs, err := readRecords(name)
		if err != nil {
			return err
		}
		recs = append(recs, rs...)
	}
	return writeSummary(stdout, recs, *baseline)
}

func readRecords(name string) ([]record, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// writeSummary writes one row per group, in the order the groups first
// appear, each group's medians over its runs and, but for the baseline,
// its ratios to the baseline's medians with the targets met or missed.
func writeSummary(w io.Writer, recs []record, baseline string) error {
	type key struct {
		tool, protocol, label string
		sessions              int
	}
	var order []*group
	groups := map[key]*group{}
	for _, r := range recs {
		k := key{r.Tool, r.Protocol, r.Label, r.Sessions}
		g := groups[k]
		if g == nil {
			g = &group{tool: r.Tool, protocol: r.Protocol, label: r.Label, sessions: r.Sessions}
			groups[k] = g
			order = append(order, g)
		}
		g.runs = append(g.runs, r)
	}
	// Rows of one tool, protocol and session count stay together, the
	// baseline first.
	var rows []*group
	done := map[*group]bool{}
	for _, g := range order {
		if done[g] {
			continue
		}
		var set []*group
		for _, h := range order {
			if !done[h] && h.tool == g.tool && h.protocol == g.protocol && h.sessions == g.sessions {
				set = append(set, h)
				done[h] = true
			}
		}
		slices.SortStableFunc(set, func(a, b *group) int {
			return boolInt(b.label == baseline) - boolInt(a.label == baseline)
		})
		rows = append(rows, set...)
	}

	fmt.Fprintln(w, "| tool | protocol | sessions | server | runs | p50 | p99 | calls/s | server CPU/call | CPU use server / load | p50 ratio | calls/s ratio | server CPU/call ratio | targets |")
	fmt.Fprintln(w, "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, g := range rows {
		p50 := g.median(func(r record) float64 { return r.P50us })
		rate := g.median(func(r record) float64 { return r.Rate })
		cpu := "–"
		c := g.median(func(r record) float64 { return r.ServerCPUus })
		if c > 0 {
			cpu = fmtMicros(c)
		}
		ratios := "| – | – | – | baseline"
		if g.label != baseline {
			ratios = "| – | – | – | no baseline"
			if b := groups[key{g.tool, g.protocol, baseline, g.sessions}]; b != nil {
				pr := p50 / b.median(func(r record) float64 { return r.P50us })
				rr := rate / b.median(func(r record) float64 { return r.Rate })
				cr := "–"
				if bc := b.median(func(r record) float64 { return r.ServerCPUus }); bc > 0 && c > 0 {
					cr = fmt.Sprintf("%.2f×", c/bc)
				}
				ratios = fmt.Sprintf("| %.2f× | %.2f× | %s | p50 %s, calls/s %s", pr, rr, cr,
					verdict(pr <= maxP50Ratio), verdict(rr >= minRateRatio))
			}
		}
		use := fmt.Sprintf("%.0f %% / %.0f %%", 100*g.median(func(r record) float64 { return r.ServerUtil }),
			100*g.median(func(r record) float64 { return r.LoadUtil }))
		fmt.Fprintf(w, "| %s | %s | %d | %s | %d | %s | %s | %.0f | %s | %s %s |\n",
			g.tool, g.protocol, g.sessions, g.label, len(g.runs), fmtMicros(p50),
			fmtMicros(g.median(func(r record) float64 { return r.P99us })), rate, cpu, use, ratios)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}

// fmtMicros writes a time in µs with the precision a noisy machine
// warrants.
func fmtMicros(us float64) string {
	switch {
	case us >= 10000:
		return fmt.Sprintf("%.1f ms", us/1000)
	case us >= 100:
		return fmt.Sprintf("%.0f µs", us)
	}
	return fmt.Sprintf("%.1f µs", us)
}
