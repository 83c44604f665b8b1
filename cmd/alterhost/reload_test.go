package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestHotReload drives the binary while its plugins folder changes: a
// plugin copied in is served and announced, a broken new version leaves
// the old one serving, a removed plugin's tools go away; clients of both
// protocol generations hear each change.
func TestHotReload(t *testing.T) {
	_, plugins := build(t)
	dir := t.TempDir()
	// install copies a bundled plugin in the way operators should: write
	// beside, then rename, so the folder never holds half a file.
	install := func(name string, b []byte) {
		t.Helper()
		tmp := filepath.Join(dir, "."+name+".part")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	textWasm, _ := os.ReadFile(filepath.Join(plugins, "text.wasm"))
	web, _ := os.ReadFile(filepath.Join(plugins, "web.wasm"))
	install("text.wasm", textWasm)
	endpoint, _, logs := start(t, dir)

	type client struct {
		session *mcp.ClientSession
		changed chan struct{}
	}
	connect := func(version string) client {
		c := client{changed: make(chan struct{}, 16)}
		cl := mcp.NewClient(&mcp.Implementation{Name: "reload-" + version, Version: "1"}, &mcp.ClientOptions{
			ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { c.changed <- struct{}{} },
		})
		s, err := cl.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint},
			&mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		c.session = s
		return c
	}
	clients := []client{connect("2025-11-25"), connect("2026-07-28")}
	tools := func(c client) []string {
		t.Helper()
		res, err := c.session.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range res.Tools {
			names = append(names, tl.Name)
		}
		slices.Sort(names)
		return names
	}
	// expect waits until every client heard a change and lists want.
	expect := func(step string, want ...string) {
		t.Helper()
		slices.Sort(want)
		for i, c := range clients {
			select {
			case <-c.changed:
			case <-time.After(15 * time.Second):
				t.Fatalf("%s: client %d heard no tools/list_changed\n%s", step, i, logs.String())
			}
			deadline := time.Now().Add(5 * time.Second)
			for got := tools(c); !slices.Equal(got, want); got = tools(c) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: client %d lists %v; want %v", step, i, got, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	for _, c := range clients {
		if got := tools(c); !slices.Equal(got, []string{"reverse", "word_count"}) {
			t.Fatalf("at start: %v", got)
		}
	}

	// A plugin copied in is served without a restart.
	install("web.wasm", web)
	expect("web added", "fetch_url", "now", "random_id", "reverse", "word_count")

	// A broken new version of text leaves the old one serving.
	install("text.wasm", []byte("\x00asm\x01\x00\x00\x00 truncated"))
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "keeps serving") {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the broken version:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range clients {
		res, err := c.session.CallTool(context.Background(), &mcp.CallToolParams{Name: "reverse",
			Arguments: map[string]any{"text": "héllo"}})
		if err != nil || res.IsError || text(t, res) != "olléh" {
			t.Fatalf("reverse after a broken update: %v %v", err, res)
		}
	}

	// Removing a plugin takes its tools away.
	os.Remove(filepath.Join(dir, "web.wasm"))
	expect("web removed", "reverse", "word_count")
}
