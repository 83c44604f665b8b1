package host_test

import (
	"context"
	"io"
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

// TestReadyz: ready while the database answers and the server is not
// stopping; 503 with the reason otherwise. /healthz stays 200.
func TestReadyz(t *testing.T) {
	srv, err := host.New(context.Background(), host.Config{PluginsDir: t.TempDir(), DataDir: t.TempDir(),
		BaseURL: "http://127.0.0.1:1", NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get("/readyz"); code != 200 || body != "ready" {
		t.Fatalf("ready: %d %q", code, body)
	}
	srv.Drain()
	if code, body := get("/readyz"); code != 503 || body != "draining: shutting down" {
		t.Fatalf("draining: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz while draining: %d", code)
	}
	// A database that stopped answering: the store closed under it.
	srv.Close(context.Background())
	srv2, err := host.New(context.Background(), host.Config{PluginsDir: t.TempDir(), DataDir: t.TempDir(),
		BaseURL: "http://127.0.0.1:1", NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(srv2.Handler())
	defer ts2.Close()
	srv2.Close(context.Background())
	resp, err := http.Get(ts2.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.TrimSpace(string(b)) != "database unreachable" {
		t.Fatalf("database closed: %d %q", resp.StatusCode, b)
	}
}
