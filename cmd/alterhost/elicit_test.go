package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/internal/sandboxtest"
)

// TestConnectURLElicitation: a client that declared URL elicitation gets
// the Connect URL as one, in the form its protocol revision defines, and
// the call goes on once the person has connected in the browser:
// 2025-11-25 by the -32042 error and the completion notification,
// 2026-07-28 by an input request and the client's retry.
func TestConnectURLElicitation(t *testing.T) {
	_, plugins := build(t)
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(plugins, "sandbox.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "sandbox.wasm"), b, 0o644)
	endpoint, _, logs := start(t, dir, "--dev")
	base := strings.TrimSuffix(endpoint, "/mcp")
	browser := sandboxtest.Browser()

	// person plays the person at the client: it records each elicitation
	// and, when approve is set, connects in the browser before answering.
	type person struct {
		mu        sync.Mutex
		asked     []*mcp.ElicitParams
		completed []string
	}
	connect := func(t *testing.T, version string, approve bool) (*mcp.ClientSession, *person) {
		p := &person{}
		c := mcp.NewClient(&mcp.Implementation{Name: "elicit-" + version, Version: "1"}, &mcp.ClientOptions{
			Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
			ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				p.mu.Lock()
				p.asked = append(p.asked, req.Params)
				p.mu.Unlock()
				if !approve {
					return &mcp.ElicitResult{Action: "decline"}, nil
				}
				if page := sandboxtest.Approve(t, browser, req.Params.URL); !strings.Contains(page, "Connected Sandbox") {
					t.Errorf("connect page: %s", page)
				}
				return &mcp.ElicitResult{Action: "accept"}, nil
			},
			ElicitationCompleteHandler: func(_ context.Context, req *mcp.ElicitationCompleteNotificationRequest) {
				p.mu.Lock()
				p.completed = append(p.completed, req.Params.ElicitationID)
				p.mu.Unlock()
			},
		})
		s, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint},
			&mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, p
	}
	call := func(t *testing.T, s *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	checkAsked := func(t *testing.T, p *person, wantMessage string) *mcp.ElicitParams {
		t.Helper()
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.asked) != 1 {
			t.Fatalf("%d elicitations; want 1", len(p.asked))
		}
		e := p.asked[0]
		if e.Mode != "url" || e.ElicitationID == "" || !strings.HasPrefix(e.URL, base+"/connect/sandbox?link=") ||
			!strings.Contains(e.Message, wantMessage) {
			t.Fatalf("elicitation: %+v", e)
		}
		return e
	}

	t.Run("2025-11-25", func(t *testing.T) {
		s, p := connect(t, "2025-11-25", true)
		if got := s.InitializeResult().ProtocolVersion; got != "2025-11-25" {
			t.Fatalf("negotiated %s", got)
		}
		// The call fails with -32042 carrying the URL elicitation; the
		// client shows the URL (here: the person connects in the browser),
		// waits for the completion notification and calls again, as the
		// revision describes. The Go SDK leaves that loop to the caller.
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami"})
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != mcp.CodeURLElicitationRequired {
			t.Fatalf("whoami without a grant: %v; want -32042", err)
		}
		var data struct {
			Elicitations []*mcp.ElicitParams `json:"elicitations"`
		}
		if err := json.Unmarshal(rpcErr.Data, &data); err != nil || len(data.Elicitations) != 1 {
			t.Fatalf("error data %s: %v", rpcErr.Data, err)
		}
		e := data.Elicitations[0]
		p.asked = append(p.asked, e)
		checkAsked(t, p, "Connect an account so that whoami can act for you")
		if page := sandboxtest.Approve(t, browser, e.URL); !strings.Contains(page, "Connected Sandbox") {
			t.Fatalf("connect page: %s", page)
		}
		for i := 0; ; i++ {
			p.mu.Lock()
			completed := slices.Clone(p.completed)
			p.mu.Unlock()
			if len(completed) == 1 && completed[0] == e.ElicitationID {
				break
			}
			if i == 100 || len(completed) > 1 {
				t.Fatalf("completion notifications %v; want [%s]", completed, e.ElicitationID)
			}
			time.Sleep(50 * time.Millisecond)
		}
		res := call(t, s, "whoami", nil)
		if res.IsError || !strings.Contains(text(t, res), `"authenticated":true`) {
			t.Fatalf("whoami after connecting: %s", text(t, res))
		}
	})

	t.Run("2026-07-28 declined", func(t *testing.T) {
		s, p := connect(t, "2026-07-28", false)
		// add_note needs the write scope the read grant above lacks.
		res := call(t, s, "add_note", map[string]any{"text": "declined"})
		if !res.IsError || errorMeta(t, res)["kind"] != "declined" || !strings.Contains(text(t, res), "did not connect") {
			t.Fatalf("add_note declined: %s %v", text(t, res), res.Meta)
		}
		checkAsked(t, p, "Grant more access so that add_note can act for you")
	})

	t.Run("2026-07-28", func(t *testing.T) {
		s, p := connect(t, "2026-07-28", true)
		res := call(t, s, "add_note", map[string]any{"text": "after the retry"})
		if res.IsError {
			t.Fatalf("add_note after granting: %s", text(t, res))
		}
		checkAsked(t, p, "Grant more access so that add_note can act for you")
		if res := call(t, s, "list_notes", nil); res.IsError || !strings.Contains(text(t, res), "after the retry") {
			t.Fatalf("list_notes: %s", text(t, res))
		}
	})

	t.Run("without the capability", func(t *testing.T) {
		// A 2026-07-28 client that did not declare URL elicitation gets the
		// URL in words, as before. Disconnect first so a grant is missing.
		resp, err := browser.PostForm(base+"/connect/sandbox/disconnect", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("disconnect: %v", err)
		}
		s, err := mcp.NewClient(&mcp.Implementation{Name: "plain", Version: "1"}, nil).
			Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res := call(t, s, "whoami", nil)
		if meta := errorMeta(t, res); !res.IsError || meta["code"] != "grant_not_found" ||
			!strings.Contains(text(t, res), meta["connect_url"].(string)) {
			t.Fatalf("whoami: %s %v", text(t, res), meta)
		}
	})
	if strings.Contains(logs.String(), "sbx_at_") {
		t.Error("a token reached the logs")
	}
}
