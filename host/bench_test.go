package host_test

// Benchmarks of the plugin host against native Go doing the same work.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./host/   (or scripts/bench.sh)
//
// Benchmarks named .../native and .../wasm form a pair: the same tool, the
// same input, written in Go and run in-process, or served by a plugin.
// The example plugins are built once per process, lazily, the first time a
// benchmark needs them, so plain `go test` does none of this work.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"testing"
	"time"
	"unicode"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/vault/egress"
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

// fixture is built once per process by the first benchmark that needs it.
type fixture struct {
	dir   string // built plugins: text.wasm, web.wasm
	specs map[string]*plugin.Spec

	// Engine level: plugins loaded straight on an engine.
	engine  engine.Engine
	plugins map[string]*plugin.Plugin

	// MCP level, built on first use.
	srvOnce sync.Once
	srv     *host.Server
	srvErr  error
}

var discard = slog.New(slog.DiscardHandler)

var (
	fixOnce  sync.Once
	fix      *fixture
	fixErr   error
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

// getFixture loads the built example plugins once.
func getFixture(b *testing.B) *fixture {
	b.Helper()
	dir := buildPlugins(b)
	fixOnce.Do(func() {
		var err error
		f := &fixture{dir: dir, specs: map[string]*plugin.Spec{}, plugins: map[string]*plugin.Plugin{}}
		for _, name := range []string{"text", "web"} {
			if f.specs[name], err = plugin.Read(filepath.Join(dir, name+".wasm")); err != nil {
				fixErr = err
				return
			}
		}
		if f.engine, err = engine.NewExtism(engine.ExtismOptions{}); err != nil {
			fixErr = err
			return
		}
		ctx := context.Background()
		atExit(func() { f.engine.Close(ctx) })
		h := &plugin.Host{Engine: f.engine, Outbound: egress.New(egress.Options{}), Logger: discard}
		for name, spec := range f.specs {
			p, err := h.Load(ctx, spec)
			if err != nil {
				fixErr = err
				return
			}
			atExit(func() { p.Close(ctx) })
			f.plugins[name] = p
		}
		fix = f
	})
	if fixErr != nil {
		b.Fatal(fixErr)
	}
	return fix
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
			BaseURL: "http://127.0.0.1:1", Version: "bench"})
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

func BenchmarkWordCount(b *testing.B) {
	f := getFixture(b)
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
func BenchmarkNow(b *testing.B) {
	f := getFixture(b)
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
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "bench"}, nil).Connect(context.Background(), ts, nil)
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

func BenchmarkMCP(b *testing.B) {
	f := getFixture(b)
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
func compileOnce(b *testing.B, cacheDir string, spec *plugin.Spec) {
	ctx := context.Background()
	e, err := engine.NewExtism(engine.ExtismOptions{CacheDir: cacheDir})
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
func BenchmarkCompile(b *testing.B) {
	f := getFixture(b)
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
				compileOnce(b, dir, spec)
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
		})
		b.Run("cached/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(spec.Wasm)))
			dir := b.TempDir()
			compileOnce(b, dir, spec) // warm the folder
			for b.Loop() {
				compileOnce(b, dir, spec)
			}
		})
	}
}

// BenchmarkInstantiate: a new instance of an already compiled module, and
// the same followed by its first call (a pool miss): a Go guest runs its
// runtime's initialisation on that first call.
func BenchmarkInstantiate(b *testing.B) {
	f := getFixture(b)
	ctx := context.Background()
	for _, c := range []struct{ plugin, export, args string }{
		{"text", "word_count", `{"text":"hello world"}`},
		{"web", "now", `{}`},
	} {
		spec := f.specs[c.plugin]
		m, err := f.engine.Compile(ctx, spec.Wasm, engineConfig(spec))
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
