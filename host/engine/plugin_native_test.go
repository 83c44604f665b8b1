package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/wasmtest"
	"github.com/alterhost/alterhost/vault/egress"
)

// TestNativeUnderPlugin runs the plugin layer (pool, argument checks,
// serveRequest through egress) on the native engine with the hostile tools
// of host/plugin's tests, as the lead's --engine native will.
func TestNativeUnderPlugin(t *testing.T) {
	eng, err := engine.NewNative(engine.NativeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	h := &plugin.Host{Engine: eng, Outbound: egress.New(egress.Options{AllowPrivate: true}), Logger: slog.New(slog.DiscardHandler)}

	names := []string{"echo", "json", "spin", "trap", "recurse", "grow", "huge", "lying", "malformed_request", "request", "request_then_fail"}
	var tools []string
	for _, n := range names {
		tools = append(tools, fmt.Sprintf(`{"name":%q,"description":"test tool","result":"text"}`, n))
	}
	// Recursing to a stack overflow takes seconds under the race detector
	// (each stack growth's copy is checked): allow for it.
	timeout := time.Second
	if raceEnabled {
		timeout = 10 * time.Second
	}
	manifest := fmt.Sprintf(`{"abi":"alter/v1","name":"p","version":"1.0.0","limits":{"timeout_ms":%d,"memory_mib":16,"max_output_bytes":1048576},"tools":[%s]}`,
		timeout.Milliseconds(), strings.Join(tools, ","))
	wasm, err := abi.AppendCustomSection(wasmtest.Guest(t, wasmtest.Hostile), abi.ManifestSection, []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p.wasm")
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := plugin.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	tool := func(name string) *abi.Tool {
		for i := range p.Manifest.Tools {
			if p.Manifest.Tools[i].Name == name {
				return &p.Manifest.Tools[i]
			}
		}
		t.Fatalf("no tool %s", name)
		return nil
	}
	for _, tc := range []struct{ tool, kind, msg string }{
		{"spin", "timeout", fmt.Sprintf("did not finish within %s", timeout)},
		{"grow", "trap", "unreachable"},
		{"recurse", "trap", "stack overflow"},
		{"huge", "bad_output", "may return at most 1048576"},
		{"trap", "trap", "unreachable"},
		{"request_then_fail", "guest_error", "failed with code 1"},
	} {
		before := p.Instantiations()
		_, err := p.Call(context.Background(), tool(tc.tool), json.RawMessage(`{"url":"ftp://x"}`))
		var f *plugin.Failure
		if !errors.As(err, &f) || f.Kind != tc.kind || !strings.Contains(f.Message, tc.msg) {
			t.Errorf("%s: err = %v; want %s mentioning %q", tc.tool, err, tc.kind, tc.msg)
			continue
		}
		if tc.tool == "request_then_fail" && (f.Request == nil || f.Request.Code != abi.CodeHostNotAllowed) {
			t.Errorf("the unhandled alter_request error was lost: %+v", f.Request)
		}
		out, err := p.Call(context.Background(), tool("echo"), json.RawMessage(`{"after":"`+tc.tool+`"}`))
		if err != nil || string(out) != `{"after":"`+tc.tool+`"}` {
			t.Errorf("after %s, echo = %q, %v", tc.tool, out, err)
		}
		if got := p.Instantiations() - before; got != 1 {
			t.Errorf("%s: %d new instances; want 1", tc.tool, got)
		}
	}
	out, err := p.Call(context.Background(), tool("malformed_request"), nil)
	var reply abi.Reply
	if err != nil || json.Unmarshal(out, &reply) != nil || reply.Error == nil || reply.Error.Code != abi.CodeBadRequest {
		t.Errorf("malformed_request: %s, %v; want a bad_request reply", out, err)
	}
	mems, err := p.Memories()
	if err != nil || len(mems) == 0 {
		t.Errorf("Memories: %d, %v", len(mems), err)
	}
}
