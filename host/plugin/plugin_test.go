package plugin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/wasmtest"
	"github.com/alterhost/alterhost/vault/egress"
)

// guest is the misbehaving tools the plugin layer is tested with.
const guest = wasmtest.Hostile

var toolNames = []string{"echo", "json", "spin", "trap", "recurse", "grow", "huge", "lying",
	"malformed_request", "request", "request_then_fail"}

func manifest(name string, extra string, tools ...string) string {
	var ts []string
	for _, t := range tools {
		result := "text"
		if t == "json" || t == "lying" {
			result = "json"
		}
		ts = append(ts, fmt.Sprintf(`{"name":%q,"description":"test tool","result":%q}`, t, result))
	}
	return fmt.Sprintf(`{"abi":"alter/v1","name":%q,"version":"1.0.0"%s,"tools":[%s]}`, name, extra, strings.Join(ts, ","))
}

// writePlugin writes wasm with manifest embedded into dir/file.
func writePlugin(t *testing.T, dir, file string, wasm []byte, manifest string) string {
	t.Helper()
	if manifest != "" {
		var err error
		if wasm, err = abi.AppendCustomSection(wasm, abi.ManifestSection, []byte(manifest)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newHost(t *testing.T, out plugin.Outbound) *plugin.Host {
	t.Helper()
	eng, err := engine.NewExtism(engine.ExtismOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	if out == nil {
		out = egress.New(egress.Options{AllowPrivate: true})
	}
	return &plugin.Host{Engine: eng, Outbound: out, Logger: slog.New(slog.DiscardHandler)}
}

// loadGuest loads the test guest with manifest into a fresh host and
// closes it when the test ends.
func loadGuest(t *testing.T, manifest string) *plugin.Plugin {
	t.Helper()
	path := writePlugin(t, t.TempDir(), "p.wasm", wasmtest.Guest(t, guest), manifest)
	spec, err := plugin.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newHost(t, nil).Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func TestLoadDir(t *testing.T) {
	wasm := wasmtest.Guest(t, guest)
	dir := t.TempDir()
	writePlugin(t, dir, "a_good.wasm", wasm, manifest("good", "", "echo", "json"))
	writePlugin(t, dir, "b_nomanifest.wasm", wasm, "")
	writePlugin(t, dir, "c_malformed.wasm", wasm, `{"abi":"alter/v1",`)
	writePlugin(t, dir, "d_missing_export.wasm", wasm, manifest("missing", "", "nope"))
	writePlugin(t, dir, "e_invalid.wasm", []byte("\x00asm\x01\x00\x00\x00\x01\xff\xff"), "")
	writePlugin(t, dir, "f_same_name.wasm", wasm, manifest("good", "", "trap"))
	writePlugin(t, dir, "g_same_tool.wasm", wasm, manifest("other", "", "echo", "trap"))
	writePlugin(t, dir, "h_bad_limits.wasm", wasm, manifest("limits", `,"limits":{"memory_mib":999999}`, "echo"))
	writePlugin(t, dir, "i_sidecar.wasm", wasm, manifest("embedded", "", "echo"))
	os.WriteFile(filepath.Join(dir, "i_sidecar.alter.json"), []byte(manifest("sidecar", "", "spin")), 0o644)
	unknown := wasmtest.Build(t, `(module (import "env" "system" (func (param i32))) (func (export "x") (result i32) i32.const 0))`)
	writePlugin(t, dir, "j_unknown_import.wasm", unknown, manifest("unknown", "", "x"))
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a plugin"), 0o644)

	cat, errs := newHost(t, nil).LoadDir(context.Background(), dir)
	defer cat.Close(context.Background())

	var names []string
	for _, b := range cat.Tools {
		names = append(names, b.Plugin.Manifest.Name+"/"+b.Tool.Name)
	}
	if got, want := strings.Join(names, " "), "good/echo good/json other/trap sidecar/spin"; got != want {
		t.Errorf("tools = %s; want %s", got, want)
	}
	all := ""
	for _, err := range errs {
		all += err.Error() + "\n"
	}
	for _, want := range []string{
		"b_nomanifest.wasm: no manifest: embed one with `alterhost plugin pack",
		"c_malformed.wasm: invalid manifest: (document): not a valid manifest",
		`d_missing_export.wasm: invalid manifest: tools[0].export: "nope" is not exported by the module; export it, or name one of: echo, json`,
		"e_invalid.wasm: not a valid WebAssembly module",
		`f_same_name.wasm: plugin name "good" is already used by ` + filepath.Join(dir, "a_good.wasm"),
		`g_same_tool.wasm: tool "echo" is already served by ` + filepath.Join(dir, "a_good.wasm"),
		"h_bad_limits.wasm: invalid manifest: limits.memory_mib: 999999 is out of range; use a value from 1 to 1024",
		"j_unknown_import.wasm: invalid manifest: (module imports): imports env.system, which alterhost does not provide",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q; got:\n%s", want, all)
		}
	}
	if len(errs) != 8 {
		t.Errorf("got %d errors; want 8:\n%s", len(errs), all)
	}
}

// TestHostileGuests runs each misbehaving tool and checks that it fails
// with a clear error, that its instance is thrown away, and that the plugin
// keeps serving.
func TestHostileGuests(t *testing.T) {
	p := loadGuest(t, manifest("p", `,"limits":{"timeout_ms":2000,"memory_mib":16,"max_output_bytes":1048576}`, toolNames...))
	tool := func(name string) *abi.Tool {
		for i := range p.Manifest.Tools {
			if p.Manifest.Tools[i].Name == name {
				return &p.Manifest.Tools[i]
			}
		}
		t.Fatalf("no tool %s", name)
		return nil
	}
	for _, tc := range []struct {
		tool, kind, msg string
	}{
		{"spin", "timeout", "did not finish within 2s"},
		{"grow", "trap", "unreachable"},
		{"recurse", "trap", "stack overflow"},
		{"huge", "bad_output", "may return at most 1048576"},
		{"trap", "trap", "unreachable"},
		{"request_then_fail", "guest_error", "failed with code 1"},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			before := p.Instantiations()
			_, err := p.Call(context.Background(), tool(tc.tool), json.RawMessage(`{"url":"ftp://x"}`))
			var f *plugin.Failure
			if !errors.As(err, &f) || f.Kind != tc.kind || !strings.Contains(f.Message, tc.msg) {
				t.Fatalf("err = %#v; want %s mentioning %q", err, tc.kind, tc.msg)
			}
			if tc.tool == "request_then_fail" && (f.Request == nil || f.Request.Code != abi.CodeHostNotAllowed) {
				t.Errorf("the unhandled alter_request error was lost: %+v", f.Request)
			}
			out, err := p.Call(context.Background(), tool("echo"), json.RawMessage(`{"after":"`+tc.tool+`"}`))
			if err != nil || string(out) != `{"after":"`+tc.tool+`"}` {
				t.Fatalf("after %s, echo = %q, %v", tc.tool, out, err)
			}
			if got := p.Instantiations() - before; got != 1 {
				t.Errorf("%d new instances after a failed call; want 1 (the failed one discarded, then replaced)", got)
			}
		})
	}

	t.Run("lying output length", func(t *testing.T) {
		// The kernel ignores the lie, so the tool returns nothing; the MCP
		// layer then refuses the empty JSON result (see mcpserver tests).
		out, err := p.Call(context.Background(), tool("lying"), nil)
		if err != nil || len(out) != 0 {
			t.Fatalf("got %q, %v; want empty output", out, err)
		}
	})
	t.Run("malformed alter_request", func(t *testing.T) {
		out, err := p.Call(context.Background(), tool("malformed_request"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var reply abi.Reply
		if err := json.Unmarshal(out, &reply); err != nil || reply.Error == nil || reply.Error.Code != abi.CodeBadRequest {
			t.Fatalf("reply = %s; want a bad_request error", out)
		}
	})
	t.Run("invalid arguments", func(t *testing.T) {
		_, err := p.Call(context.Background(), tool("echo"), json.RawMessage(`[1,2`))
		var f *plugin.Failure
		if !errors.As(err, &f) || f.Kind != "invalid_arguments" {
			t.Fatalf("err = %v; want invalid_arguments", err)
		}
	})
}

func TestRequests(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "http://198.51.100.1/elsewhere", http.StatusFound)
		case "/big":
			w.Write([]byte(strings.Repeat("y", 4096)))
		default:
			w.Header().Set("Set-Cookie", "s=1")
			fmt.Fprintf(w, "hello %s", r.URL.Query().Get("who"))
		}
	}))
	defer upstream.Close()
	host := strings.TrimPrefix(upstream.URL, "http://")
	p := loadGuest(t, manifest("p", fmt.Sprintf(`,"allowed_hosts":[%q],"limits":{"max_response_body_bytes":1024}`, host), "request", "echo"))
	call := func(req string) abi.Reply {
		t.Helper()
		out, err := p.Call(context.Background(), &p.Manifest.Tools[0], json.RawMessage(req))
		if err != nil {
			t.Fatal(err)
		}
		var r abi.Reply
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("reply %s: %v", out, err)
		}
		return r
	}
	if r := call(`{"url":"` + upstream.URL + `/hi","query":{"who":"guest"}}`); r.Response == nil || r.Body != "hello guest" || r.Headers["set-cookie"] != "" {
		t.Errorf("allowed request: %+v", r)
	}
	for _, tc := range []struct {
		req  string
		code abi.Code
	}{
		{`{"url":"http://198.51.100.1/"}`, abi.CodeHostNotAllowed},
		{`{"url":"` + upstream.URL + `/redirect"}`, abi.CodeHostNotAllowed},
		{`{"url":"` + upstream.URL + `/big"}`, abi.CodeTooLarge},
		{`{"url":"` + upstream.URL + `/","method":"GET POST"}`, abi.CodeBadRequest},
	} {
		if r := call(tc.req); r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("%s: reply %+v; want %s", tc.req, r, tc.code)
		}
	}
}

// TestConcurrentCalls checks that concurrent callers never see each other's
// output, that callers beyond the pool wait and then give up, and that warm
// calls create no instances.
func TestConcurrentCalls(t *testing.T) {
	p := loadGuest(t, manifest("p", `,"limits":{"max_instances":2,"queue_timeout_ms":100,"timeout_ms":1000}`, "echo", "spin"))
	echo, spin := &p.Manifest.Tools[0], &p.Manifest.Tools[1]

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				in := fmt.Sprintf(`{"caller":%d,"i":%d}`, g, i)
				out, err := p.Call(context.Background(), echo, json.RawMessage(in))
				if err != nil || string(out) != in {
					t.Errorf("caller %d got %q, %v; want %s", g, out, err, in)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := p.Instantiations(); n > 1 {
		t.Errorf("%d instances created for 400 healthy calls on a pool of 2; want at most 1 beyond the warm one", n)
	}
	before := p.Instantiations()
	for range 20 {
		if _, err := p.Call(context.Background(), echo, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Instantiations() - before; n != 0 {
		t.Errorf("sequential warm calls created %d instances; want 0", n)
	}

	// Occupy both instances, then a third caller must give up after the
	// queue timeout with a clear message.
	for range 2 {
		wg.Go(func() { p.Call(context.Background(), spin, nil) })
	}
	time.Sleep(100 * time.Millisecond)
	_, err := p.Call(context.Background(), echo, nil)
	var f *plugin.Failure
	if !errors.As(err, &f) || f.Kind != "busy" || !strings.Contains(f.Message, "all 2 instances") {
		t.Errorf("err = %v; want busy", err)
	}
	wg.Wait()
	if _, err := p.Call(context.Background(), echo, nil); err != nil {
		t.Errorf("after the spinners timed out, echo failed: %v", err)
	}
}
