package host_test

// Benchmarks of the plugin host against native Go doing the same work.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./host/   (or scripts/bench.sh)
//
// Benchmarks named .../native and .../wasm form a pair: the same tool, the
// same input, written in Go and run in-process, or served by a plugin.
// Every benchmark that runs a plugin runs it under both engines, named
// first: Name/engine=extism/... (the Extism Go SDK, the reference) and
// Name/engine=native/... (alterhost's own kernel); the native baseline
// is measured again beside each, in the same run. A .../wasm benchmark
// without a .../native sibling pairs with the nearest native one above it
// (AlterRequestTool/engine=native/c/wasm with
// AlterRequestTool/engine=native/native).
// The example plugins are built once per process, lazily, the first time a
// benchmark needs them, so plain `go test` does none of this work.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store/sqlite"
)

// ---- Native implementations ------------------------------------------

// wcResult is word_count's output, fields in the C plugin's order.
type wcResult struct {
	Words uint64 `json:"words"`
	Chars uint64 `json:"chars"`
	Lines uint64 `json:"lines"`
}

// countText follows examples/c/text/text.c: words are runs of non-white-
// space (Unicode White_Space, which is unicode.IsSpace); chars are code
// points, an invalid byte counting as one U+FFFD as in a Go range loop;
// lines end at "\n" or at the end of a non-empty text.
func countText(s string) wcResult {
	var r wcResult
	inWord := false
	for _, c := range s {
		r.Chars++
		if c == '\n' {
			r.Lines++
		}
		if unicode.IsSpace(c) {
			inWord = false
		} else if !inWord {
			inWord = true
			r.Words++
		}
	}
	if len(s) > 0 && s[len(s)-1] != '\n' {
		r.Lines++
	}
	return r
}

// wordCount returns word_count's JSON output for text, byte for byte as
// the C plugin writes it.
func wordCount(text string) string {
	r := countText(text)
	b := make([]byte, 0, 64)
	b = append(b, `{"words":`...)
	b = strconv.AppendUint(b, r.Words, 10)
	b = append(b, `,"chars":`...)
	b = strconv.AppendUint(b, r.Chars, 10)
	b = append(b, `,"lines":`...)
	b = strconv.AppendUint(b, r.Lines, 10)
	b = append(b, '}')
	return string(b)
}

// wordCountTool is the whole native tool: JSON arguments in, JSON out, as
// the plugin's export sees it.
func wordCountTool(args []byte) ([]byte, error) {
	var in struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(args, &in); err != nil {
		return nil, err
	}
	if in.Text == nil {
		return nil, errors.New(`missing string argument "text"`)
	}
	return []byte(wordCount(*in.Text)), nil
}

// nowResult is the web plugin's now output.
type nowResult struct {
	Unix    int64  `json:"unix"`
	RFC3339 string `json:"rfc3339"`
}

func nowTool() ([]byte, error) {
	t := time.Now().UTC()
	return json.Marshal(nowResult{Unix: t.Unix(), RFC3339: t.Format(time.RFC3339)})
}

// ---- Inputs -------------------------------------------------------------

// textOf repeats a line of mixed ASCII, multi-byte text and white space
// until the text is about n bytes.
func textOf(n int) string {
	const line = "The quick brown fox\u00a0jumps over the lazy dog — naïve café, 東京\tok.\n"
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(line)
	}
	return b.String()
}

func argsOf(text string) []byte {
	b, err := json.Marshal(map[string]string{"text": text})
	if err != nil {
		panic(err)
	}
	return b
}

var sizes = []struct {
	name string
	args []byte
	text string
}{
	{"small", argsOf(textOf(100)), textOf(100)},
	{"large", argsOf(textOf(64 << 10)), textOf(64 << 10)},
}

// edgeArgs are checked against the plugin before any timing, beside the
// benchmark inputs: native and wasm must agree on all of them.
var edgeArgs = []string{
	`{"text":""}`,
	`{"text":"\n"}`,
	`{"text":"a\n\nb"}`,
	`{"text":"  two  words  "}`,
	`{"text":"x\u00a0y\u2003z\u3000w\u0085v"}`,
	`{"text":"lone \ud800 surrogate \udc00 and pair \ud83d\ude00"}`,
	`{"text":"tab\tsep\u000bvt\ffeed\rcr"}`,
}

// ---- Fixture ------------------------------------------------------------

// benchEngine is one of the engines the wasm benchmarks run under.
type benchEngine struct {
	// name is the engine's --engine name, and the sub-benchmark's
	// "engine=NAME".
	name string
	new  func(cacheDir string) (engine.Engine, error)
}

var engines = []benchEngine{
	{"extism", func(dir string) (engine.Engine, error) {
		return engine.NewExtism(engine.ExtismOptions{CacheDir: dir})
	}},
	{"native", func(dir string) (engine.Engine, error) {
		return engine.NewNative(engine.NativeOptions{CacheDir: dir})
	}},
}

// eachEngine runs bench once per engine, as sub-benchmark engine=NAME.
func eachEngine(b *testing.B, bench func(b *testing.B, e benchEngine)) {
	for _, e := range engines {
		b.Run("engine="+e.name, func(b *testing.B) { bench(b, e) })
	}
}

// fixture is built once per process and engine by the first benchmark
// that needs it.
type fixture struct {
	dir    string // built plugins: text.wasm, web.wasm, sandbox.wasm
	specs  map[string]*plugin.Spec
	engine benchEngine

	// Engine level: plugins loaded straight on an engine.
	eng     engine.Engine
	plugins map[string]*plugin.Plugin

	// MCP level, built on first use.
	srvOnce sync.Once
	srv     *host.Server
	srvErr  error
}

var discard = slog.New(slog.DiscardHandler)

var (
	fixMu    sync.Mutex
	fixtures = map[string]*fixture{} // by engine name
	cleanups []func()
	cleanMu  sync.Mutex
)

func atExit(f func()) {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	cleanups = append(cleanups, f)
}

// TestMain only cleans up what the benchmarks built; it does no work of
// its own, so plain `go test` stays fast.
func TestMain(m *testing.M) {
	code := m.Run()
	cleanMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanMu.Unlock()
	os.Exit(code)
}

var (
	buildOnce sync.Once
	builtDir  string
	buildSkip string
	buildErr  error
)

// buildPlugins builds the example plugins with scripts/build-plugins.sh,
// once per process, and returns their folder. It skips when clang or
// wasm-ld is missing.
func buildPlugins(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		for _, tool := range []string{"clang", "wasm-ld"} {
			if _, err := exec.LookPath(tool); err != nil {
				buildSkip = tool + " not found: the C example plugin cannot be built; run scripts/setup.sh to install clang and lld"
				return
			}
		}
		dir, err := os.MkdirTemp("", "alterhost-plugins-")
		if err != nil {
			buildErr = err
			return
		}
		atExit(func() { os.RemoveAll(dir) })
		cmd := exec.Command("bash", filepath.Join("..", "scripts", "build-plugins.sh"), dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("scripts/build-plugins.sh: %v\n%s", err, out)
			return
		}
		builtDir = dir
	})
	if buildSkip != "" {
		tb.Skip(buildSkip)
	}
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return builtDir
}

// getFixture loads the built example plugins on e, once per engine.
func getFixture(b *testing.B, e benchEngine) *fixture {
	b.Helper()
	dir := buildPlugins(b)
	fixMu.Lock()
	defer fixMu.Unlock()
	if f := fixtures[e.name]; f != nil {
		return f
	}
	f := &fixture{dir: dir, engine: e, specs: map[string]*plugin.Spec{}, plugins: map[string]*plugin.Plugin{}}
	for _, name := range []string{"text", "web"} {
		spec, err := plugin.Read(filepath.Join(dir, name+".wasm"))
		if err != nil {
			b.Fatal(err)
		}
		f.specs[name] = spec
	}
	var err error
	if f.eng, err = e.new(""); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	eng := f.eng
	atExit(func() { eng.Close(ctx) })
	h := &plugin.Host{Engine: f.eng, Outbound: egress.New(egress.Options{}), Logger: discard}
	for name, spec := range f.specs {
		p, err := h.Load(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		atExit(func() { p.Close(ctx) })
		f.plugins[name] = p
	}
	fixtures[e.name] = f
	return f
}

// server returns host.New over the built plugins folder.
func (f *fixture) server(b *testing.B) *host.Server {
	b.Helper()
	f.srvOnce.Do(func() {
		data, err := os.MkdirTemp("", "alterhost-bench-data-")
		if err != nil {
			f.srvErr = err
			return
		}
		atExit(func() { os.RemoveAll(data) })
		f.srv, f.srvErr = host.New(context.Background(), host.Config{PluginsDir: f.dir, DataDir: data,
			BaseURL: "http://127.0.0.1:1", Version: "bench", Engine: f.engine.name})
		if f.srvErr == nil {
			srv := f.srv
			atExit(func() { srv.Close(context.Background()) })
		}
	})
	if f.srvErr != nil {
		b.Fatal(f.srvErr)
	}
	if len(f.srv.Catalog().Plugins) != 3 {
		b.Fatalf("host.New loaded %d plugins from %s, want 3", len(f.srv.Catalog().Plugins), f.dir)
	}
	return f.srv
}

func (f *fixture) tool(b *testing.B, pluginName, toolName string) (*plugin.Plugin, *abi.Tool) {
	b.Helper()
	p := f.plugins[pluginName]
	for i := range p.Manifest.Tools {
		if t := &p.Manifest.Tools[i]; t.Name == toolName {
			return p, t
		}
	}
	b.Fatalf("plugin %s has no tool %s", pluginName, toolName)
	return nil, nil
}

// ---- 1. Engine level: one call ------------------------------------------

// checkWarm fails the benchmark if the timed loop made a new instance: a
// warm call must neither compile nor instantiate.
func checkWarm(b *testing.B, p *plugin.Plugin, before int64) {
	b.Helper()
	if after := p.Instantiations(); after != before {
		b.Fatalf("warm calls instantiated %d new instances; want none", after-before)
	}
}

func BenchmarkWordCount(b *testing.B) { eachEngine(b, benchWordCount) }

func benchWordCount(b *testing.B, e benchEngine) {
	f := getFixture(b, e)
	p, tool := f.tool(b, "text", "word_count")
	ctx := context.Background()

	// Native and wasm must agree, byte for byte, before anything is timed.
	check := [][]byte{}
	for _, a := range edgeArgs {
		check = append(check, []byte(a))
	}
	for _, s := range sizes {
		check = append(check, s.args)
	}
	for _, args := range check {
		want, err := wordCountTool(args)
		if err != nil {
			b.Fatalf("native word_count(%.60s): %v", args, err)
		}
		got, err := p.Call(ctx, tool, args)
		if err != nil {
			b.Fatalf("wasm word_count(%.60s): %v", args, err)
		}
		if !bytes.Equal(got, want) {
			b.Fatalf("word_count(%.60s): wasm %s, native %s", args, got, want)
		}
	}

	for _, s := range sizes {
		b.Run(s.name+"/native", func(b *testing.B) {
			b.SetBytes(int64(len(s.args)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wordCountTool(s.args); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/wasm", func(b *testing.B) {
			b.SetBytes(int64(len(s.args)))
			b.ReportAllocs()
			before := p.Instantiations()
			for b.Loop() {
				if _, err := p.Call(ctx, tool, s.args); err != nil {
					b.Fatal(err)
				}
			}
			checkWarm(b, p, before)
		})
	}
}

// BenchmarkNow shows the cost of a Go guest (the Go runtime inside the
// module) on a tool that does almost nothing.
func BenchmarkNow(b *testing.B) { eachEngine(b, benchNow) }

func benchNow(b *testing.B, e benchEngine) {
	f := getFixture(b, e)
	p, tool := f.tool(b, "web", "now")
	ctx := context.Background()
	args := []byte(`{}`)

	native, err := nowTool()
	if err != nil {
		b.Fatal(err)
	}
	wasm, err := p.Call(ctx, tool, args)
	if err != nil {
		b.Fatal(err)
	}
	var n, w nowResult
	if err := json.Unmarshal(native, &n); err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(wasm, &w); err != nil {
		b.Fatalf("wasm now returned %s: %v", wasm, err)
	}
	if d := w.Unix - n.Unix; d < -5 || d > 5 || len(w.RFC3339) != len(n.RFC3339) {
		b.Fatalf("now: wasm %s, native %s", wasm, native)
	}

	b.Run("native", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := nowTool(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wasm", func(b *testing.B) {
		b.ReportAllocs()
		before := p.Instantiations()
		for b.Loop() {
			if _, err := p.Call(ctx, tool, args); err != nil {
				b.Fatal(err)
			}
		}
		checkWarm(b, p, before)
	})
}

// ---- 2. MCP level: one tools/call from a go-sdk client ------------------

// nativeMCPServer offers word_count written in Go, with the plugin's own
// schemas, through the SDK's typed AddTool (which validates the arguments
// and the structured output, as the host does for the plugin).
func nativeMCPServer(b *testing.B, f *fixture) *mcp.Server {
	b.Helper()
	_, t := f.tool(b, "text", "word_count")
	s := mcp.NewServer(&mcp.Implementation{Name: "native", Version: "bench"}, &mcp.ServerOptions{Logger: discard})
	type args struct {
		Text string `json:"text"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: t.Name, Description: t.Description, InputSchema: t.InputSchema, OutputSchema: t.OutputSchema},
		func(_ context.Context, _ *mcp.CallToolRequest, in args) (*mcp.CallToolResult, wcResult, error) {
			return nil, countText(in.Text), nil
		})
	return s
}

func connectInMemory(b *testing.B, s *mcp.Server) *mcp.ClientSession {
	b.Helper()
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := s.Connect(ctx, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "bench"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cs.Close(); ss.Wait() })
	return cs
}

func connectHTTP(b *testing.B, url string) *mcp.ClientSession {
	b.Helper()
	ts := &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true}
	// 2025-11-25, with sessions, on both sides: the SDK's client would
	// speak 2026-07-28, which alterhost serves statelessly, a different
	// and dearer path than the plain handler of the native side.
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "bench"}, nil).Connect(context.Background(), ts,
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cs.Close() })
	return cs
}

// callText calls word_count and returns the result's text content.
func callText(cs *mcp.ClientSession, text string) (string, error) {
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{
		Name: "word_count", Arguments: map[string]any{"text": text}})
	if err != nil {
		return "", err
	}
	if res.IsError || len(res.Content) != 1 {
		return "", fmt.Errorf("tool failed: %+v", res.Content)
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		return "", fmt.Errorf("content is %T, not text", res.Content[0])
	}
	return tc.Text, nil
}

// benchMCP runs the native/wasm pair of word_count calls over two sessions.
func benchMCP(b *testing.B, f *fixture, native, wasm *mcp.ClientSession) {
	for _, s := range sizes {
		// The SDK's typed handler re-encodes the structured result, so the
		// native text has its keys in another order: compare values.
		want := countText(s.text)
		for _, side := range []struct {
			name string
			cs   *mcp.ClientSession
		}{{"native", native}, {"wasm", wasm}} {
			text, err := callText(side.cs, s.text)
			var got wcResult
			if err == nil {
				err = json.Unmarshal([]byte(text), &got)
			}
			if err != nil || got != want {
				b.Fatalf("%s word_count over MCP: %q, %v; want %+v", side.name, text, err, want)
			}
		}
		for _, side := range []struct {
			name string
			cs   *mcp.ClientSession
		}{{"native", native}, {"wasm", wasm}} {
			b.Run(s.name+"/"+side.name, func(b *testing.B) {
				b.ReportAllocs()
				p := f.srv.Catalog().Tools[slices.IndexFunc(f.srv.Catalog().Tools,
					func(t plugin.Binding) bool { return t.Tool.Name == "word_count" })].Plugin
				before := p.Instantiations()
				for b.Loop() {
					if _, err := callText(side.cs, s.text); err != nil {
						b.Fatal(err)
					}
				}
				if side.name == "wasm" {
					checkWarm(b, p, before)
				}
			})
		}
	}
}

func BenchmarkMCP(b *testing.B) { eachEngine(b, benchMCPLevel) }

func benchMCPLevel(b *testing.B, e benchEngine) {
	f := getFixture(b, e)
	srv := f.server(b)
	if !slices.ContainsFunc(srv.Catalog().Tools, func(t plugin.Binding) bool { return t.Tool.Name == "word_count" }) {
		b.Fatal("the host serves no word_count tool")
	}
	native := nativeMCPServer(b, f)

	b.Run("inmemory", func(b *testing.B) {
		benchMCP(b, f, connectInMemory(b, native), connectInMemory(b, srv.MCP))
	})
	b.Run("http", func(b *testing.B) {
		// Both over loopback streamable HTTP; the host's side goes through
		// its full Handler (router, cross-origin and DNS-rebinding checks).
		nh := httptest.NewServer(mcp.NewStreamableHTTPHandler(
			func(*http.Request) *mcp.Server { return native }, &mcp.StreamableHTTPOptions{Logger: discard}))
		defer nh.Close()
		wh := httptest.NewServer(srv.Handler())
		defer wh.Close()
		benchMCP(b, f, connectHTTP(b, nh.URL), connectHTTP(b, wh.URL+"/mcp"))
	})
}

// ---- 2b. alter_request through the full path ----------------------------

const (
	toolSubject = "alice"
	// toolToken is as long as a GitHub OAuth token (gho_ + 36).
	toolToken = "gho_0123456789abcdefghijABCDEFGHIJ012345"
	// sandboxHost is the host the sandbox plugins call; the egress client
	// sends it to the loopback upstream instead.
	sandboxHost = "sandbox.alterhost.test"
	// whoamiBody is the upstream's answer, spaced so that compacting it is
	// real work, as the plugins do.
	whoamiBody = `{"authenticated": true, "token_seen": true, "scopes": ["read"], "account": "sandbox-user"}`
)

// sandboxProvider is the vault's view of the sandbox provider: its
// credentials may go to sandboxHost; refresh is never needed.
type sandboxProvider struct{}

func (sandboxProvider) Name() string                { return "sandbox" }
func (sandboxProvider) APIHosts() []abi.HostPattern { return []abi.HostPattern{sandboxHost} }
func (sandboxProvider) Refresh(context.Context, string) (vault.Token, error) {
	return vault.Token{}, errors.New("the benchmark's grant does not expire")
}

type sandboxProviders struct{}

func (sandboxProviders) Provider(name string) (vault.Provider, bool) {
	return sandboxProvider{}, name == "sandbox"
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// whoamiNative is the sandbox plugins' whoami written in Go: the same
// argument check, GET with the bearer token, status check and JSON
// compaction.
func whoamiNative(ctx context.Context, client *http.Client, url string, args []byte) ([]byte, error) {
	var in struct{}
	if err := json.Unmarshal(args, &in); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+toolToken)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("the sandbox API answered %d", resp.StatusCode)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, body); err != nil || !bytes.HasPrefix(out.Bytes(), []byte("{")) {
		return nil, fmt.Errorf("the sandbox API answered %d with something that is not a JSON object", resp.StatusCode)
	}
	return out.Bytes(), nil
}

var (
	cSandboxOnce sync.Once
	cSandbox     *plugin.Spec
	cSandboxErr  error
)

// cSandboxSpec builds examples/c/sandbox once per process, as
// scripts/build-plugins.sh builds the C plugins, with its manifest beside
// it.
func cSandboxSpec(b *testing.B) *plugin.Spec {
	b.Helper()
	buildPlugins(b) // skips without clang and wasm-ld
	cSandboxOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alterhost-csandbox-")
		if err != nil {
			cSandboxErr = err
			return
		}
		atExit(func() { os.RemoveAll(dir) })
		src := filepath.Join("..", "examples", "c", "sandbox")
		cmd := exec.Command("clang", "--target=wasm32", "-nostdlib", "-O2", "-I", filepath.Join("..", "abi", "c"),
			"-Wl,--no-entry", "-o", filepath.Join(dir, "sandbox.wasm"), filepath.Join(src, "sandbox.c"))
		if out, err := cmd.CombinedOutput(); err != nil {
			cSandboxErr = fmt.Errorf("building examples/c/sandbox: %v\n%s", err, out)
			return
		}
		manifest, err := os.ReadFile(filepath.Join(src, "alter.json"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "sandbox.alter.json"), manifest, 0o644)
		}
		if err != nil {
			cSandboxErr = err
			return
		}
		cSandbox, cSandboxErr = plugin.Read(filepath.Join(dir, "sandbox.wasm"))
	})
	if cSandboxErr != nil {
		b.Fatal(cSandboxErr)
	}
	return cSandbox
}

// BenchmarkAlterRequestTool is one tool call whose guest makes one
// alter_request, through the full path: plugin.Plugin.Call, the guest
// (the sandbox example's whoami, in C and in Go), the host function,
// policy, the vault (SQLite in a temporary folder, the grant cached after
// the first call, as in service), the egress client with its audit writer,
// and an HTTP upstream on 127.0.0.1. The baseline (.../native) is Go doing
// what whoami does with a plain http.Client and the same bearer token. The
// egress client reaches the upstream through a RoundTripper that rewrites
// the sandbox host to the upstream's address (one request clone per
// call, counted against wasm).
func BenchmarkAlterRequestTool(b *testing.B) {
	buildPlugins(b)
	var seen atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+toolToken || r.URL.Path != "/api/whoami" {
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		seen.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, whoamiBody)
	}))
	defer up.Close()
	upHost := strings.TrimPrefix(up.URL, "http://")

	// The vault, its store and audit trail, with alice's grant saved.
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), vault.DatabaseFile))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	keys, err := seal.New(map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)}, "k1")
	if err != nil {
		b.Fatal(err)
	}
	v := vault.New(st, keys, sandboxProviders{}, nil)
	if _, err := v.Save(ctx, toolSubject, "sandbox", vault.Token{AccessToken: toolToken, RefreshToken: "r",
		Scopes: []string{"read", "write"}, Expiry: time.Now().Add(24 * time.Hour)}); err != nil {
		b.Fatal(err)
	}
	auditor := vault.NewAuditor(st, nil)
	defer auditor.Close()
	out := egress.New(egress.Options{Providers: sandboxProviders{}, Credentials: v, Audit: auditor, AllowPrivate: true,
		Transport: func(base http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.URL.Host != sandboxHost {
					return nil, fmt.Errorf("the benchmark serves only %s, not %s", sandboxHost, r.URL.Host)
				}
				r = r.Clone(r.Context())
				r.URL.Scheme, r.URL.Host, r.Host = "http", upHost, upHost
				return base.RoundTrip(r)
			})
		}})
	callCtx := vault.WithIdentity(ctx, vault.Identity{Subject: toolSubject, Agent: "bench"})

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	target := up.URL + "/api/whoami"
	args := []byte(`{}`)
	want, err := whoamiNative(callCtx, client, target, args)
	if err != nil {
		b.Fatal(err)
	}

	guests := []struct {
		name string
		spec func(*testing.B) *plugin.Spec
	}{
		{"c", cSandboxSpec},
		{"go", func(b *testing.B) *plugin.Spec {
			spec, err := plugin.Read(filepath.Join(buildPlugins(b), "sandbox.wasm"))
			if err != nil {
				b.Fatal(err)
			}
			return spec
		}},
	}
	eachEngine(b, func(b *testing.B, e benchEngine) {
		eng, err := e.new("")
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close(ctx)
		h := &plugin.Host{Engine: eng, Outbound: out, Logger: discard}
		b.Run("native", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := whoamiNative(callCtx, client, target, args); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, g := range guests {
			p, err := h.Load(ctx, g.spec(b))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			var tool *abi.Tool
			for i := range p.Manifest.Tools {
				if p.Manifest.Tools[i].Name == "whoami" {
					tool = &p.Manifest.Tools[i]
				}
			}
			if tool == nil {
				b.Fatalf("the %s sandbox plugin has no whoami tool", g.name)
			}
			// The same answer as native, and the upstream saw the token,
			// before anything is timed.
			before := seen.Load()
			got, err := p.Call(callCtx, tool, args)
			if err != nil || !bytes.Equal(got, want) {
				b.Fatalf("%s whoami through the host: %s, %v; native %s", g.name, got, err, want)
			}
			if seen.Load() != before+1 {
				b.Fatalf("%s whoami: the upstream did not see the bearer token", g.name)
			}
			b.Run(g.name+"/wasm", func(b *testing.B) {
				b.ReportAllocs()
				before := p.Instantiations()
				for b.Loop() {
					if _, err := p.Call(callCtx, tool, args); err != nil {
						b.Fatal(err)
					}
				}
				checkWarm(b, p, before)
			})
		}
	})
}

// ---- 3. Compile and instantiate -----------------------------------------

func engineConfig(spec *plugin.Spec) engine.Config {
	lim := spec.Manifest.Limits
	return engine.Config{
		MemoryPages:    lim.MemoryPages(),
		Timeout:        lim.Timeout(),
		MaxOutputBytes: lim.MaxOutputBytes,
		Request:        func(context.Context, []byte) []byte { return nil },
	}
}

// compileOnce compiles wasm on a new engine over cacheDir and closes both.
func compileOnce(b *testing.B, be benchEngine, cacheDir string, spec *plugin.Spec) {
	ctx := context.Background()
	e, err := be.new(cacheDir)
	if err != nil {
		b.Fatal(err)
	}
	m, err := e.Compile(ctx, spec.Wasm, engineConfig(spec))
	if err != nil {
		b.Fatal(err)
	}
	m.Close(ctx)
	e.Close(ctx)
}

// BenchmarkCompile: cold is a new engine over a new, empty cache folder;
// cached is a new engine (so nothing is served from memory) over a folder
// already holding the machine code.
func BenchmarkCompile(b *testing.B) { eachEngine(b, benchCompile) }

func benchCompile(b *testing.B, e benchEngine) {
	f := getFixture(b, e)
	for _, name := range []string{"text", "web"} {
		spec := f.specs[name]
		b.Run("cold/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(spec.Wasm)))
			parent := b.TempDir()
			i := 0
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(parent, strconv.Itoa(i))
				i++
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				compileOnce(b, e, dir, spec)
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
		})
		b.Run("cached/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(spec.Wasm)))
			dir := b.TempDir()
			compileOnce(b, e, dir, spec) // warm the folder
			for b.Loop() {
				compileOnce(b, e, dir, spec)
			}
		})
	}
}

// BenchmarkInstantiate: a new instance of an already compiled module, and
// the same followed by its first call (a pool miss): a Go guest runs its
// runtime's initialisation on that first call.
func BenchmarkInstantiate(b *testing.B) { eachEngine(b, benchInstantiate) }

func benchInstantiate(b *testing.B, e benchEngine) {
	f := getFixture(b, e)
	ctx := context.Background()
	for _, c := range []struct{ plugin, export, args string }{
		{"text", "word_count", `{"text":"hello world"}`},
		{"web", "now", `{}`},
	} {
		spec := f.specs[c.plugin]
		m, err := f.eng.Compile(ctx, spec.Wasm, engineConfig(spec))
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close(ctx)
		b.Run(c.plugin, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				inst, err := m.Instantiate(ctx)
				if err != nil {
					b.Fatal(err)
				}
				inst.Close(ctx)
			}
		})
		b.Run(c.plugin+"/first_call", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				inst, err := m.Instantiate(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := inst.Call(ctx, c.export, []byte(c.args)); err != nil {
					b.Fatal(err)
				}
				inst.Close(ctx)
			}
		})
	}
}

// ---- A test that needs no plugin ------------------------------------------

// TestNativeWordCount pins the native reference to the C plugin's rules.
func TestNativeWordCount(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `{"words":0,"chars":0,"lines":0}`},
		{"\n", `{"words":0,"chars":1,"lines":1}`},
		{"a\n\nb", `{"words":2,"chars":4,"lines":3}`},
		{"x\u00a0y\u3000z", `{"words":3,"chars":5,"lines":1}`},
		{"caf\xc3\xa9 \xff", `{"words":2,"chars":6,"lines":1}`},
	} {
		if got := wordCount(c.in); got != c.want {
			t.Errorf("wordCount(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}
