package main

import (
	"context"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/internal/sandboxtest"
)

// TestNativeEngine serves the bundled plugins (C and Go guests) on the
// native engine through the whole journey: plain calls, a Connect URL,
// a credentialed call after connecting.
func TestNativeEngine(t *testing.T) {
	_, plugins := build(t)
	endpoint, _, logs := start(t, plugins, "--dev", "--engine", "native")
	s, err := mcp.NewClient(&mcp.Implementation{Name: "native", Version: "1"}, nil).
		Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	call := func(name string, args any) *mcp.CallToolResult {
		t.Helper()
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	if res := call("reverse", map[string]any{"text": "héllo"}); res.IsError || text(t, res) != "olléh" {
		t.Fatalf("reverse (C): %s", text(t, res))
	}
	if res := call("now", nil); res.IsError || !strings.Contains(text(t, res), `"unix"`) {
		t.Fatalf("now (Go): %s", text(t, res))
	}
	res := call("whoami", nil)
	link, _ := errorMeta(t, res)["connect_url"].(string)
	if !res.IsError || link == "" {
		t.Fatalf("whoami without a grant: %s", text(t, res))
	}
	if page := sandboxtest.Approve(t, sandboxtest.Browser(), link); !strings.Contains(page, "Connected Sandbox") {
		t.Fatalf("connect: %s", page)
	}
	if res := call("whoami", nil); res.IsError || !strings.Contains(text(t, res), `"authenticated":true`) {
		t.Fatalf("whoami (Go, credentialed): %s", text(t, res))
	}
	if strings.Contains(logs.String(), "sbx_at_") {
		t.Error("a token reached the logs")
	}
}
