package main

// End-to-end tests: they build the real alterhost binary and the example
// plugins, start the binary, and drive it with the go-sdk MCP client over
// stdio and streamable HTTP.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/proctest"
)

var (
	buildOnce sync.Once
	binPath   string
	pluginDir string
	buildErr  error
)

// build compiles alterhost and the example plugins once per test binary.
func build(t *testing.T) (bin, plugins string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alterhost-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "alterhost")
		pluginDir = filepath.Join(dir, "plugins")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		if out, err := exec.Command("../../scripts/build-plugins.sh", pluginDir).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build-plugins: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath, pluginDir
}

// pluginsWithUpstream copies the example plugins and gives web.wasm a
// sidecar manifest that also allows the local upstream, so fetch_url can be
// exercised without leaving loopback.
func pluginsWithUpstream(t *testing.T, upstreamHost string) string {
	t.Helper()
	_, src := build(t)
	dir := t.TempDir()
	for _, name := range []string{"web.wasm", "text.wasm"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	var m map[string]any
	raw, _ := os.ReadFile("../../examples/go/web/alter.json")
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["allowed_hosts"] = []string{upstreamHost}
	raw, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "web.alter.json"), raw, 0o644)
	return dir
}

func upstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Set-Cookie", "session=upstream-secret")
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// exercise lists and calls the example tools through session.
func exercise(t *testing.T, session *mcp.ClientSession, up *httptest.Server) {
	ctx := context.Background()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if tool.Name == "fetch_url" && (tool.Annotations == nil || !tool.Annotations.ReadOnlyHint || tool.OutputSchema == nil) {
			t.Errorf("fetch_url lost its annotations or output schema: %+v", tool)
		}
	}
	if got, want := strings.Join(names, ","), "fetch_url,now,random_id,reverse,word_count"; got != want {
		t.Fatalf("tools = %s; want %s", got, want)
	}
	call := func(name string, args any) *mcp.CallToolResult {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}

	res := call("word_count", map[string]any{"text": "one two\nthree"})
	if res.IsError || !strings.Contains(text(t, res), `"words":3`) || res.StructuredContent == nil {
		t.Errorf("word_count: %s (structured %v)", text(t, res), res.StructuredContent)
	}
	if res := call("reverse", map[string]any{"text": "héllo"}); res.IsError || text(t, res) != "olléh" {
		t.Errorf("reverse: %q", text(t, res))
	}
	res = call("now", map[string]any{})
	var now struct{ Unix int64 }
	json.Unmarshal([]byte(text(t, res)), &now)
	if d := time.Since(time.Unix(now.Unix, 0)); res.IsError || d < -time.Minute || d > time.Minute {
		t.Errorf("now: %s; want the real clock", text(t, res))
	}
	if a, b := text(t, call("random_id", nil)), text(t, call("random_id", nil)); len(a) != 32 || a == b {
		t.Errorf("random_id gave %q then %q; want two different 32-digit ids", a, b)
	}

	res = call("fetch_url", map[string]any{"url": up.URL + "/page"})
	if res.IsError || !strings.Contains(text(t, res), "hello from /page") || strings.Contains(text(t, res), "upstream-secret") {
		t.Errorf("fetch_url: %s", text(t, res))
	}
	res = call("fetch_url", map[string]any{"url": "http://198.51.100.7/"})
	if !res.IsError || !strings.Contains(text(t, res), "host_not_allowed") || res.Meta["alterhost/error"] == nil {
		t.Errorf("fetch_url to a disallowed host: isError=%v %s meta=%v", res.IsError, text(t, res), res.Meta)
	}
	res = call("word_count", map[string]any{"wrong": 1})
	if !res.IsError || !strings.Contains(text(t, res), "input schema") {
		t.Errorf("bad arguments: isError=%v %s", res.IsError, text(t, res))
	}
	// The host still serves after the failures.
	if res := call("reverse", map[string]any{"text": "ab"}); res.IsError || text(t, res) != "ba" {
		t.Errorf("reverse after failures: %q", text(t, res))
	}
}

func TestStdio(t *testing.T) {
	bin, _ := build(t)
	up := upstream(t)
	dir := pluginsWithUpstream(t, strings.TrimPrefix(up.URL, "http://"))
	cmd := exec.Command(bin, "--stdio", "--addr", "127.0.0.1:0", "--allow-private-egress",
		"--plugins", dir, "--data-dir", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	session, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, stderr.String())
	}
	exercise(t, session, up)
	if err := session.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if strings.Contains(stderr.String(), "upstream-secret") {
		t.Error("a secret from the upstream reached the logs")
	}
}

// start runs alterhost serving HTTP on a free loopback port and returns its
// MCP URL and the process.
func start(t *testing.T, dir string, extra ...string) (string, *exec.Cmd, *proctest.Buffer) {
	t.Helper()
	return startWith(t, append([]string{"--no-auth", "--addr", "127.0.0.1:0", "--allow-private-egress",
		"--plugins", dir, "--data-dir", t.TempDir()}, extra...))
}

// startWith runs alterhost with args and waits until it serves HTTP.
func startWith(t *testing.T, args []string) (string, *exec.Cmd, *proctest.Buffer) {
	t.Helper()
	bin, _ := build(t)
	return proctest.Serve(t, bin, args...)
}

func TestHTTP(t *testing.T) {
	up := upstream(t)
	url, cmd, logs := start(t, pluginsWithUpstream(t, strings.TrimPrefix(up.URL, "http://")))
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	session, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, logs.String())
	}
	exercise(t, session, up)
	session.Close()

	t.Run("protocol revisions", func(t *testing.T) {
		for _, v := range []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"} {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, v)
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), `"protocolVersion":"`+v+`"`) {
				t.Errorf("initialize with %s: %d %s", v, resp.StatusCode, b)
			}
		}
	})
	t.Run("DNS rebinding and cross-origin requests are refused", func(t *testing.T) {
		for name, set := range map[string]func(*http.Request){
			"foreign Host": func(r *http.Request) { r.Host = "attacker.example" },
			"cross-origin browser": func(r *http.Request) {
				r.Header.Set("Sec-Fetch-Site", "cross-site")
				r.Header.Set("Origin", "http://attacker.example")
			},
		} {
			req, _ := http.NewRequest("POST", url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: status %d; want 403", name, resp.StatusCode)
			}
		}
	})
	t.Run("SIGTERM lets the in-flight call finish", func(t *testing.T) {
		session, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url}, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan *mcp.CallToolResult, 1)
		go func() {
			res, err := session.CallTool(context.Background(), &mcp.CallToolParams{Name: "fetch_url",
				Arguments: map[string]any{"url": up.URL + "/slow"}})
			if err != nil {
				t.Errorf("in-flight call: %v", err)
			}
			done <- res
		}()
		time.Sleep(300 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case res := <-done:
			if res == nil || res.IsError || !strings.Contains(text(t, res), "hello from /slow") {
				t.Errorf("in-flight call result: %+v", res)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the in-flight call did not finish")
		}
		session.Close()
		waitErr := make(chan error, 1)
		go func() { waitErr <- cmd.Wait() }()
		select {
		case err := <-waitErr:
			if err != nil {
				t.Errorf("alterhost exited with %v\n%s", err, logs.String())
			}
		case <-time.After(40 * time.Second):
			t.Fatalf("alterhost did not exit after SIGTERM\n%s", logs.String())
		}
	})
}

func TestRefusals(t *testing.T) {
	bin, plugins := build(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--plugins", plugins, "--no-auth", "--addr", "0.0.0.0:0"}, "binds only loopback"},
		{[]string{"--plugins", plugins, "--no-auth", "--addr", ":0"}, "binds only loopback"},
		{[]string{"--plugins", plugins, "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, "http issuer is only allowed on loopback"},
		{[]string{"--stdio"}, "--plugins DIR is required"},
		{[]string{"plugin", "inspect", "/nonexistent.wasm"}, "no such file"},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("alterhost %s: err=%v output=%s; want failure mentioning %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}

func TestInspect(t *testing.T) {
	bin, plugins := build(t)
	out, err := exec.Command(bin, "plugin", "inspect", filepath.Join(plugins, "web.wasm")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"web 0.1.0", "manifest from section", "Allowed hosts:  example.com, *.wikipedia.org",
		"fetch_url  (export fetch_url, result json)", "hints: open-world, read-only", "extism:host/user.alter_request (i64) -> (i64)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(bin, "plugin", "inspect", "--json", filepath.Join(plugins, "text.wasm")).CombinedOutput()
	var doc struct {
		Manifest struct{ Name string }
	}
	if err != nil || json.Unmarshal(out, &doc) != nil || doc.Manifest.Name != "text" {
		t.Errorf("inspect --json: %v\n%s", err, out)
	}
}

// TestBundledPlugins checks that the committed plugins/ were built from the
// current examples: same manifest, same exports. (Byte equality would tie
// the test to one compiler version.)
func TestBundledPlugins(t *testing.T) {
	_, fresh := build(t)
	for example, file := range map[string]string{"go/web": "web.wasm", "c/text": "text.wasm", "go/sandbox": "sandbox.wasm"} {
		want, err := os.ReadFile(filepath.Join("../../examples", example, "alter.json"))
		if err != nil {
			t.Fatal(err)
		}
		bundled, err := plugin.Read(filepath.Join("../../plugins", file))
		if err != nil {
			t.Fatal(err)
		}
		got, _, _ := abi.CustomSection(bundled.Wasm, abi.ManifestSection)
		if !bytes.Equal(got, want) {
			t.Errorf("plugins/%s embeds a different manifest from examples/%s/alter.json; run scripts/build-plugins.sh", file, example)
		}
		rebuilt, err := plugin.Read(filepath.Join(fresh, file))
		if err != nil {
			t.Fatal(err)
		}
		if a, b := strings.Join(bundled.Interface.ExportNames(), ","), strings.Join(rebuilt.Interface.ExportNames(), ","); a != b {
			t.Errorf("plugins/%s exports %s, but a fresh build exports %s; run scripts/build-plugins.sh", file, a, b)
		}
	}
}
