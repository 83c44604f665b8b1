package host_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/host"
)

// sessionHeader records whether responses carried an MCP session id.
type sessionHeader struct {
	seen bool
}

func (s *sessionHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && resp.Header.Get("Mcp-Session-Id") != "" {
		s.seen = true
	}
	return resp, err
}

// TestStateless: with Config.Stateless a 2025-11-25 client is served
// without a session (so any instance could answer each request), and its
// calls work; without it, the same client gets a session.
func TestStateless(t *testing.T) {
	// The C plugin alone: it compiles in milliseconds.
	dir := t.TempDir()
	b, err := os.ReadFile("../plugins/text.wasm")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "text.wasm"), b, 0o644)
	for _, stateless := range []bool{false, true} {
		srv, err := host.New(context.Background(), host.Config{PluginsDir: dir, DataDir: t.TempDir(),
			BaseURL: "http://127.0.0.1:1", Stateless: stateless, NoWatch: true})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		hdr := &sessionHeader{}
		s, err := mcp.NewClient(&mcp.Implementation{Name: "old", Version: "1"}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: ts.URL + "/mcp", HTTPClient: &http.Client{Transport: hdr}},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "reverse", Arguments: map[string]any{"text": "abc"}})
			if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "cba" {
				t.Fatalf("stateless=%v: %v %v", stateless, err, res)
			}
		}
		if hdr.seen == stateless {
			t.Errorf("stateless=%v: a session id was sent: %v", stateless, hdr.seen)
		}
		if got := s.InitializeResult().ProtocolVersion; !strings.HasPrefix(got, "2025-11-25") {
			t.Errorf("negotiated %s", got)
		}
		s.Close()
		ts.Close()
		srv.Close(context.Background())
	}
}
