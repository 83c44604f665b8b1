package pluginbuild_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/pluginbuild"
	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/internal/sandboxtest"
	"github.com/alterhost/alterhost/vault/egress"
)

// repoRoot is the repository root, two folders up.
func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// needRust skips when Debian's Rust toolchain is missing, except in CI,
// where a missing toolchain is a broken setup and fails.
func needRust(t *testing.T) string {
	t.Helper()
	rustc, err := pluginbuild.RustCompiler(context.Background())
	var te *pluginbuild.ToolchainError
	switch {
	case err == nil:
		return rustc
	case errors.As(err, &te) && os.Getenv("CI") != "true":
		t.Skipf("skipping the Rust plugin tests: %v", err)
	default:
		t.Fatal(err)
	}
	return ""
}

// TestRustBindingUnit runs the binding's own unit tests (reply parsing,
// malformed replies, JSON, base64), compiled natively with rustc --test.
func TestRustBindingUnit(t *testing.T) {
	rustc := needRust(t)
	bin := filepath.Join(t.TempDir(), "alter_test")
	src := filepath.Join(repoRoot(t), "abi", "rust", "alter.rs")
	if out, err := exec.Command(rustc, "--edition", "2021", "--test", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("rustc --test: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--test-threads", "2")
	// The depth tests build 10000-deep values, which native test threads'
	// default 2 MiB stacks do not hold when they are dropped.
	cmd.Env = append(os.Environ(), "RUST_MIN_STACK=67108864")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test result: ok") {
		t.Fatalf("binding tests: %v\n%s", err, out)
	}
}

// TestRustToolchainErrors: a missing compiler, and a compiler without the
// wasm32 standard library, say what to install.
func TestRustToolchainErrors(t *testing.T) {
	r := repoRoot(t)
	dir := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(r, "examples/rust/sandbox/alter.json"))
	os.WriteFile(filepath.Join(dir, "alter.json"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "lib.rs"), nil, 0o644)
	out := filepath.Join(t.TempDir(), "p.wasm")
	build := func() error {
		return pluginbuild.Run(context.Background(), pluginbuild.Build{Lang: pluginbuild.Rust, Dir: dir, Out: out, Root: r})
	}

	t.Setenv("ALTERHOST_RUSTC", filepath.Join(dir, "no-rustc"))
	var te *pluginbuild.ToolchainError
	if err := build(); !errors.As(err, &te) || !strings.Contains(err.Error(), "apt-get install rustc libstd-rust-dev-wasm32") {
		t.Errorf("without rustc: %v", err)
	}

	// A rustc whose sysroot has no wasm32 std, as rustup's without the target.
	fake := filepath.Join(dir, "rustc")
	os.WriteFile(fake, []byte("#!/bin/sh\necho "+t.TempDir()+"\n"), 0o755)
	t.Setenv("ALTERHOST_RUSTC", fake)
	if err := build(); !errors.As(err, &te) || !strings.Contains(te.Tool, "wasm32-unknown-unknown standard library") ||
		!strings.Contains(err.Error(), "libstd-rust-dev-wasm32") {
		t.Errorf("without the wasm32 std: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a failed build left a plugin behind")
	}
}

// probeSource is a plugin that exercises the rest of the binding's surface:
// settings, JSON in and out, errors, panics, logs, MCP results, and the
// reply parser inside the Wasm module.
const probeSource = `
use alter::{BoxError, Content, Json, Level, McpResult};

#[no_mangle]
pub extern "C" fn settings() -> i32 {
    alter::handle(|_| Ok(format!("{}|{:?}", alter::setting("greeting").unwrap_or_default(), alter::setting("absent"))))
}

#[no_mangle]
pub extern "C" fn echo() -> i32 {
    alter::handle_json(|args| Ok(args.clone()))
}

#[no_mangle]
pub extern "C" fn fail() -> i32 {
    alter::handle_json(|_| -> Result<Json, BoxError> { Err("nope: é".into()) })
}

#[no_mangle]
pub extern "C" fn boom() -> i32 {
    alter::handle(|input| -> Result<String, BoxError> { panic!("index {} of {}", 3, input.len() - input.len()) })
}

#[no_mangle]
pub extern "C" fn logs() -> i32 {
    alter::handle(|_| {
        for l in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
            alter::log(l, &format!("probe {:?} é", l));
        }
        Ok("")
    })
}

#[no_mangle]
pub extern "C" fn mcp() -> i32 {
    alter::handle(|_| {
        Ok(McpResult::text("hi ☃")
            .with(Content::Image { data: vec![0, 255, 1], mime_type: "image/png".into() })
            .with_structured(Json::object(vec![("n", 1.into())])))
    })
}

#[no_mangle]
pub extern "C" fn reply() -> i32 {
    alter::handle(|input| {
        Ok(match alter::parse_reply(input) {
            Ok(r) => format!("ok {} {:?} {:?}", r.status, r.headers, r.body),
            Err(e) => format!("{:?}|{}", e.code, e),
        })
    })
}
`

const probeManifest = `{"abi": "alter/v1", "name": "probe", "version": "0.0.1",
 "config": {"greeting": {"description": "How to greet.", "default": "hallo"}},
 "tools": [
  {"name": "settings", "description": "t"}, {"name": "echo", "description": "t", "result": "json"},
  {"name": "fail", "description": "t"}, {"name": "boom", "description": "t"}, {"name": "logs", "description": "t"},
  {"name": "mcp", "description": "t", "result": "mcp"}, {"name": "reply", "description": "t"}]}`

// TestRustPlugins builds the Rust examples and a probe plugin, then runs
// them in the real host: the sandbox journey over MCP, the sandbox port
// against the Go example's build, the GitHub tools, and the probe.
func TestRustPlugins(t *testing.T) {
	needRust(t)
	r := repoRoot(t)
	// Compiling the Go example's 3 MB module is the slowest step under
	// -race; it overlaps the Rust builds, which wait on rustc.
	goEngine := newEngine(t, nil)
	type loadResult struct {
		l   *loaded
		err error
	}
	goLoaded := make(chan loadResult, 1)
	go func() {
		l, err := load(goEngine, filepath.Join(r, "plugins", "sandbox.wasm"), nil)
		goLoaded <- loadResult{l, err}
	}()
	goSandbox := func(t *testing.T) *loaded {
		res := <-goLoaded
		goLoaded <- res
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.l
	}
	t.Cleanup(func() {
		if res := <-goLoaded; res.l != nil {
			res.l.p.Close(context.Background())
		}
	})
	built := t.TempDir()
	probe := t.TempDir()
	os.WriteFile(filepath.Join(probe, "lib.rs"), []byte(probeSource), 0o644)
	os.WriteFile(filepath.Join(probe, "alter.json"), []byte(probeManifest), 0o644)
	dirs := map[string]string{
		"sandbox": filepath.Join(r, "examples/rust/sandbox"),
		"github":  filepath.Join(r, "examples/rust/github"),
		"probe":   probe,
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(dirs))
	for name, dir := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(built, name+".wasm")
			if err := pluginbuild.Run(context.Background(), pluginbuild.Build{Lang: pluginbuild.Rust, Dir: dir, Out: out, Root: r}); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for name, dir := range dirs {
		wasm, _ := os.ReadFile(filepath.Join(built, name+".wasm"))
		spec, err := plugin.Read(filepath.Join(built, name+".wasm"))
		if err != nil {
			t.Fatalf("%s does not pass inspection: %v", name, err)
		}
		want, _ := os.ReadFile(filepath.Join(dir, "alter.json"))
		got, _, _ := abi.CustomSection(wasm, abi.ManifestSection)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the embedded manifest is not alter.json", name)
		}
		for _, imp := range spec.Interface.Imports {
			if imp.Module != "extism:host/env" && imp.Module != abi.HostModule {
				t.Errorf("%s imports %s.%s; a Rust plugin needs only the Extism kernel and alter_request", name, imp.Module, imp.Name)
			}
		}
		t.Logf("%s.wasm: %d bytes", name, len(wasm))
	}

	t.Run("journey", func(t *testing.T) { rustJourney(t, filepath.Join(built, "sandbox.wasm")) })
	t.Run("same_as_go", func(t *testing.T) {
		sameAsGo(t, goSandbox(t), loadPlugin(t, goEngine, filepath.Join(built, "sandbox.wasm"), nil))
	})
	t.Run("github", func(t *testing.T) { githubTools(t, filepath.Join(built, "github.wasm")) })
	t.Run("probe", func(t *testing.T) { probeTools(t, filepath.Join(built, "probe.wasm")) })
}

// rustJourney serves the Rust sandbox plugin with the --dev sandbox
// provider and walks the Connect journey over an in-memory MCP session.
func rustJourney(t *testing.T, wasm string) {
	dir := t.TempDir()
	b, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "sandbox.wasm"), b, 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx := context.Background()
	srv, err := host.New(ctx, host.Config{PluginsDir: dir, DataDir: t.TempDir(), BaseURL: base, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); srv.Close(context.Background()) })

	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.MCP.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "rust", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	call := func(name string, args any) (*mcp.CallToolResult, string, map[string]any) {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		text := ""
		if len(res.Content) > 0 {
			if tc, ok := res.Content[0].(*mcp.TextContent); ok {
				text = tc.Text
			}
		}
		meta, _ := res.Meta["alterhost/error"].(map[string]any)
		return res, text, meta
	}
	browser := sandboxtest.Browser()

	res, text, meta := call("whoami", nil)
	connectURL, _ := meta["connect_url"].(string)
	if !res.IsError || meta["code"] != "grant_not_found" || !strings.HasPrefix(connectURL, base+"/connect/sandbox?link=") ||
		!strings.Contains(text, connectURL) {
		t.Fatalf("whoami without a grant: %s meta=%v", text, meta)
	}
	if page := sandboxtest.Approve(t, browser, connectURL); !strings.Contains(page, "Connected") {
		t.Fatalf("connect page: %s", page)
	}
	res, text, _ = call("whoami", nil)
	var who struct {
		Auth   bool     `json:"authenticated"`
		Seen   bool     `json:"token_seen"`
		Scopes []string `json:"scopes"`
	}
	if err := json.Unmarshal([]byte(text), &who); err != nil || res.IsError || !who.Auth || !who.Seen ||
		strings.Join(who.Scopes, " ") != "read" {
		t.Fatalf("whoami with a grant: %s", text)
	}

	note := "héllo ☃ <b> & \"q\" 😀"
	res, text, meta = call("add_note", map[string]any{"text": note})
	if !res.IsError || meta["code"] != "scope_reauth_required" || !strings.Contains(text, "write") {
		t.Fatalf("add_note with only read: %s meta=%v", text, meta)
	}
	sandboxtest.Approve(t, browser, meta["connect_url"].(string))
	res, text, _ = call("add_note", map[string]any{"text": note})
	var added struct {
		Note struct {
			ID   int    `json:"id"`
			Text string `json:"text"`
		} `json:"note"`
	}
	if err := json.Unmarshal([]byte(text), &added); err != nil || res.IsError || added.Note.Text != note {
		t.Fatalf("add_note: %s", text)
	}
	res, text, _ = call("list_notes", nil)
	var listed struct {
		Notes []struct {
			Text string `json:"text"`
		} `json:"notes"`
	}
	if err := json.Unmarshal([]byte(text), &listed); err != nil || res.IsError || len(listed.Notes) != 1 ||
		listed.Notes[0].Text != note {
		t.Fatalf("list_notes: %s", text)
	}
	if res.StructuredContent == nil {
		t.Error("list_notes has no structured content")
	}
}

// upstream is a scripted alter_request outbound path: it records each
// request and answers with reply.
type upstream struct {
	mu    sync.Mutex
	reply func(*abi.OutboundRequest) (*abi.Response, *abi.Error)
	reqs  []*abi.OutboundRequest
}

func (u *upstream) Do(_ context.Context, _ egress.Caller, req *abi.OutboundRequest) (*abi.Response, *abi.Error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reqs = append(u.reqs, req)
	return u.reply(req)
}

func (u *upstream) set(f func(*abi.OutboundRequest) (*abi.Response, *abi.Error)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reply, u.reqs = f, nil
}

func (u *upstream) last() *abi.OutboundRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return nil
	}
	return u.reqs[len(u.reqs)-1]
}

// loaded is a plugin in the real engine, with its scripted upstream.
type loaded struct {
	p  *plugin.Plugin
	up *upstream
}

func load(eng engine.Engine, path string, logger *slog.Logger) (*loaded, error) {
	spec, err := plugin.Read(path)
	if err != nil {
		return nil, err
	}
	up := &upstream{reply: func(*abi.OutboundRequest) (*abi.Response, *abi.Error) {
		return nil, abi.Errorf(abi.CodeInternal, "no reply scripted")
	}}
	p, err := (&plugin.Host{Engine: eng, Outbound: up, Logger: logger}).Load(context.Background(), spec)
	if err != nil {
		return nil, err
	}
	return &loaded{p: p, up: up}, nil
}

func loadPlugin(t *testing.T, eng engine.Engine, path string, logger *slog.Logger) *loaded {
	t.Helper()
	l, err := load(eng, path, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.p.Close(context.Background()) })
	return l
}

// outcome is everything observable about one call: output or failure, and
// the request the guest made.
type outcome struct {
	Out     string
	Kind    string
	Message string
	Method  string
	URL     string
	Header  http.Header
	Body    string
}

func (l *loaded) call(t *testing.T, tool, args string) outcome {
	t.Helper()
	var tl *abi.Tool
	for i := range l.p.Manifest.Tools {
		if l.p.Manifest.Tools[i].Name == tool {
			tl = &l.p.Manifest.Tools[i]
		}
	}
	if tl == nil {
		t.Fatalf("no tool %s", tool)
	}
	out, err := l.p.Call(context.Background(), tl, json.RawMessage(args))
	var o outcome
	o.Out = string(out)
	if err != nil {
		var f *plugin.Failure
		if !errors.As(err, &f) {
			t.Fatalf("%s: %v", tool, err)
		}
		o.Kind, o.Message = f.Kind, f.Message
	}
	if req := l.up.last(); req != nil {
		o.Method, o.URL, o.Header, o.Body = req.Method, req.URL.String(), req.Header, string(req.Body)
	}
	return o
}

func newEngine(t *testing.T, logger *slog.Logger) engine.Engine {
	t.Helper()
	eng, err := engine.NewExtism(engine.ExtismOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	return eng
}

func short(s string) string {
	if len(s) > 300 {
		return fmt.Sprintf("%q… (%d bytes)", s[:300], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func respond(status int, body string, kv ...string) func(*abi.OutboundRequest) (*abi.Response, *abi.Error) {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return func(*abi.OutboundRequest) (*abi.Response, *abi.Error) {
		return abi.NewResponse(status, h, []byte(body)), nil
	}
}

// sameAsGo calls the Go example's build (the committed plugins/sandbox.wasm)
// and the Rust port with the same inputs and upstream answers, and requires
// the same outputs, errors and requests, byte for byte.
func sameAsGo(t *testing.T, gp, rp *loaded) {
	deep := func(open, inner, close string, n int) string {
		return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
	}
	note := `{"text": "héllo ☃ <b> & \u2028\u2029 \"q\" \\ \t\u0001 😀 \ud800"}`
	for _, c := range []struct {
		name, tool, args string
		reply            func(*abi.OutboundRequest) (*abi.Response, *abi.Error)
	}{
		{"object", "whoami", `{}`, respond(200,
			"{ \"authenticated\" : true,\n \"token_seen\":true, \"scopes\": [ \"read\" ],\t\"account\": \"s\\u00e9 <b> \\\"x\\\" \u2028\\/\", \"n\": -0.5E+10 }\r\n",
			"Content-Type", "application/json")},
		{"not an object", "whoami", `{}`, respond(200, `[1, 2]`)},
		{"invalid JSON", "whoami", `{}`, respond(200, `{"a":}`)},
		{"empty", "whoami", `{}`, respond(204, ``)},
		{"invalid UTF-8", "whoami", `{}`, respond(200, "{\"a\": \"\xff\xfe\"}")},
		{"deep object", "list_notes", `{}`, respond(200, deep(`{"a":`, `1`, `}`, 10000))},
		{"too deep", "list_notes", `{}`, respond(200, deep(`[`, ``, `]`, 10001))},
		{"insufficient scope", "whoami", `{}`, respond(403,
			`{"error":"insufficient_scope","error_description":"needs \u003cwrite\u003e"}`,
			"WWW-Authenticate", `Bearer error="insufficient_scope", scope="write"`)},
		{"no body", "whoami", `{}`, respond(401, ``, "WWW-Authenticate", "Bearer")},
		{"folded names", "whoami", `{}`, respond(400,
			`{"ERROR":"a","error":5,"Error_Deſcription":"d","error_description":null,"x":{"error":"inner"}}`)},
		{"invalid UTF-8 error", "whoami", `{}`, respond(502, "{\"error\":\"bad \xff\xc3 byte\"}")},
		{"not JSON error", "whoami", `{}`, respond(500, `not json`)},
		{"deep error", "whoami", `{}`, respond(400, `{"error":"e","n":`+deep(`[`, ``, `]`, 9998)+`}`)},
		{"too deep error", "whoami", `{}`, respond(400, `{"error":"e","n":`+deep(`[`, ``, `]`, 10000)+`}`)},
		{"odd status", "whoami", `{}`, respond(199, `{}`)},
		{"grant_not_found", "whoami", `{}`, func(*abi.OutboundRequest) (*abi.Response, *abi.Error) {
			return nil, &abi.Error{Code: abi.CodeGrantNotFound, Message: "connect your sandbox account: é",
				ConnectURL: "http://127.0.0.1:1/connect/sandbox?link=x"}
		}},
		{"unknown code", "list_notes", `{}`, func(*abi.OutboundRequest) (*abi.Response, *abi.Error) {
			return nil, &abi.Error{Code: "brand_new", Message: "m"}
		}},
		{"add_note", "add_note", note, respond(201, `{"note": {"id": 1, "text": "h\u00e9llo \ud83d\ude00"}}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			gp.up.set(c.reply)
			rp.up.set(c.reply)
			want := gp.call(t, c.tool, c.args)
			got := rp.call(t, c.tool, c.args)
			if want.Out != got.Out {
				t.Errorf("output:\n Go   %s\n Rust %s", short(want.Out), short(got.Out))
			}
			if want.Kind != got.Kind || want.Message != got.Message {
				t.Errorf("failure:\n Go   %s %s\n Rust %s %s", want.Kind, short(want.Message), got.Kind, short(got.Message))
			}
			if want.Method != got.Method || want.URL != got.URL || !reflect.DeepEqual(want.Header, got.Header) || want.Body != got.Body {
				t.Errorf("request:\n Go   %s %s %v %s\n Rust %s %s %v %s", want.Method, want.URL, want.Header, short(want.Body),
					got.Method, got.URL, got.Header, short(got.Body))
			}
			if c.name == "object" || c.name == "add_note" {
				// Independently of the Go build: the output is json.Compact's.
				resp, _ := c.reply(nil)
				var buf bytes.Buffer
				json.Compact(&buf, []byte(resp.Body))
				if got.Out != buf.String() || got.Kind != "" {
					t.Errorf("output %s, want %s", short(got.Out), short(buf.String()))
				}
			}
		})
	}
}

// githubTools runs the GitHub example against scripted GitHub answers.
func githubTools(t *testing.T, wasm string) {
	gh := loadPlugin(t, newEngine(t, nil), wasm, nil)
	repos := `[{"id":1,"full_name":"octo/hello","private":false,"description":"Hi ☃ <x>","html_url":"https://github.com/octo/hello",
 "default_branch":"main","stargazers_count":42,"updated_at":"2026-01-02T03:04:05Z","owner":{"login":"octo"}},
 {"full_name":"octo/secret","private":true,"description":null,"html_url":"https://github.com/octo/secret",
 "default_branch":"trunk","stargazers_count":0,"updated_at":"2026-02-03T04:05:06Z"}]`
	for _, c := range []struct {
		name, tool, args string
		reply            func(*abi.OutboundRequest) (*abi.Response, *abi.Error)
		want             outcome
	}{
		{"list", "list_repos", `{"visibility":"private","sort":"updated","per_page":5}`, respond(200, repos),
			outcome{Method: "GET", URL: "https://api.github.com/user/repos?per_page=5&sort=updated&visibility=private",
				Out: `{"count":2,"repos":[{"full_name":"octo/hello","private":false,"description":"Hi ☃ \u003cx\u003e",` +
					`"html_url":"https://github.com/octo/hello","default_branch":"main","stars":42,"updated_at":"2026-01-02T03:04:05Z"},` +
					`{"full_name":"octo/secret","private":true,"description":null,"html_url":"https://github.com/octo/secret",` +
					`"default_branch":"trunk","stars":0,"updated_at":"2026-02-03T04:05:06Z"}]}`}},
		{"list defaults", "list_repos", `{}`, respond(200, `[]`),
			outcome{Method: "GET", URL: "https://api.github.com/user/repos?per_page=30", Out: `{"count":0,"repos":[]}`}},
		{"bad credential", "list_repos", `{}`, respond(401, `{"message":"Bad credentials","documentation_url":"https://docs.github.com"}`),
			outcome{Method: "GET", URL: "https://api.github.com/user/repos?per_page=30", Kind: "guest_error",
				Message: "GitHub refused the credential while trying to list your repositories (401): Bad credentials"}},
		{"rate limit", "list_repos", `{}`, respond(403, `{"message":"API rate limit exceeded"}`,
			"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1767225600"),
			outcome{Method: "GET", URL: "https://api.github.com/user/repos?per_page=30", Kind: "guest_error",
				Message: "GitHub's rate limit is used up; try again after 1767225600 (Unix time): API rate limit exceeded"}},
		{"not a list", "list_repos", `{}`, respond(200, `{"message":"odd"}`),
			outcome{Method: "GET", URL: "https://api.github.com/user/repos?per_page=30", Kind: "guest_error",
				Message: "GitHub's repository list is not a list"}},
		{"create", "create_issue", `{"owner":"octo","repo":"hello.rs","title":"Bug <1> ☃","body":"line\nhéllo"}`,
			respond(201, `{"number":7,"html_url":"https://github.com/octo/hello.rs/issues/7","title":"Bug <1> ☃","state":"open","id":99}`),
			outcome{Method: "POST", URL: "https://api.github.com/repos/octo/hello.rs/issues",
				Body: `{"title":"Bug \u003c1\u003e ☃","body":"line\nhéllo"}`,
				Out:  `{"number":7,"html_url":"https://github.com/octo/hello.rs/issues/7","title":"Bug \u003c1\u003e ☃","state":"open"}`}},
		{"no repository", "create_issue", `{"owner":"octo","repo":"gone","title":"t"}`, respond(404, `{"message":"Not Found"}`),
			outcome{Method: "POST", URL: "https://api.github.com/repos/octo/gone/issues", Body: `{"title":"t"}`, Kind: "guest_error",
				Message: "GitHub found no repository octo/gone that this account can see (404): Not Found"}},
		{"invalid issue", "create_issue", `{"owner":"octo","repo":"hello","title":"t"}`, respond(422,
			`{"message":"Validation Failed","errors":[{"resource":"Issue","code":"missing_field","field":"title"},{"code":"custom","message":"labels are locked"}]}`),
			outcome{Method: "POST", URL: "https://api.github.com/repos/octo/hello/issues", Body: `{"title":"t"}`, Kind: "guest_error",
				Message: "GitHub refused the issue (422): Validation Failed (title missing field; labels are locked)"}},
		{"issues off", "create_issue", `{"owner":"octo","repo":"hello","title":"t"}`, respond(410, `{"message":"Issues are disabled"}`),
			outcome{Method: "POST", URL: "https://api.github.com/repos/octo/hello/issues", Body: `{"title":"t"}`, Kind: "guest_error",
				Message: "issues are turned off in octo/hello (410)"}},
		{"server error", "create_issue", `{"owner":"octo","repo":"hello","title":"t"}`, respond(502, `<html>`),
			outcome{Method: "POST", URL: "https://api.github.com/repos/octo/hello/issues", Body: `{"title":"t"}`, Kind: "guest_error",
				Message: "GitHub answered 502 while trying to open an issue in octo/hello"}},
		{"dot dot", "create_issue", `{"owner":"..","repo":"hello","title":"t"}`, respond(201, `{}`),
			outcome{Kind: "guest_error", Message: `".." is not a valid GitHub owner name`}},
		{"blank title", "create_issue", `{"owner":"o","repo":"r","title":"  "}`, respond(201, `{}`),
			outcome{Kind: "guest_error", Message: "an issue needs a title"}},
		{"not connected", "create_issue", `{"owner":"o","repo":"r","title":"t"}`, func(*abi.OutboundRequest) (*abi.Response, *abi.Error) {
			return nil, &abi.Error{Code: abi.CodeGrantNotFound, Message: "connect GitHub", ConnectURL: "http://127.0.0.1:1/c"}
		}, outcome{Method: "POST", URL: "https://api.github.com/repos/o/r/issues", Body: `{"title":"t"}`, Kind: "guest_error",
			Message: "grant_not_found: connect GitHub"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			gh.up.set(c.reply)
			got := gh.call(t, c.tool, c.args)
			if got.Header != nil {
				if got.Header.Get("Accept") != "application/vnd.github+json" || got.Header.Get("X-GitHub-Api-Version") == "" ||
					got.Header.Get("User-Agent") == "" {
					t.Errorf("headers: %v", got.Header)
				}
				if c.want.Body != "" && got.Header.Get("Content-Type") != "application/json" {
					t.Errorf("a JSON body without its Content-Type: %v", got.Header)
				}
				got.Header = nil
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// probeTools checks settings, JSON round trips, errors, panics, logs, MCP
// results and the reply parser inside a Rust plugin.
func probeTools(t *testing.T, wasm string) {
	dir := t.TempDir()
	b, _ := os.ReadFile(wasm)
	path := filepath.Join(dir, "probe.wasm")
	os.WriteFile(path, b, 0o644)
	os.WriteFile(plugin.ConfigPath(path), []byte(`{"greeting": "grüß dich"}`), 0o644)
	var logs proctest.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pr := loadPlugin(t, newEngine(t, logger), path, logger)

	check := func(tool, args string, want outcome) {
		t.Helper()
		if got := pr.call(t, tool, args); got.Out != want.Out || got.Kind != want.Kind || !strings.HasPrefix(got.Message, want.Message) {
			t.Errorf("%s %s:\n got  %+v\n want %+v", tool, args, got, want)
		}
	}
	check("settings", `{}`, outcome{Out: "grüß dich|None"})
	in := map[string]string{"s": "héllo ☃ <b> & \u2028 \"q\" \\ \t 😀"}
	raw, _ := json.Marshal(in)
	// Output as Go's json.Marshal writes it, byte for byte; a lone surrogate
	// escape decodes to U+FFFD, written as the character itself.
	check("echo", string(raw), outcome{Out: string(raw)})
	check("echo", `{"a" : [1.50, -0e3, true, null, {}], "b":"\ud800x"}`,
		outcome{Out: "{\"a\":[1.50,-0e3,true,null,{}],\"b\":\"\ufffdx\"}"})
	check("fail", `{}`, outcome{Kind: "guest_error", Message: "nope: é"})
	// A panic aborts the instance (wasm32 cannot unwind): the call fails as
	// a trap, the hook logs why, and the next call gets a fresh instance.
	check("boom", `{}`, outcome{Kind: "trap", Message: "trap: wasm error: unreachable"})
	check("settings", `{}`, outcome{Out: "grüß dich|None"})
	check("logs", `{}`, outcome{})
	check("mcp", `{}`, outcome{Out: `{"content":[{"type":"text","text":"hi ☃"},{"type":"image","data":"AP8B","mimeType":"image/png"}],"structuredContent":{"n":1}}`})
	check("reply", `{"status":200,"headers":{"X-A":"b"},"body_base64":"/w=="}`, outcome{Out: `ok 200 {"x-a": "b"} [255]`})
	check("reply", `{"error":{"code":"timeout","message":"slow ☃"}}`, outcome{Out: "Timeout|timeout: slow ☃"})
	check("reply", `{"status":"200","headers":{}}`,
		outcome{Out: `Internal|internal: alter_request reply's "status" is not an HTTP status code`})
	check("reply", `{"status":200,"headers":{},"body_base64":"%%"}`,
		outcome{Out: "Internal|internal: alter_request reply has invalid body_base64: illegal base64 data at input byte 0"})
	check("reply", `{"error":{"code":"x"}}`, outcome{Out: `Internal|internal: alter_request reply's "error" has no "message"`})

	l := logs.String()
	for _, want := range []string{"probe Debug é", "probe Info é", "probe Warn é", "probe Error é", "panic: index 3 of 0 (at ./lib.rs:"} {
		if !strings.Contains(l, want) {
			t.Errorf("the log lacks %q:\n%q", want, l)
		}
	}
	if !utf8.ValidString(l) {
		t.Error("the log is not UTF-8")
	}
}
