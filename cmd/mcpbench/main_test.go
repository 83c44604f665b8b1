package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func testConfig(url, tool string) loadConfig {
	return loadConfig{url: url, label: "test", tool: tool, protocol: "2025-11-25",
		sessions: 3, calls: 20, warmup: 2, timeout: time.Minute}
}

func TestLoadAgainstNative(t *testing.T) {
	srv := httptest.NewServer(newNativeServer(discard))
	defer srv.Close()
	for _, tool := range []string{"reverse", "random_id"} {
		for _, protocol := range []string{"2025-11-25", "2026-07-28"} {
			c := testConfig(srv.URL+"/mcp", tool)
			c.protocol = protocol
			rec, err := runLoad(context.Background(), c)
			if err != nil {
				t.Fatalf("%s %s: %v", tool, protocol, err)
			}
			if rec.OK != 60 || rec.Failed != 0 || rec.Rate <= 0 || rec.P50us <= 0 ||
				rec.P50us > rec.P99us || rec.P99us > rec.MaxUs {
				t.Errorf("%s %s: %+v", tool, protocol, rec)
			}
		}
	}
}

// faultyServer lists reverse as alterhost does but answers the call
// numbered failAt (from 1) with a tool error, and every other call right.
func faultyServer(t *testing.T, failAt int64) string {
	s := mcp.NewServer(&mcp.Implementation{Name: "faulty", Version: "test"}, nil)
	var n atomic.Int64
	mcp.AddTool(s, reverseTool, func(_ context.Context, _ *mcp.CallToolRequest, in textArgs) (*mcp.CallToolResult, any, error) {
		if n.Add(1) == failAt {
			return nil, nil, errors.New("the tool broke")
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: reverse(in.Text)}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestLoadFailsOnToolError(t *testing.T) {
	cases := int64(len(benches["reverse"].cases))
	// After the check and the warm-up (3 sessions × 2), in the timed calls.
	rec, err := runLoad(context.Background(), testConfig(faultyServer(t, cases+6+10), "reverse"))
	if err == nil || !strings.Contains(err.Error(), "the tool broke") || rec == nil || rec.Failed != 1 || rec.OK != 59 {
		t.Errorf("timed call failing: %v, %+v", err, rec)
	}
	// In the check, before any timing.
	rec, err = runLoad(context.Background(), testConfig(faultyServer(t, 2), "reverse"))
	if err == nil || !strings.Contains(err.Error(), "the tool broke") || rec != nil {
		t.Errorf("checked call failing: %v, %+v", err, rec)
	}
}

func TestLoadChecksTheDefinition(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "other", Version: "test"}, nil)
	other := *reverseTool
	other.Description = "something else"
	mcp.AddTool(s, &other, func(_ context.Context, _ *mcp.CallToolRequest, in textArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: reverse(in.Text)}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	defer srv.Close()
	if _, err := runLoad(context.Background(), testConfig(srv.URL, "reverse")); err == nil || !strings.Contains(err.Error(), "listed as") {
		t.Errorf("a tool with another definition was measured: %v", err)
	}
	if _, err := runLoad(context.Background(), testConfig(srv.URL, "random_id")); err == nil || !strings.Contains(err.Error(), "does not list") {
		t.Errorf("a missing tool was measured: %v", err)
	}
}

func TestReverse(t *testing.T) {
	for in, want := range map[string]string{"": "", "a": "a", "ab東🎉": "🎉東ba", "e\u0301x": "x\u0301e"} {
		if got := reverse(in); got != want {
			t.Errorf("reverse(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestSummary(t *testing.T) {
	var recs []record
	add := func(label string, sessions int, p50, rate float64) {
		recs = append(recs, record{Label: label, Tool: "reverse", Protocol: "p", Sessions: sessions,
			P50us: p50, P99us: 2 * p50, Rate: rate, ServerCPUus: 100, ServerUtil: 0.5, LoadUtil: 0.25})
	}
	// Three runs each; the medians are the middle values.
	for _, r := range [][2]float64{{300, 3000}, {200, 5000}, {250, 4000}} {
		add("wasm", 1, r[0]*1.2, r[1]*0.95)
		add("go-sdk", 1, r[0], r[1])
		add("wasm", 16, r[0]*10, r[1]*0.8)
		add("go-sdk", 16, r[0]*10, r[1])
	}
	var b bytes.Buffer
	if err := writeSummary(&b, recs, "go-sdk"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		`^\| reverse \| p \| 1 \| go-sdk \| 3 \| 250 µs \| 500 µs \| 4000 \| 100 µs \| 50 % / 25 % \| – \| – \| – \| baseline \|$`,
		`^\| reverse \| p \| 1 \| wasm \| 3 \| 300 µs \| 600 µs \| 3800 \| 100 µs \| 50 % / 25 % \| 1\.20× \| 0\.95× \| 1\.00× \| p50 \*\*missed\*\*, calls/s met \|$`,
		`^\| reverse \| p \| 16 \| go-sdk \| 3 \| 2500 µs \| 5000 µs \| 4000 \|`,
		`^\| reverse \| p \| 16 \| wasm \| 3 \| 2500 µs \| 5000 µs \| 3200 \| 100 µs \| 50 % / 25 % \| 1\.00× \| 0\.80× \| 1\.00× \| p50 met, calls/s \*\*missed\*\* \|$`,
	}
	if len(lines) != 2+len(want) {
		t.Fatalf("summary:\n%s", b.String())
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[2+i]) {
			t.Errorf("row %d: %s\nwant %s", i, lines[2+i], re)
		}
	}
}

func TestServeJob(t *testing.T) {
	if err := run(context.Background(), []string{"serve", "-addr", "0.0.0.0:0"}, io.Discard, io.Discard); err == nil {
		t.Error("served on a non-loopback address")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, io.Discard, pw); pw.Close() }()
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(pr, buf, 1)
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+/mcp)`).FindSubmatch(buf[:n])
	if m == nil {
		t.Fatalf("no URL in the log: %s", buf[:n])
	}
	if _, err := runLoad(ctx, testConfig(string(m[1]), "reverse")); err != nil {
		t.Error(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}
