package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMetricsEndpoint: the binary serves /metrics on its own address, and
// a tool call shows there, labelled by plugin, tool and outcome only.
func TestMetricsEndpoint(t *testing.T) {
	_, plugins := build(t)
	dir := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(plugins, "text.wasm"))
	os.WriteFile(filepath.Join(dir, "text.wasm"), b, 0o644)
	endpoint, _, logs := start(t, dir, "--metrics-addr", "127.0.0.1:0")
	re := regexp.MustCompile(`msg=metrics url=(http://127\.0\.0\.1:\d+/metrics)`)
	var url string
	for i := 0; url == ""; i++ {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			url = m[1]
		} else if i == 100 {
			t.Fatalf("no metrics address logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.HasPrefix(url, strings.TrimSuffix(endpoint, "/mcp")) {
		t.Fatalf("metrics share the MCP address: %s", url)
	}
	s, err := mcp.NewClient(&mcp.Implementation{Name: "m", Version: "1"}, nil).
		Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		if res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "reverse", Arguments: map[string]any{"text": "ab"}}); err != nil || res.IsError {
			t.Fatalf("reverse: %v %v", err, res)
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`alterhost_tool_calls_total{outcome="ok",plugin="text",tool="reverse"} 3`,
		`alterhost_plugins_loaded 1`,
		`alterhost_tool_call_duration_seconds_count{plugin="text",tool="reverse"} 3`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Nothing about people: the local owner's subject is no label value.
	if strings.Contains(string(body), `"owner"`) {
		t.Error("/metrics names the subject")
	}
	// The MCP address does not serve it.
	if resp, err := http.Get(strings.TrimSuffix(endpoint, "/mcp") + "/metrics"); err == nil && resp.StatusCode == 200 {
		t.Error("/metrics is also on the MCP address")
	}
}
