package pluginbuild

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/tetratelabs/wazero"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/internal/sandboxtest"
)

// needASC skips a test when node or the pinned asc is missing, saying how
// to install them; on CI (CI=true) a missing toolchain fails instead.
func needASC(t *testing.T) {
	t.Helper()
	_, errNode := exec.LookPath("node")
	_, errASC := os.Stat(filepath.Join(root(t), "abi", "assemblyscript", "node_modules", "assemblyscript", "bin", "asc.js"))
	if errNode == nil && errASC == nil {
		return
	}
	msg := "the AssemblyScript toolchain is missing: run scripts/setup.sh (Node.js, and npm ci in abi/assemblyscript)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// built caches each plugin build for the whole test binary, so tests that
// share a plugin build it once, whichever runs first.
var built sync.Map // lang:dir -> *builtPlugin

type builtPlugin struct {
	once sync.Once
	wasm []byte
	err  error
}

// buildPlugin builds the plugin in dir (relative to the repository root)
// once and returns the plugin file's bytes.
func buildPlugin(t *testing.T, lang Lang, dir string) []byte {
	t.Helper()
	v, _ := built.LoadOrStore(string(lang)+":"+dir, &builtPlugin{})
	b := v.(*builtPlugin)
	b.once.Do(func() { b.wasm, b.err = buildFresh(root(t), lang, dir) })
	if b.err != nil {
		t.Fatalf("building %s: %v", dir, b.err)
	}
	return b.wasm
}

func buildFresh(r string, lang Lang, dir string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "alterhost-astest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "p.wasm")
	if err := Run(context.Background(), Build{Lang: lang, Dir: filepath.Join(r, dir), Out: out, Root: r}); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// TestAssemblyScriptExamples builds both AssemblyScript examples: each is a
// complete plugin (its alter.json embedded, every tool exported) that
// imports only the Extism kernel and alter_request, and the same sources
// build to the same bytes.
func TestAssemblyScriptExamples(t *testing.T) {
	needASC(t)
	t.Parallel()
	r := root(t)
	for _, dir := range []string{"examples/assemblyscript/sandbox", "examples/assemblyscript/github"} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			wasm := buildPlugin(t, AssemblyScript, dir)
			want, _ := os.ReadFile(filepath.Join(r, dir, "alter.json"))
			got, ok, err := abi.CustomSection(wasm, abi.ManifestSection)
			if err != nil || !ok || !bytes.Equal(got, want) {
				t.Fatalf("embedded manifest: ok=%v err=%v", ok, err)
			}
			m, err := abi.ParseManifest(dir, want)
			if err != nil {
				t.Fatal(err)
			}
			iface, err := abi.ReadInterface(wasm)
			if err != nil {
				t.Fatal(err)
			}
			for _, tool := range m.Tools {
				if f, ok := iface.Export(tool.Export); !ok || f.Type != abi.ToolExportType {
					t.Errorf("tool %s: export %q is %+v, %v", tool.Name, tool.Export, f, ok)
				}
			}
			for _, imp := range iface.Imports {
				if imp.Module != "extism:host/env" && (imp.Module != abi.HostModule || imp.Name != abi.RequestFunction) {
					t.Errorf("imports %s.%s", imp.Module, imp.Name)
				}
			}
			t.Logf("%s: %d bytes with its manifest", dir, len(wasm))
			if filepath.Base(dir) == "sandbox" {
				again, err := buildFresh(r, AssemblyScript, dir)
				if err != nil || !bytes.Equal(again, wasm) {
					t.Errorf("a second build differs (err %v)", err)
				}
			}
		})
	}
}

// TestAssemblyScriptToolchainErrors checks that a missing node, a missing
// or unpinned asc and a missing entry file each say what to do.
func TestAssemblyScriptToolchainErrors(t *testing.T) {
	r := root(t)
	ctx := context.Background()
	src := t.TempDir()
	manifest, _ := os.ReadFile(filepath.Join(r, "examples/assemblyscript/sandbox/alter.json"))
	os.WriteFile(filepath.Join(src, "alter.json"), manifest, 0o644)
	out := filepath.Join(t.TempDir(), "p.wasm")
	var te *ToolchainError

	if _, err := exec.LookPath("node"); err == nil {
		// A source tree whose binding was never installed.
		fake := t.TempDir()
		err := Run(ctx, Build{Lang: AssemblyScript, Dir: src, Out: out, Root: fake})
		if !errors.As(err, &te) || !strings.Contains(te.Tool, "asc") || !strings.Contains(err.Error(), "npm ci in abi/assemblyscript") {
			t.Errorf("without node_modules: %v", err)
		}
		// One whose installed compiler is not the pinned one.
		pkg := filepath.Join(fake, "abi", "assemblyscript")
		os.MkdirAll(filepath.Join(pkg, "node_modules", "assemblyscript", "bin"), 0o755)
		os.WriteFile(filepath.Join(pkg, "node_modules", "assemblyscript", "bin", "asc.js"), nil, 0o644)
		os.WriteFile(filepath.Join(pkg, "node_modules", "assemblyscript", "package.json"), []byte(`{"version":"0.1.0"}`), 0o644)
		lock, _ := os.ReadFile(filepath.Join(r, "abi", "assemblyscript", "package-lock.json"))
		os.WriteFile(filepath.Join(pkg, "package-lock.json"), lock, 0o644)
		err = Run(ctx, Build{Lang: AssemblyScript, Dir: src, Out: out, Root: fake})
		if !errors.As(err, &te) || !strings.Contains(te.Tool, "found 0.1.0") {
			t.Errorf("with an unpinned asc: %v", err)
		}
		if _, err := os.Stat(filepath.Join(r, "abi", "assemblyscript", "node_modules", "assemblyscript")); err == nil {
			err := Run(ctx, Build{Lang: AssemblyScript, Dir: src, Out: out, Root: r})
			if err == nil || !strings.Contains(err.Error(), "entry file is index.ts") {
				t.Errorf("without index.ts: %v", err)
			}
		}
	}
	t.Setenv("PATH", t.TempDir())
	err := Run(ctx, Build{Lang: AssemblyScript, Dir: src, Out: out, Root: r})
	if !errors.As(err, &te) || te.Tool != "node" || !strings.Contains(te.Install, "apt-get install nodejs npm") {
		t.Errorf("without node: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a failed build left a plugin behind")
	}
}

// fakeHost stands in for alterhost's alter_request: it records each
// request and answers with reply, or with no block at all.
type fakeHost struct {
	mu      sync.Mutex
	reply   []byte
	noReply bool
	got     [][]byte
}

func (f *fakeHost) answer(reply string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply, f.noReply, f.got = []byte(reply), false, nil
}

func (f *fakeHost) silence() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply, f.noReply, f.got = nil, true, nil
}

func (f *fakeHost) requests() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got
}

func (f *fakeHost) function() extism.HostFunction {
	h := extism.NewHostFunctionWithStack(abi.RequestFunction,
		func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
			req, err := p.ReadBytes(stack[0])
			if err == nil {
				_ = p.Free(stack[0])
			}
			f.mu.Lock()
			f.got = append(f.got, req)
			reply, none := f.reply, f.noReply
			f.mu.Unlock()
			if none {
				stack[0] = 0
				return
			}
			off, err := p.WriteBytes(reply)
			if err != nil {
				panic(err)
			}
			stack[0] = off
		},
		[]extism.ValueType{extism.ValueTypePTR}, []extism.ValueType{extism.ValueTypePTR})
	h.SetNamespace(abi.HostModule)
	return h
}

// guest is one plugin instance on the Extism SDK, with a fake host.
type guest struct {
	p    *extism.Plugin
	host *fakeHost
	mu   sync.Mutex
	logs []string
}

// newGuest instantiates wasm with settings and 64 MiB of memory, the host's
// default limit, compiled or, with interpret, interpreted.
func newGuest(t *testing.T, wasm []byte, settings map[string]string, interpret bool) *guest {
	t.Helper()
	ctx := context.Background()
	g := &guest{host: &fakeHost{}}
	rc := wazero.NewRuntimeConfig()
	if interpret {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	p, err := extism.NewPlugin(ctx, extism.Manifest{
		Wasm:   []extism.Wasm{extism.WasmData{Data: wasm}},
		Memory: &extism.ManifestMemory{MaxPages: 1024},
		Config: settings,
	}, extism.PluginConfig{
		EnableWasi:    true,
		RuntimeConfig: rc,
		// Cryptographic randomness, as alterhost gives guests; wazero's
		// default source is deterministic.
		ModuleConfig: wazero.NewModuleConfig().WithRandSource(rand.Reader),
	}, []extism.HostFunction{g.host.function()})
	if err != nil {
		t.Fatal(err)
	}
	p.SetLogger(func(level extism.LogLevel, msg string) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.logs = append(g.logs, level.String()+" "+msg)
	})
	t.Cleanup(func() { p.Close(ctx) })
	g.p = p
	return g
}

// call runs export with input and returns its output, or its error text.
func (g *guest) call(t *testing.T, export string, input []byte) (out []byte, errText string) {
	t.Helper()
	rc, out, err := g.p.Call(export, input)
	if err != nil {
		return nil, err.Error()
	}
	if rc != 0 {
		t.Fatalf("%s returned %d without an error", export, rc)
	}
	return out, ""
}

// TestAssemblyScriptBinding runs the binding's test plugin
// (abi/assemblyscript/test) against a fake host: host replies, good and
// malformed, requests on the wire, JSON against Go's encoding/json,
// output, settings, logs, aborts and memory reuse.
func TestAssemblyScriptBinding(t *testing.T) {
	needASC(t)
	t.Parallel()
	wasm := buildPlugin(t, AssemblyScript, "abi/assemblyscript/test")
	extism.SetLogLevel(extism.LogLevelDebug)
	g := newGuest(t, wasm, map[string]string{"greeting": "héllo wörld"}, false)

	type described struct {
		Status      int               `json:"status"`
		Headers     map[string]string `json:"headers"`
		BodyBase64  string            `json:"body_base64"`
		ContentType string            `json:"content_type"`
		Error       *struct {
			Code          string   `json:"code"`
			Message       string   `json:"message"`
			ConnectURL    string   `json:"connect_url"`
			MissingScopes []string `json:"missing_scopes"`
			String        string   `json:"string"`
		} `json:"error"`
	}
	describe := func(t *testing.T, export string, input []byte) described {
		t.Helper()
		out, errText := g.call(t, export, input)
		var d described
		if errText != "" || json.Unmarshal(out, &d) != nil {
			t.Fatalf("%s(%q): %s %s", export, input, out, errText)
		}
		return d
	}

	t.Run("replies", func(t *testing.T) {
		h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Two": {"a", "b"}}
		for _, body := range [][]byte{[]byte("héllo ☃ 😀 <b>"), {0xff, 0xfe, 0, 'x'}, nil} {
			raw, _ := json.Marshal(abi.Reply{Response: abi.NewResponse(201, h, body)})
			d := describe(t, "reply", raw)
			if d.Error != nil || d.Status != 201 || d.Headers["x-two"] != "a, b" || d.ContentType != "text/plain; charset=utf-8" ||
				d.BodyBase64 != base64.StdEncoding.EncodeToString(body) {
				t.Errorf("%s read as %+v", raw, d)
			}
		}
		// Every code the host may send arrives as sent, with its fields.
		codes := []abi.Code{abi.CodeBadRequest, abi.CodeHostNotAllowed, abi.CodeTimeout, abi.CodeTooLarge,
			abi.CodeUpstreamUnreachable, abi.CodeInternal, abi.CodeGrantNotFound, abi.CodeScopeReauthRequired,
			abi.CodePolicyDenied, abi.CodeApprovalRequired}
		source, _ := os.ReadFile(filepath.Join(root(t), "abi/assemblyscript/assembly/request.ts"))
		for _, code := range codes {
			if !bytes.Contains(source, []byte(`"`+string(code)+`"`)) {
				t.Errorf("the binding's Code namespace lacks %q", code)
			}
			want := &abi.Error{Code: code, Message: "héllo: " + string(code), ConnectURL: "https://alter.example/connect/x?link=1",
				MissingScopes: []string{"repo", "user"}}
			raw, _ := json.Marshal(abi.Reply{Error: want})
			d := describe(t, "reply", raw)
			if d.Error == nil || d.Error.Code != string(code) || d.Error.Message != want.Message || d.Error.ConnectURL != want.ConnectURL ||
				strings.Join(d.Error.MissingScopes, ",") != "repo,user" || d.Error.String != want.Error() {
				t.Errorf("%s read as %+v", raw, d.Error)
			}
		}
	})

	t.Run("malformed replies", func(t *testing.T) {
		deep := strings.Repeat("[", 20000)
		for _, tc := range []struct{ reply, want string }{
			// Syntax errors are named in Go's words, as the Go binding names them.
			{``, "alter_request reply is not valid JSON: " + goSyntaxError(``)},
			{`{"status":200,`, "alter_request reply is not valid JSON: " + goSyntaxError(`{"status":200,`)},
			{`{"status":200}}`, "alter_request reply is not valid JSON: " + goSyntaxError(`{"status":200}}`)},
			{"{\"status\":200,\"body\":\"a\x01\"}", "alter_request reply is not valid JSON: " + goSyntaxError("{\"status\":200,\"body\":\"a\x01\"}")},
			{deep, "alter_request reply is not valid JSON: " + goSyntaxError(deep)},
			{`[1]`, `malformed: not a JSON object`},
			{`{}`, `alter_request reply has neither "status" nor "error"`},
			{`{"status":null,"error":null}`, `alter_request reply has neither "status" nor "error"`},
			{`{"status":200,"body":"","body_base64":""}`, `alter_request reply has both "body" and "body_base64"`},
			{`{"status":"200"}`, `"status" is not an HTTP status code`},
			{`{"status":200.5}`, `"status" is not an HTTP status code`},
			{`{"status":99999999999}`, `"status" is not an HTTP status code`},
			{`{"status":200,"headers":[]}`, `"headers" is not an object`},
			{`{"status":200,"headers":{"a":1}}`, `header "a" is not a string`},
			{`{"status":200,"body":5}`, `"body" is not a string`},
			{`{"error":"boom"}`, `"error" is not an object`},
			{`{"error":{"code":5}}`, `error "code" is not a string`},
			{`{"error":{"code":"timeout","missing_scopes":"repo"}}`, `"missing_scopes" is not a list`},
			{`{"error":{"code":"timeout","missing_scopes":[1]}}`, `"missing_scopes" has an item that is not a string`},
		} {
			d := describe(t, "reply", []byte(tc.reply))
			if d.Error == nil || d.Error.Code != "internal" || !strings.Contains(d.Error.Message, tc.want) {
				t.Errorf("%.40q read as %+v; want internal naming %q", tc.reply, d.Error, tc.want)
			}
		}
		// body_base64 decodes as Go's base64.StdEncoding decodes it, and
		// fails where it fails.
		for _, b64 := range []string{"", "QQ==", "QUI=", "QUJD", "QUJD\nRA==", "QUJDRA==\r\n", "QR==", "QUJDREVGR0hJ", "!!", "QQ", "QQ=",
			"QQ==x", "Q===", "=", "QUJ", "QUJDR", "QQ==\n\nQQ==", "QUJD RA==", "QUJDREVGR0hJ\xff", "QU=J", "QUJDREVGR0hJSktM\x00"} {
			raw, _ := json.Marshal(map[string]any{"status": 200, "body_base64": b64})
			d := describe(t, "reply", raw)
			want, err := base64.StdEncoding.DecodeString(b64)
			switch {
			case err != nil && (d.Error == nil || d.Error.Message != "alter_request reply has invalid body_base64: "+err.Error()):
				t.Errorf("body_base64 %q read as %+v; Go says %v", b64, d.Error, err)
			case err == nil && (d.Error != nil || d.BodyBase64 != base64.StdEncoding.EncodeToString(want)):
				t.Errorf("body_base64 %q read as %+v %q; Go decodes %q", b64, d.Error, d.BodyBase64, want)
			}
		}
		// An error without a code is still an error.
		if d := describe(t, "reply", []byte(`{"error":{"message":"m"}}`)); d.Error == nil || d.Error.Code != "internal" || d.Error.Message != "m" {
			t.Errorf("an error without a code read as %+v", d.Error)
		}
		g.host.silence()
		if d := describe(t, "do_request", []byte(`{"url":"https://api.example.com/"}`)); d.Error == nil ||
			d.Error.String != "internal: alter_request returned no reply" {
			t.Errorf("no reply read as %+v", d.Error)
		}
	})

	t.Run("requests", func(t *testing.T) {
		ok, _ := json.Marshal(abi.Reply{Response: abi.NewResponse(200, http.Header{}, []byte("fine"))})
		for _, tc := range []struct {
			spec     string
			method   string
			url      string
			body     []byte
			jsonBody bool
		}{
			{`{"method":"post","url":"https://api.example.com/v1/items?a=1","query":{"label":["bug","p1"],"q":["héllo wörld"]},` +
				`"headers":{"Accept":"application/json"},"body":"héllo <b> & \u2028"}`,
				"POST", "https://api.example.com/v1/items?a=1&label=bug&label=p1&q=h%C3%A9llo+w%C3%B6rld", []byte("héllo <b> & \u2028"), false},
			{`{"method":"PUT","url":"https://api.example.com/bin","body_bytes":[255,0,128,120]}`,
				"PUT", "https://api.example.com/bin", []byte{0xff, 0, 0x80, 'x'}, false},
			{`{"method":"","url":"https://api.example.com/"}`, "GET", "https://api.example.com/", nil, false},
			{`{"method":"POST","url":"https://api.example.com/j","json":{"x":"<&>","n":[1,2.5]}}`,
				"POST", "https://api.example.com/j", []byte(`{"x":"\u003c\u0026\u003e","n":[1,2.5]}`), true},
		} {
			g.host.answer(string(ok))
			d := describe(t, "do_request", []byte(tc.spec))
			got := g.host.requests()
			if d.Error != nil || d.Status != 200 || len(got) != 1 {
				t.Fatalf("%s: %+v, %d requests", tc.spec, d, len(got))
			}
			req, aerr := abi.ParseRequest(got[0], 1<<20)
			if aerr != nil {
				t.Fatalf("the host refused %s: %v", got[0], aerr)
			}
			if req.Method != tc.method || req.URL.String() != tc.url || !bytes.Equal(req.Body, tc.body) {
				t.Errorf("%s sent %s; the host read %s %s %q", tc.spec, got[0], req.Method, req.URL, req.Body)
			}
			if bytes.Contains(got[0], []byte(`"method"`)) != (tc.method != "GET") {
				t.Errorf("%s: method field in %s", tc.spec, got[0])
			}
			if tc.jsonBody && req.Header.Get("Content-Type") != "application/json" {
				t.Errorf("a JSON body went without its content type: %s", got[0])
			}
		}
	})

	t.Run("strings match encoding/json", func(t *testing.T) {
		var literals []string
		for _, s := range []string{"", "plain", "héllo ☃ 😀", "<b>&amp;</b>", "\u2028\u2029", "\x00\x01\x1f\x7f",
			"\b\f\n\r\t\"\\/", "\ufffd", "a\xffb", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\xe2\x82", "\U0010FFFF"} {
			lit, _ := json.Marshal(s)
			literals = append(literals, string(lit))
			// The same bytes raw inside a literal: Go reads invalid UTF-8 as U+FFFD.
			if !strings.ContainsAny(s, "\x00\x01\x1f\b\f\n\r\t\"\\") {
				literals = append(literals, `"`+s+`"`)
			}
		}
		literals = append(literals, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00\ud800"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`,
			`"\u00e9\u002F\u0000"`, `"\uD83D\uDE00 upper"`)
		for _, lit := range literals {
			var s string
			if err := json.Unmarshal([]byte(lit), &s); err != nil {
				t.Fatalf("%s: %v", lit, err)
			}
			want, _ := json.Marshal(s)
			if out, errText := g.call(t, "reencode", []byte(lit)); string(out) != string(want) {
				t.Errorf("%s re-encoded as %s (%s); Go writes %s", lit, out, errText, want)
			}
		}
	})

	t.Run("structure and numbers round-trip", func(t *testing.T) {
		in := " {\"a\" : [1, -0.5e10, 1E+2, true,false , null, {\"b\":\"c\"}, []], \"a\":2, \"z\":{}, \"é\":-0} "
		want := `{"a":[1,-0.5e10,1E+2,true,false,null,{"b":"c"},[]],"a":2,"z":{},"é":-0}`
		if out, errText := g.call(t, "reencode", []byte(in)); string(out) != want {
			t.Errorf("re-encoded as %s (%s); want %s", out, errText, want)
		}
		floats := []float64{0, 1, -1, 0.1, 1.5, 100, 1e20, 1e21, 1.2345678901234568e20, 1e-6, 1e-7, 1.5e-7, -2.5e-8,
			5e-324, 1.7976931348623157e308, 9007199254740993, 9.2e18, 9.3e18, 3.14159, 1234567.125, 123e-20}
		in2, _ := json.Marshal(floats)
		out, errText := g.call(t, "numbers", in2)
		if string(out) != string(in2) {
			t.Errorf("numbers formatted as\n%s (%s); Go writes\n%s", out, errText, in2)
		}
	})

	t.Run("syntax errors match encoding/json", func(t *testing.T) {
		for _, in := range []string{``, ` `, `{`, `[1,]`, `{"a" 1}`, `{"a":1,}`, `{"a":1 "b":2}`, `[1 2]`, `01`, `-`, `-x`,
			`1.`, `1.x`, `1e`, `1e+`, `tru`, `trux`, `nul`, `nulx`, `fals`, `"abc`, "\"a\x01\"", `"\x"`, `"\u12G4"`, `"\u12`, `"\`, `"abc\`, `{1:2}`,
			`]`, "\xc3\xa9", "\x80", "\xa0", "\xad", "\xff", `'`, `\`, `"a" "b"`, "\t\n x", "\x7f", "\x00", "\x0b",
			`{"a":}`, `[`, `{"a":[}`, strings.Repeat("[", 10001), strings.Repeat("[", 10000) + strings.Repeat("]", 10000)} {
			want := goSyntaxError(in)
			_, errText := g.call(t, "reencode", []byte(in))
			if errText != want {
				t.Errorf("%.30q: error %q; Go says %q", in, errText, want)
			}
		}
	})

	t.Run("parseFirst matches json.Decoder", func(t *testing.T) {
		for _, in := range []string{``, `  `, `{"b":1,"a":[2,{"d":1,"c":2}],"b":3} tail`, `[1,`, `-`, `1.`, `12x`, `"a"x`, `true false`,
			`tru`, ` 1e5 `, `{"a":1}{"b":2}`, `x`, `{"a":1 "b"}`, `"\ud800\u0041é"rest`} {
			dec := json.NewDecoder(strings.NewReader(in))
			dec.UseNumber()
			var v any
			err := dec.Decode(&v)
			out, errText := g.call(t, "first", []byte(in))
			if err != nil {
				if errText != err.Error() {
					t.Errorf("%q: error %q; json.Decoder says %q", in, errText, err)
				}
				continue
			}
			want, _ := json.Marshal(map[string]any{"value": v, "end": dec.InputOffset()})
			if string(out) != string(want) {
				t.Errorf("%q read as %s (%s); json.Decoder reads %s", in, out, errText, want)
			}
		}
	})

	t.Run("compact matches json.Compact", func(t *testing.T) {
		pretty, _ := json.MarshalIndent(map[string]any{"a": []any{1, "two  spaces", nil, true}, "é": map[string]any{"x": 1.5}}, "", "  ")
		for _, in := range []string{string(pretty), ` { "a" : "x  y\u00e9\n" , "b" : [ 1 , 2.50 , -0 ] } `, "\"a\xffb\"", `[]`,
			"\r\n\t[\r\n1\t]", `{"a":1} x`, `{"a":}`, ``, `[1,]`, "\"\t\""} {
			var buf bytes.Buffer
			err := json.Compact(&buf, []byte(in))
			out, errText := g.call(t, "compact_json", []byte(in))
			switch {
			case err == nil && (errText != "" || !bytes.Equal(out, buf.Bytes())):
				t.Errorf("%q compacted to %q (%s); Go gives %q", in, out, errText, buf.Bytes())
			case err != nil && errText != err.Error():
				t.Errorf("%q: error %q; Go says %q", in, errText, err)
			}
		}
	})

	t.Run("output is UTF-8 with its byte length", func(t *testing.T) {
		for in, want := range map[string]string{"héllo ☃ 😀 <b>": "héllo ☃ 😀 <b>", "a\xffb": "a\ufffdb", "": ""} {
			if out, errText := g.call(t, "echo_text", []byte(in)); string(out) != want {
				t.Errorf("echo %q: %q %s", in, out, errText)
			}
		}
		out, _ := g.call(t, "mcp", []byte("héllo"))
		if string(out) != `{"content":[{"type":"text","text":"héllo"}],"isError":true}` {
			t.Errorf("mcp: %s", out)
		}
		if _, errText := g.call(t, "fail_empty", nil); errText != "tool failed" {
			t.Errorf("an empty failure message: %q", errText)
		}
	})

	t.Run("settings", func(t *testing.T) {
		if out, errText := g.call(t, "get_setting", []byte("greeting")); string(out) != "héllo wörld" {
			t.Errorf("greeting: %q %s", out, errText)
		}
		for _, key := range []string{"missing", ""} {
			if _, errText := g.call(t, "get_setting", []byte(key)); errText != "no setting" {
				t.Errorf("setting %q: %q", key, errText)
			}
		}
	})

	t.Run("logs", func(t *testing.T) {
		g.mu.Lock()
		g.logs = nil
		g.mu.Unlock()
		g.call(t, "log_all", []byte("héllo"))
		g.mu.Lock()
		got := strings.Join(g.logs, "\n")
		g.mu.Unlock()
		for _, want := range []string{"DEBUG debug héllo", "INFO info héllo", "WARN warn héllo", "ERROR error héllo", "DEBUG trace: traced 1.5, -2.0"} {
			if !strings.Contains(got, want) {
				t.Errorf("logs lack %q:\n%s", want, got)
			}
		}
	})

	t.Run("memory is reused across calls", func(t *testing.T) {
		for i := range 60 { // 240 MiB in all, in an instance of 64 MiB
			if out, errText := g.call(t, "churn", nil); string(out) != "4194304" {
				t.Fatalf("call %d: %q %s", i, out, errText)
			}
		}
	})

	t.Run("abort traps and says why", func(t *testing.T) {
		a := newGuest(t, wasm, nil, false)
		_, errText := a.call(t, "out_of_bounds", nil)
		a.mu.Lock()
		logs := strings.Join(a.logs, "\n")
		a.mu.Unlock()
		if errText == "" || !strings.Contains(logs, "abort: Index out of range at ~lib/array.ts") {
			t.Errorf("out_of_bounds: error %q, logs:\n%s", errText, logs)
		}
	})

	t.Run("Math.random is seeded by the host", func(t *testing.T) {
		a, _ := newGuest(t, wasm, nil, false).call(t, "random", nil)
		b, _ := newGuest(t, wasm, nil, false).call(t, "random", nil)
		if len(a) == 0 || bytes.Equal(a, b) {
			t.Errorf("two instances drew %s and %s", a, b)
		}
	})
}

// goSyntaxError returns encoding/json's error for reading in.
func goSyntaxError(in string) string {
	var v any
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		return err.Error()
	}
	return ""
}

// TestAssemblyScriptSandboxMatchesGo runs the Go and AssemblyScript builds
// of the sandbox example against the same fake host replies and requires
// the same output, the same error text and the same request bytes, for
// successes, API refusals, alter_request errors, unreadable replies and
// odd arguments, non-ASCII text included.
func TestAssemblyScriptSandboxMatchesGo(t *testing.T) {
	needASC(t)
	t.Parallel()
	asWasm := buildPlugin(t, AssemblyScript, "examples/assemblyscript/sandbox")
	goWasm := buildPlugin(t, Go, "examples/go/sandbox")
	// The Go module is interpreted: compiling its 3 MB takes half a
	// minute under the race detector, running these calls a second.
	as, gp := newGuest(t, asWasm, nil, false), newGuest(t, goWasm, nil, true)

	ok := func(status int, body string, headers ...string) string {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(headers); i += 2 {
			h.Add(headers[i], headers[i+1])
		}
		raw, _ := json.Marshal(abi.Reply{Response: abi.NewResponse(status, h, []byte(body))})
		return string(raw)
	}
	fail := func(e abi.Error) string {
		raw, _ := json.Marshal(abi.Reply{Error: &e})
		return string(raw)
	}
	note := `{"note":{"id":7,"text":"h\u00e9llo \u003cb\u003e","created_at":"2026-01-02T03:04:05Z"}}` + "\n"
	type tc struct{ tool, args, reply string }
	cases := []tc{
		{"whoami", `{}`, ok(200, " {\n  \"authenticated\" : true, \"token_seen\": true,\n\t\"scopes\": [\"read\"], \"account\": \"sbx-héllo \\u00e9\\/\" , \"n\": [1.50, -0, 1e3]\n}\n")},
		{"whoami", `{}`, ok(200, "{\"a\":\"\xff\xfe\"}")},
		{"whoami", `{}`, ok(200, `[1,2]`)},
		{"whoami", `{}`, ok(200, `{"a":1} x`)},
		{"whoami", `{}`, ok(204, ``)},
		{"whoami", `{}`, ok(401, `{"error":"invalid_token","error_description":"the token expired"}`, "WWW-Authenticate", `Bearer error="invalid_token"`)},
		{"list_notes", `{}`, ok(403, `{"ERROR":"insufficient_scope","error_deſcription":"needs write","error":5}`)},
		{"list_notes", `{}`, ok(404, `{"error":null,"error_description":"h\u00e9llo \ud800 😀"}`)},
		{"list_notes", `{}`, ok(500, `oops`)},
		{"list_notes", `{}`, ok(401, `[{"error":"x"}]`)},
		{"list_notes", `{}`, ok(200, `{"notes":[]}`)},
		{"whoami", `{}`, fail(abi.Error{Code: abi.CodeGrantNotFound, Message: "no sandbox account is connected", ConnectURL: "https://a.example/connect/sandbox?link=x"})},
		{"add_note", `{"text":"x"}`, fail(abi.Error{Code: abi.CodeScopeReauthRequired, Message: "needs write", ConnectURL: "https://a.example/c", MissingScopes: []string{"write"}})},
		{"whoami", `{}`, fail(abi.Error{Code: abi.CodeTimeout, Message: "the sandbox did not answer within 8s"})},
		{"whoami", `{}`, `{"status":200,`},
		{"whoami", `{}`, `{"status":200}}`},
		{"whoami", `{}`, ""}, // no reply block at all
		{"whoami", `{}`, `{}`},
		{"whoami", `{}`, `{"status":200,"body":"{}","body_base64":"e30="}`},
		{"whoami", `{}`, `{"status":200,"body_base64":"e30"}`},
		{"whoami", `{}`, `{"status":200,"body_base64":"eyJhIjoiw6kifQ=="}`},
		{"add_note", `{"text":"héllo ☃ <b> 😀"}`, ok(201, note)},
		{"add_note", `{"text":"\u2028 \ud800 & \"q\" \\ \t é"}`, ok(201, note)},
		{"add_note", "{\"text\":\"a\xffb\"}", ok(201, note)},
		{"add_note", `{"TEXT":"upper","teſt":"no"}`, ok(201, note)},
		{"add_note", `{"text":"a","text":5}`, ok(201, note)},
		{"add_note", `{}`, ok(201, note)},
		{"add_note", `null`, ok(201, note)},
		{"add_note", `[1]`, ok(201, note)},
		{"add_note", `"x"`, ok(201, note)},
		{"add_note", ``, ok(201, note)},
		{"add_note", `{"text":"x"} y`, ok(201, note)},
	}
	for _, c := range cases {
		for _, g := range []*guest{as, gp} {
			if c.reply == "" {
				g.host.silence()
			} else {
				g.host.answer(c.reply)
			}
		}
		aOut, aErr := as.call(t, c.tool, []byte(c.args))
		gOut, gErr := gp.call(t, c.tool, []byte(c.args))
		if !bytes.Equal(aOut, gOut) || aErr != gErr {
			t.Errorf("%s(%s) with reply %.60q:\n AssemblyScript: %q %q\n Go:             %q %q", c.tool, c.args, c.reply, aOut, aErr, gOut, gErr)
		}
		aReq, gReq := as.host.requests(), gp.host.requests()
		if len(aReq) != len(gReq) || len(aReq) == 1 && !bytes.Equal(aReq[0], gReq[0]) {
			t.Errorf("%s(%s) sent different requests:\n AssemblyScript: %q\n Go:             %q", c.tool, c.args, aReq, gReq)
		}
	}
}

// TestAssemblyScriptGitHub runs the github example against a fake host:
// arguments become query parameters, the repository list is summed up,
// an issue goes out as a JSON body, and GitHub's refusals are explained.
func TestAssemblyScriptGitHub(t *testing.T) {
	needASC(t)
	t.Parallel()
	g := newGuest(t, buildPlugin(t, AssemblyScript, "examples/assemblyscript/github"), nil, false)
	reply := func(status int, body string) string {
		raw, _ := json.Marshal(abi.Reply{Response: abi.NewResponse(status, http.Header{"Content-Type": {"application/json"}}, []byte(body))})
		return string(raw)
	}
	repos := `[{"full_name":"o/a","private":true,"description":"h\u00e9llo","html_url":"https://github.com/o/a","default_branch":"main",` +
		`"stargazers_count":3,"updated_at":"2026-01-01T00:00:00Z","owner":{"login":"o"}},{"full_name":"o/b","description":null}]`
	for _, tc := range []struct {
		tool, args, reply string
		out, err          string // the output, or the error text
		method, url, body string // the request sent; no request when url is ""
	}{
		{"list_repos", `{"visibility":"private","sort":"updated","per_page":500}`, reply(200, repos),
			`{"count":2,"repos":[{"full_name":"o/a","private":true,"description":"héllo","html_url":"https://github.com/o/a",` +
				`"default_branch":"main","stars":3,"updated_at":"2026-01-01T00:00:00Z"},{"full_name":"o/b","private":false,` +
				`"description":null,"html_url":null,"default_branch":null,"stars":null,"updated_at":null}]}`, "",
			"GET", "https://api.github.com/user/repos?per_page=100&sort=updated&visibility=private", ""},
		{"list_repos", `{}`, reply(401, `{"message":"Bad credentials"}`), "",
			"GitHub refused the credential while trying to list your repositories (401): Bad credentials",
			"GET", "https://api.github.com/user/repos?per_page=30", ""},
		{"list_repos", `{}`, reply(200, `{"not":"a list"}`), "", "GitHub's repository list is not a list",
			"GET", "https://api.github.com/user/repos?per_page=30", ""},
		{"create_issue", `{"owner":"o","repo":"r.js","title":"T é","body":"<b>"}`,
			reply(201, `{"number":5,"html_url":"https://github.com/o/r.js/issues/5","title":"T é","state":"open","id":1}`),
			`{"number":5,"html_url":"https://github.com/o/r.js/issues/5","title":"T é","state":"open"}`, "",
			"POST", "https://api.github.com/repos/o/r.js/issues", `{"title":"T é","body":"\u003cb\u003e"}`},
		{"create_issue", `{"owner":"o","repo":"r","title":"T"}`, reply(404, `{"message":"Not Found"}`), "",
			"GitHub found no repository o/r that this account can see (404): Not Found",
			"POST", "https://api.github.com/repos/o/r/issues", `{"title":"T"}`},
		{"create_issue", `{"owner":"o","repo":"r","title":"T"}`,
			reply(422, `{"message":"Validation Failed","errors":[{"resource":"Issue","field":"title","code":"missing_field"},{"code":"custom","message":"no"},"plain"]}`), "",
			"GitHub refused the issue (422): Validation Failed (title missing field; no; plain)",
			"POST", "https://api.github.com/repos/o/r/issues", `{"title":"T"}`},
		// GitHub's answers are read as the Go example's json.Decoder reads them.
		{"list_repos", `{"per_page":50.5}`, reply(200, `[] 5`), "", "GitHub's repository list is not JSON: data after the JSON value",
			"GET", "https://api.github.com/user/repos?per_page=30", ""},
		{"list_repos", `{"per_page":-3}`, reply(200, `[{"full_name":{"b":1,"a":2,"b":3}}] x`),
			`{"count":1,"repos":[{"full_name":{"a":2,"b":3},"private":false,"description":null,"html_url":null,"default_branch":null,` +
				`"stars":null,"updated_at":null}]}`, "",
			"GET", "https://api.github.com/user/repos?per_page=1", ""},
		{"list_repos", `{}`, reply(200, `[1,`), "", "GitHub's repository list is not JSON: unexpected EOF",
			"GET", "https://api.github.com/user/repos?per_page=30", ""},
		{"list_repos", `{}`, reply(200, ``), "", "GitHub's repository list is not JSON: EOF",
			"GET", "https://api.github.com/user/repos?per_page=30", ""},
		{"list_repos", `[]`, reply(200, `[]`), "", "invalid arguments: not a JSON object", "", "", ""},
		{"create_issue", `{"owner":"o","repo":"r","title":" \u3000\t"}`, reply(201, `{}`), "", "an issue needs a title", "", "", ""},
		{"create_issue", `{"owner":"..","repo":"r","title":"T"}`, reply(201, `{}`), "", `".." is not a valid GitHub owner name`, "", "", ""},
		{"create_issue", `{"owner":"o","repo":"a\"b\u0001","title":"T"}`, reply(201, `{}`), "", `"a\"b\x01" is not a valid GitHub repo name`, "", "", ""},
		{"create_issue", `{"owner":"o","repo":"r/../x","title":"T"}`, reply(201, `{}`), "", `"r/../x" is not a valid GitHub repo name`, "", "", ""},
		{"create_issue", `{"owner":"o","repo":"r","title":"T"}`,
			`{"error":{"code":"grant_not_found","message":"no GitHub account is connected","connect_url":"https://a.example/c"}}`, "",
			"grant_not_found: no GitHub account is connected", "POST", "https://api.github.com/repos/o/r/issues", `{"title":"T"}`},
	} {
		g.host.answer(tc.reply)
		out, errText := g.call(t, tc.tool, []byte(tc.args))
		if string(out) != tc.out || errText != tc.err {
			t.Errorf("%s(%s):\n got  %s %q\n want %s %q", tc.tool, tc.args, out, errText, tc.out, tc.err)
		}
		sent := g.host.requests()
		if tc.url == "" {
			if len(sent) != 0 {
				t.Errorf("%s(%s) sent %q", tc.tool, tc.args, sent)
			}
			continue
		}
		if len(sent) != 1 {
			t.Fatalf("%s(%s) sent %d requests", tc.tool, tc.args, len(sent))
		}
		req, aerr := abi.ParseRequest(sent[0], 1<<20)
		if aerr != nil || req.Method != tc.method || req.URL.String() != tc.url || string(req.Body) != tc.body ||
			req.Header.Get("Accept") != "application/vnd.github+json" || (tc.body != "") != (req.Header.Get("Content-Type") == "application/json") {
			t.Errorf("%s(%s) sent %s (%v)", tc.tool, tc.args, sent[0], aerr)
		}
	}
}

// TestAssemblyScriptSandboxEndToEnd serves the AssemblyScript sandbox
// plugin with the real alterhost binary (--dev --no-auth), next to the Go
// build renamed by a sidecar manifest, and walks the Connect journey over
// MCP: both tools ask for a grant, and once it is approved, whoami,
// add_note with non-ASCII text and list_notes answer as the Go tools do.
func TestAssemblyScriptSandboxEndToEnd(t *testing.T) {
	needASC(t)
	t.Parallel()
	r := root(t)
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "alterhost")
	var wg sync.WaitGroup
	var buildErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/alterhost")
		cmd.Dir = r
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	}()
	os.WriteFile(filepath.Join(dir, "sandbox.wasm"), buildPlugin(t, AssemblyScript, "examples/assemblyscript/sandbox"), 0o644)
	os.WriteFile(filepath.Join(dir, "gosandbox.wasm"), buildPlugin(t, Go, "examples/go/sandbox"), 0o644)
	var m map[string]any
	raw, _ := os.ReadFile(filepath.Join(r, "examples/go/sandbox/alter.json"))
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["name"] = "gosandbox"
	for _, tool := range m["tools"].([]any) {
		tool := tool.(map[string]any)
		tool["name"] = "go_" + tool["name"].(string)
	}
	raw, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "gosandbox"+abi.SidecarSuffix), raw, 0o644)
	wg.Wait()
	if buildErr != nil {
		t.Fatal(buildErr)
	}

	endpoint := serve(t, bin, "--no-auth", "--dev", "--addr", "127.0.0.1:0", "--plugins", dir, "--data-dir", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "astest", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	call := func(name string, args any) (text string, res *mcp.CallToolResult) {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var b strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return b.String(), res
	}
	meta := func(res *mcp.CallToolResult) map[string]any {
		m, _ := res.Meta["alterhost/error"].(map[string]any)
		return m
	}
	// same calls a tool of both plugins and requires the same answer, with
	// the parts that differ between two calls (a fresh Connect URL, the
	// tool's name) masked.
	same := func(tool string, args any) (string, *mcp.CallToolResult) {
		t.Helper()
		a, ares := call(tool, args)
		g, gres := call("go_"+tool, args)
		mask := func(s string, res *mcp.CallToolResult) string {
			if u, _ := meta(res)["connect_url"].(string); u != "" {
				s = strings.ReplaceAll(s, u, "CONNECT_URL")
			}
			return strings.Replace(s, "Tool go_"+tool+" ", "Tool "+tool+" ", 1)
		}
		if mask(a, ares) != mask(g, gres) || ares.IsError != gres.IsError {
			t.Errorf("%s:\n AssemblyScript: %s\n Go:             %s", tool, a, g)
		}
		return a, ares
	}

	text, res := same("whoami", nil)
	connectURL, _ := meta(res)["connect_url"].(string)
	if !res.IsError || meta(res)["code"] != "grant_not_found" || connectURL == "" || !strings.Contains(text, connectURL) {
		t.Fatalf("whoami without a grant: %s meta=%v", text, meta(res))
	}
	sandboxtest.Approve(t, sandboxtest.Browser(), connectURL)

	text, res = same("whoami", nil)
	if res.IsError || !strings.Contains(text, `"authenticated":true`) || !strings.Contains(text, `"token_seen":true`) {
		t.Fatalf("whoami with a grant: %s", text)
	}
	text, res = same("add_note", map[string]any{"text": "x"})
	if !res.IsError || meta(res)["code"] != "scope_reauth_required" {
		t.Fatalf("add_note with only read: %s", text)
	}
	sandboxtest.Approve(t, sandboxtest.Browser(), meta(res)["connect_url"].(string))

	const note = "héllo ☃ <b> 😀 \u2028 \"q\""
	ids := regexp.MustCompile(`"id":\d+|"created_at":"[^"]*"`)
	a, ares := call("add_note", map[string]any{"text": note})
	g, gres := call("go_add_note", map[string]any{"text": note})
	if ares.IsError || gres.IsError || ids.ReplaceAllString(a, "") != ids.ReplaceAllString(g, "") {
		t.Fatalf("add_note:\n AssemblyScript: %s\n Go:             %s", a, g)
	}
	var added struct{ Note struct{ Text string } }
	if json.Unmarshal([]byte(a), &added); added.Note.Text != note {
		t.Errorf("the note came back as %q", added.Note.Text)
	}
	text, res = same("list_notes", nil)
	var list struct{ Notes []struct{ Text string } }
	json.Unmarshal([]byte(text), &list)
	if res.IsError || len(list.Notes) != 2 || list.Notes[0].Text != note || list.Notes[1].Text != note {
		t.Errorf("list_notes: %s", text)
	}
}

// serve starts alterhost with args and returns its MCP endpoint once it
// serves; the process is killed when the test ends.
func serve(t *testing.T, bin string, args ...string) string {
	t.Helper()
	endpoint, _, _ := proctest.Serve(t, bin, args...)
	return endpoint
}
