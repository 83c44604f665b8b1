package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"time"

	"github.com/alterhost/alterhost/internal/load"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// record is one load run, as -json writes it (one line) and summarize
// reads it.
type record struct {
	Label    string  `json:"label"`
	Tool     string  `json:"tool"`
	Protocol string  `json:"protocol"`
	Sessions int     `json:"sessions"`
	OK       int     `json:"ok"` // timed calls that succeeded
	Failed   int     `json:"failed"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	MaxUs    float64 `json:"max_us"`
	Rate     float64 `json:"calls_per_s"`
	Elapsed  float64 `json:"elapsed_s"`
	// ServerCPUus is the server's CPU time per timed call in µs, and
	// ServerUtil the share of one core it used during the run; both 0
	// without -server-pid.
	ServerCPUus float64 `json:"server_cpu_us_per_call,omitempty"`
	ServerUtil  float64 `json:"server_cpu_util,omitempty"`
	// LoadUtil is the share of one core the load generator used: near
	// or above 1 on a pinned core, the client, not the server, bounds
	// the calls per second.
	LoadUtil float64 `json:"load_cpu_util,omitempty"`
}

func (r record) String() string {
	s := fmt.Sprintf("%s %s %d sessions: %d ok, %d failed in %.2fs: %.0f calls/s, p50 %.0f µs, p99 %.0f µs, max %.0f µs",
		r.Label, r.Tool, r.Sessions, r.OK, r.Failed, r.Elapsed, r.Rate, r.P50us, r.P99us, r.MaxUs)
	if r.ServerCPUus > 0 {
		s += fmt.Sprintf("; server CPU %.0f µs/call, %.0f%% of a core", r.ServerCPUus, 100*r.ServerUtil)
	}
	if r.LoadUtil > 0 {
		s += fmt.Sprintf("; load generator %.0f%% of a core", 100*r.LoadUtil)
	}
	return s
}

// loadConfig is one load run's settings.
type loadConfig struct {
	url, label, tool, protocol string
	sessions, calls, warmup    int
	serverPID                  int
	timeout                    time.Duration
}

func loadCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c loadConfig
	fs.StringVar(&c.url, "url", "", "the MCP endpoint, http://127.0.0.1:PORT/mcp")
	fs.StringVar(&c.label, "label", "run", "the name of the server measured, for the report")
	fs.StringVar(&c.tool, "tool", "reverse", "the tool to call: reverse (C guest) or random_id (Go guest)")
	fs.StringVar(&c.protocol, "protocol", "2025-11-25", "MCP protocol revision; 2026-07-28 and later are served without sessions")
	fs.IntVar(&c.sessions, "sessions", 1, "client sessions, each calling back to back")
	fs.IntVar(&c.calls, "calls", 2000, "timed calls per session")
	fs.IntVar(&c.warmup, "warmup", 200, "calls per session before timing, not counted")
	fs.IntVar(&c.serverPID, "server-pid", 0, "if set, also report this process's CPU time per call")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	asJSON := fs.Bool("json", false, "write the result as one JSON line instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.url == "" {
		return errors.New("load: -url is required")
	}
	rec, err := runLoad(ctx, c)
	if rec != nil {
		if *asJSON {
			b, _ := json.Marshal(rec)
			fmt.Fprintf(stdout, "%s\n", b)
		} else {
			fmt.Fprintln(stdout, rec)
		}
	}
	return err
}

// runLoad checks the tool on c.url, warms the server up and measures. It
// returns an error if any call failed or answered wrongly, along with the
// record of the timed calls if they ran.
func runLoad(ctx context.Context, c loadConfig) (*record, error) {
	b, ok := benches[c.tool]
	if !ok {
		return nil, fmt.Errorf("load: unknown tool %q (reverse, random_id)", c.tool)
	}
	if c.sessions < 1 || c.calls < 1 || c.warmup < 0 {
		return nil, errors.New("load: -sessions and -calls must be at least 1, -warmup at least 0")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	sessions := make([]*mcp.ClientSession, 0, c.sessions)
	var clients []*http.Client
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
		for _, hc := range clients {
			hc.CloseIdleConnections()
		}
	}()
	for range c.sessions {
		// Each session has an HTTP client of its own, as separate MCP
		// clients would, with room to keep its connections open: the
		// default of two idle connections per host would make sessions
		// open new TCP connections under load and measure that instead.
		hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 8, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}}
		clients = append(clients, hc)
		s, err := connect(ctx, hc, c.url, c.protocol)
		if err != nil {
			return nil, err
		}
		sessions = append(sessions, s)
	}
	if err := check(ctx, sessions[0], b); err != nil {
		return nil, fmt.Errorf("load: %s on %s: %w", c.tool, c.url, err)
	}
	call := func(ctx context.Context, w, _ int) error {
		// Parameters of their own for each call: the SDK writes into them
		// (the 2026-07-28 revision's _meta).
		res, err := sessions[w].CallTool(ctx, &mcp.CallToolParams{Name: b.tool.Name, Arguments: b.args})
		if err != nil {
			return err
		}
		return b.verify(res)
	}
	if c.warmup > 0 {
		if res := load.Fixed(ctx, c.sessions, c.warmup, 30*time.Second, call); res.Failed > 0 {
			return nil, fmt.Errorf("load: warm-up: %d calls failed: %v", res.Failed, errors.Join(res.Errors...))
		}
	}
	var cpu0 time.Duration
	if c.serverPID > 0 {
		var err error
		if cpu0, err = load.CPUTime(c.serverPID); err != nil {
			return nil, err
		}
	}
	self0, selfErr := load.CPUTime(os.Getpid())
	res := load.Fixed(ctx, c.sessions, c.calls, 30*time.Second, call)
	self1, selfErr1 := load.CPUTime(os.Getpid())
	rec := &record{
		Label: c.label, Tool: c.tool, Protocol: c.protocol, Sessions: c.sessions,
		OK: res.OK, Failed: res.Failed, Rate: res.Rate(), Elapsed: res.Elapsed.Seconds(),
		P50us: micros(res.Quantile(0.5)), P99us: micros(res.Quantile(0.99)), MaxUs: micros(res.Quantile(1)),
	}
	if selfErr == nil && selfErr1 == nil && res.Elapsed > 0 {
		rec.LoadUtil = (self1 - self0).Seconds() / res.Elapsed.Seconds()
	}
	if c.serverPID > 0 {
		cpu1, err := load.CPUTime(c.serverPID)
		if err != nil {
			return rec, err
		}
		if used := cpu1 - cpu0; res.OK > 0 && res.Elapsed > 0 {
			rec.ServerCPUus = micros(used) / float64(res.OK)
			rec.ServerUtil = used.Seconds() / res.Elapsed.Seconds()
		}
	}
	if res.Failed > 0 || res.Scheduled != c.sessions*c.calls {
		return rec, fmt.Errorf("load: %d of %d calls failed or did not run: %v",
			c.sessions*c.calls-res.OK, c.sessions*c.calls, errors.Join(res.Errors...))
	}
	return rec, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// connect opens one client session over hc.
func connect(ctx context.Context, hc *http.Client, url, protocol string) (*mcp.ClientSession, error) {
	t := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpbench", Version: "bench"}, nil)
	s, err := client.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: protocol})
	if err != nil {
		return nil, fmt.Errorf("load: connect to %s: %w", url, err)
	}
	return s, nil
}

// check makes sure, before anything is timed, that the server lists the
// tool as expected (so both servers validate against the same schema) and
// answers each check case right.
func check(ctx context.Context, s *mcp.ClientSession, b bench) error {
	var listed *mcp.Tool
	for t, err := range s.Tools(ctx, nil) {
		if err != nil {
			return fmt.Errorf("tools/list: %w", err)
		}
		if t.Name == b.tool.Name {
			listed = t
			break
		}
	}
	if listed == nil {
		return errors.New("the server does not list the tool")
	}
	if g, w := normalized(listed), normalized(b.tool); !reflect.DeepEqual(g, w) {
		return fmt.Errorf("listed as %s; want %s", marshal(listed), marshal(b.tool))
	}
	for _, c := range b.cases {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: b.tool.Name, Arguments: c.args})
		if err != nil {
			return err
		}
		if err := c.check(res); err != nil {
			return fmt.Errorf("arguments %s: %w", marshal(c.args), err)
		}
	}
	return nil
}

// normalized is v's JSON decoded into generic values: the SDK may write a
// schema's keys in another order than the manifest does.
func normalized(v any) any {
	var out any
	if err := json.Unmarshal([]byte(marshal(v)), &out); err != nil {
		return err.Error()
	}
	return out
}
