// Package alterc holds only tests: they build testdata/harness.c with
// alter.h for wasm32 and run it under Extism, holding the C binding's JSON
// reader and writer to Go's encoding/json and its request handling to the
// host's wire format, malformed replies included.
package alterc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	extism "github.com/extism/go-sdk"

	"github.com/alterhost/alterhost/abi"
)

var (
	buildOnce sync.Once
	harness   []byte
	buildErr  error
)

// build compiles the harness once, freestanding, as plugins are built.
func build(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("clang"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("clang is not installed (scripts/setup.sh installs it)")
	}
	buildOnce.Do(func() {
		out := filepath.Join(os.TempDir(), "alter-c-harness.wasm")
		cmd := exec.Command("clang", "--target=wasm32", "-nostdlib", "-O2", "-Wall", "-Wextra", "-Werror",
			"-I", ".", "-Wl,--no-entry", "-o", out, "testdata/harness.c")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{string(b)}
			return
		}
		harness, buildErr = os.ReadFile(out)
		os.Remove(out)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return harness
}

type buildError struct{ out string }

func (e *buildError) Error() string { return "clang: " + e.out }

// guest is one instance of the harness with a scripted alter_request.
type guest struct {
	p        *extism.Plugin
	reply    []byte   // what alter_request answers
	requests [][]byte // what it was asked
}

func newGuest(t *testing.T, settings map[string]string) *guest {
	t.Helper()
	g := &guest{}
	f := extism.NewHostFunctionWithStack("alter_request",
		func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
			req, err := p.ReadBytes(stack[0])
			if err != nil {
				panic(err)
			}
			p.Free(stack[0])
			g.requests = append(g.requests, req)
			out, err := p.WriteBytes(g.reply)
			if err != nil {
				panic(err)
			}
			stack[0] = out
		}, []extism.ValueType{extism.ValueTypePTR}, []extism.ValueType{extism.ValueTypePTR})
	f.SetNamespace("extism:host/user")
	m := extism.Manifest{Wasm: []extism.Wasm{extism.WasmData{Data: build(t)}}, Config: settings}
	p, err := extism.NewPlugin(context.Background(), m, extism.PluginConfig{}, []extism.HostFunction{f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	g.p = p
	return g
}

// call runs export on input and returns its output, or its error as
// "error: ...".
func (g *guest) call(t *testing.T, export string, input []byte) string {
	t.Helper()
	rc, out, err := g.p.Call(export, input)
	if err != nil || rc != 0 {
		if err == nil {
			t.Fatalf("%s: rc %d without an error", export, rc)
		}
		return "error: " + err.Error()
	}
	return string(out)
}

// corpus is JSON text and raw bytes that have broken JSON code before:
// escapes, surrogates, invalid UTF-8, HTML-ish text, line separators.
var corpus = []string{
	``, `a`, `héllo ☃ <b>&</b> 😀 ` + "\u2028\u2029", "\x00\x01\x1f\x7f", "\b\f\n\r\t\"\\/",
	"\xff", "\xe2\x98", "\xe2\x98z", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\xef\xbf\xbd", "a\xf0\x9f\x98",
	`\u00e9`, `\ud83d\ude00`, `\ud83d`, `\ude00`, `\ud83dx`, `\ud83d\u0041`, `\ud83d\ud83d\ude00`, `\u0000`,
}

// randomText returns bytes drawn mostly from the awkward ones.
func randomText(r *rand.Rand) []byte {
	pieces := []string{"a", " ", "\"", "\\", "/", "<", ">", "&", "\n", "\x01", "\x7f", "é", "☃", "😀", "\u2028",
		"\xff", "\xe2", "\x98", "\xed\xa0\x80", "\\u", "\\ud83d", "\\ude00", "0", "{", "}", "[", "]", ":", ",", "\t"}
	var b []byte
	for range r.IntN(12) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return b
}

func TestQuoteIsGoMarshal(t *testing.T) {
	g := newGuest(t, nil)
	r := rand.New(rand.NewPCG(1, 2))
	inputs := append([]string{}, corpus...)
	for range 500 {
		inputs = append(inputs, string(randomText(r)))
	}
	for _, s := range inputs {
		want, _ := json.Marshal(s)
		if got := g.call(t, "quote", []byte(s)); got != string(want) {
			t.Errorf("quote %q = %s, want %s", s, got, want)
		}
	}
}

func TestDecodeIsGoUnmarshal(t *testing.T) {
	g := newGuest(t, nil)
	r := rand.New(rand.NewPCG(3, 4))
	var inputs []string
	for _, s := range corpus {
		inputs = append(inputs, `"`+s+`"`)
	}
	for range 1000 {
		inputs = append(inputs, `"`+string(randomText(r))+`"`)
	}
	for _, in := range inputs {
		var want string
		err := json.Unmarshal([]byte(in), &want)
		got := g.call(t, "decode", []byte(in))
		switch {
		case err != nil && !strings.HasPrefix(got, "error: "):
			t.Errorf("decode %q = %q; Go refuses it: %v", in, got, err)
		case err == nil && got != want:
			t.Errorf("decode %q = %q, want %q", in, got, want)
		}
	}
}

func TestValidAndCompactAreGo(t *testing.T) {
	g := newGuest(t, nil)
	docs := []string{`{}`, ` [ ] `, `{"a" : [1, -0.5e+3, true, false, null, "x"] , "b":{}}`, `"\u00e9"`, `0`, `-0`, `1E9`,
		`01`, `1.`, `.5`, `-`, `1e`, `+1`, `tru`, `nul`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{1:2}`, `[`, `]`, `{"a":1}x`,
		`"a` + "\x01" + `"`, `"\x"`, `"\u12"`, `""`, " \t\n\r{} ", strings.Repeat("[", 900) + strings.Repeat("]", 900),
		`{"k":"v" "k2":1}`, `[1 2]`, `nulll`, `truex`, `"` + "\xff" + `"`}
	r := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		docs = append(docs, string(randomText(r)))
	}
	for _, d := range docs {
		want := json.Valid([]byte(d))
		if got := g.call(t, "valid", []byte(d)) == "1"; got != want {
			t.Errorf("valid %q = %v, want %v", d, got, want)
			continue
		}
		if !want {
			continue
		}
		var c bytes.Buffer
		json.Compact(&c, []byte(d))
		if got := g.call(t, "compact", []byte(d)); got != c.String() {
			t.Errorf("compact %q = %q, want %q", d, got, c.String())
		}
	}
}

// TestReencodeIsGoMarshal: a value read and written again comes out as Go
// writes the same value (objects keep their order; Go's maps would sort).
func TestReencodeIsGoMarshal(t *testing.T) {
	g := newGuest(t, nil)
	for _, d := range []string{`{"b":"\u003c\u00e9 \ud83d\ude00 \u2028","a":[1,2.50,-3e2,true,null,{}],"c":{"x":"\"\\/"}}`,
		`"` + "\xff" + `"`, `"\ud800"`, `[]`, `12345678901234567890`} {
		var v any
		dec := json.NewDecoder(strings.NewReader(d))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(v)
		if m, ok := v.(map[string]any); ok { // keep the document's order
			var b bytes.Buffer
			b.WriteString("{")
			for i, k := range []string{"b", "a", "c"} {
				if i > 0 {
					b.WriteString(",")
				}
				kb, _ := json.Marshal(k)
				vb, _ := json.Marshal(m[k])
				b.Write(kb)
				b.WriteString(":")
				b.Write(vb)
			}
			b.WriteString("}")
			want = b.Bytes()
		}
		if got := g.call(t, "reencode", []byte(d)); got != string(want) {
			t.Errorf("reencode %s = %s, want %s", d, got, want)
		}
	}
}

func TestArgs(t *testing.T) {
	g := newGuest(t, nil)
	for _, tc := range []struct{ in, want string }{
		{`{"text":"h\u00e9llo \ud83d\ude00","n":-42,"b":true,"list":[1, "two" ,{"x":[]}]}`, "héllo 😀\n-42\ntrue\n1\n\"two\"\n{\"x\":[]}\n"},
		{``, "-\n-\n-\n"},
		{`{"text":1,"n":1.5,"b":"true","list":{}}`, "-\n-\n-\n"},
		{`{"text":"a","text":"b","n":9223372036854775807}`, "b\n9223372036854775807\n-\n"},
		{`{"n":9223372036854775808}`, "-\n-\n-\n"},
		{`{"n":-9223372036854775808}`, "-\n-9223372036854775808\n-\n"},
		{`[1]`, "error: the arguments are not a JSON object"},
		{`{"a":`, "error: the arguments are not a JSON object"},
	} {
		if got := g.call(t, "args", []byte(tc.in)); got != tc.want {
			t.Errorf("args %s = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRequestIsWhatTheHostParses sends a request with repeated query
// names, headers and bodies of text and of bytes, and checks what the
// host's own parser makes of it.
func TestRequestIsWhatTheHostParses(t *testing.T) {
	g := newGuest(t, nil)
	g.reply, _ = json.Marshal(abi.Reply{Response: abi.NewResponse(200, nil, nil)})
	for _, body := range []string{"", `{"q":"héllo <b>"}`, "\xff\x00\x80x"} {
		g.requests = nil
		g.call(t, "request", []byte(body))
		if len(g.requests) != 1 {
			t.Fatalf("%d requests", len(g.requests))
		}
		out, aerr := abi.ParseRequest(g.requests[0], 1<<20)
		if aerr != nil {
			t.Fatalf("host refused %s: %v", g.requests[0], aerr)
		}
		if out.Method != "POST" || out.URL.String() != "https://api.example.com/items?a=1&label=bug&label=p1+%26+%3Cp2%3E&per_page=50" ||
			out.Header.Get("Accept") != "application/json" || out.Header.Get("X-Note") != "héllo" || string(out.Body) != body {
			t.Errorf("%s parsed as %s %s %v %q", g.requests[0], out.Method, out.URL, out.Header, out.Body)
		}
	}
}

// TestReplies reads replies the host writes and replies no host should
// write: each of the latter is an internal error that says what is wrong.
func TestReplies(t *testing.T) {
	g := newGuest(t, nil)
	reply := func(r abi.Reply) []byte { b, _ := json.Marshal(r); return b }
	big := bytes.Repeat([]byte("x"), 70000)
	for _, tc := range []struct {
		name  string
		reply []byte
		want  string
	}{
		{"text", reply(abi.Reply{Response: abi.NewResponse(201, map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}},
			[]byte("h\u00e9\x00"))}), `{"code":0,"status":201,"body":[104,195,169,0],"content_type":"text/plain; charset=utf-8"}`},
		{"bytes", reply(abi.Reply{Response: abi.NewResponse(500, nil, []byte{0xff, 0, 1})}),
			`{"code":0,"status":500,"body":[255,0,1],"content_type":null}`},
		{"empty body", []byte(`{"status":204,"headers":{}}`), `{"code":0,"status":204,"body":[],"content_type":null}`},
		{"escaped", []byte(`{"status":200,"headers":{"content-type":"a\u00e9\"b"},"body":"\ud83d\ude00\n"}`),
			`{"code":0,"status":200,"body":[240,159,152,128,10],"content_type":"aé\"b"}`},
		{"base64 padding", []byte(`{"status":200,"body_base64":"` + base64.StdEncoding.EncodeToString([]byte{1, 2, 3, 4}) + `"}`),
			`{"code":0,"status":200,"body":[1,2,3,4],"content_type":null}`},
		{"grant_not_found", reply(abi.Reply{Error: &abi.Error{Code: abi.CodeGrantNotFound, Message: "connect <GitHub> é",
			ConnectURL: "http://127.0.0.1/connect/github?link=a&b=c"}}),
			`{"code":7,"name":"grant_not_found","message":"connect \u003cGitHub\u003e é","connect_url":"http://127.0.0.1/connect/github?link=a\u0026b=c","missing_scopes":[]}`},
		{"scope_reauth_required", reply(abi.Reply{Error: &abi.Error{Code: abi.CodeScopeReauthRequired, Message: "needs write",
			ConnectURL: "u", MissingScopes: []string{"write", "admin:org"}}}),
			`{"code":8,"name":"scope_reauth_required","message":"needs write","connect_url":"u","missing_scopes":["write","admin:org"]}`},
		{"unknown code", []byte(`{"error":{"code":"quota_exceeded","message":"m"}}`),
			`{"code":11,"name":"quota_exceeded","message":"m","connect_url":"","missing_scopes":[]}`},
		{"empty code", []byte(`{"error":{"code":"","message":"m"}}`),
			`{"code":6,"name":"internal","message":"m","connect_url":"","missing_scopes":[]}`},
		{"not JSON", []byte(`{"status":200,`), internal("alter_request reply is not a JSON object")},
		{"empty", []byte(``), internal("alter_request returned no reply")}, // the kernel has no empty blocks
		{"blank", []byte(` `), internal("alter_request reply is not a JSON object")},
		{"array", []byte(`[]`), internal("alter_request reply is not a JSON object")},
		{"no status", []byte(`{"headers":{}}`), internal(`alter_request reply has neither \"status\" nor \"error\"`)},
		{"string status", []byte(`{"status":"200"}`), internal(`alter_request reply's \"status\" is not an HTTP status`)},
		{"fraction status", []byte(`{"status":200.5}`), internal(`alter_request reply's \"status\" is not an HTTP status`)},
		{"headers list", []byte(`{"status":200,"headers":[]}`), internal(`alter_request reply's \"headers\" is not an object`)},
		{"header number", []byte(`{"status":200,"headers":{"a":1}}`), internal(`alter_request reply has a header that is not a string`)},
		{"body number", []byte(`{"status":200,"body":1}`), internal(`alter_request reply's \"body\" is not a string`)},
		{"bad base64", []byte(`{"status":200,"body_base64":"!!!!"}`), internal(`alter_request reply's \"body_base64\" is not valid base64`)},
		{"short base64", []byte(`{"status":200,"body_base64":"AAE"}`), internal(`alter_request reply's \"body_base64\" is not valid base64`)},
		{"both bodies", []byte(`{"status":200,"body":"a","body_base64":"AA=="}`), internal(`alter_request reply has both \"body\" and \"body_base64\"`)},
		{"error string", []byte(`{"error":"boom"}`), internal(`alter_request reply's \"error\" is not an object`)},
		{"error without code", []byte(`{"error":{"message":"m"}}`), internal(`alter_request reply's error has no string \"code\"`)},
		{"message number", []byte(`{"error":{"code":"timeout","message":5}}`), internal(`alter_request reply's error \"message\" is not a string`)},
		{"scopes string", []byte(`{"error":{"code":"timeout","missing_scopes":"a"}}`), internal(`alter_request reply's \"missing_scopes\" is not a list`)},
		{"scopes numbers", []byte(`{"error":{"code":"timeout","missing_scopes":[1]}}`), internal(`alter_request reply's \"missing_scopes\" holds a non-string`)},
		{"too large", reply(abi.Reply{Response: abi.NewResponse(200, nil, big)}),
			`{"code":4,"name":"too_large","message":"the alter_request reply does not fit in the buffer given to alter_do; it needs ` +
				strconv.Itoa(len(reply(abi.Reply{Response: abi.NewResponse(200, nil, big)}))) + `","connect_url":"","missing_scopes":[]}`},
	} {
		g.reply = tc.reply
		if got := g.call(t, "request", nil); got != tc.want {
			t.Errorf("%s: %.200s\n got %s\nwant %s", tc.name, tc.reply, got, tc.want)
		}
	}
	// A request that does not fit the buffer never reaches the host.
	g.requests = nil
	if got := g.call(t, "request", big[:1<<16]); !strings.Contains(got, `"name":"too_large","message":"the request does not fit`) ||
		len(g.requests) != 0 {
		t.Errorf("oversized request: %s, %d requests", got, len(g.requests))
	}
}

func internal(msg string) string {
	return `{"code":6,"name":"internal","message":"` + msg + `","connect_url":"","missing_scopes":[]}`
}

func TestFailPassesTheErrorOn(t *testing.T) {
	g := newGuest(t, nil)
	g.reply = []byte(`{"error":{"code":"host_not_allowed","message":"api.example.com is not in allowed_hosts"}}`)
	if got := g.call(t, "fail", nil); got != "error: host_not_allowed: api.example.com is not in allowed_hosts" {
		t.Errorf("got %q", got)
	}
	g.reply = []byte(`{"status":200}`)
	if got := g.call(t, "fail", nil); got != "ok" {
		t.Errorf("got %q", got)
	}
}

func TestOutputs(t *testing.T) {
	g := newGuest(t, map[string]string{"org": "Zürich ☃"})
	got := g.call(t, "mcp", []byte("first <é>"))
	want := `{"content":[{"type":"text","text":"first \u003cé\u003e"},{"type":"text","text":"\u003csecond\u003e"}],` +
		`"structuredContent":{"n":-9223372036854775808,"ok":false},"isError":true}`
	if got != want {
		t.Errorf("mcp:\n got %s\nwant %s", got, want)
	}
	if !utf8.ValidString(got) || !json.Valid([]byte(got)) {
		t.Error("mcp result is not valid JSON")
	}
	if got := g.call(t, "setting", []byte("org")); got != "Zürich ☃" {
		t.Errorf("setting org = %q", got)
	}
	if got := g.call(t, "setting", []byte("nope")); got != "(none)" {
		t.Errorf("setting nope = %q", got)
	}
	if got := g.call(t, "tiny", nil); got != "error: the tool's result does not fit in its buffer" {
		t.Errorf("tiny = %q", got)
	}
}

// TestWithWasiLibc compiles the harness against wasi-libc's headers, where
// Debian's wasi-libc is installed: the header must not clash with libc's
// declarations. With the wasm32 compiler-rt builtins also installed
// (libclang-rt-14-dev-wasm32), it links a reactor with libc too.
func TestWithWasiLibc(t *testing.T) {
	build(t)
	// scripts/setup.sh installs both; CI must not skip what it installed.
	skip := t.Skip
	if os.Getenv("CI") == "true" {
		skip = t.Fatal
	}
	if _, err := os.Stat("/usr/include/wasm32-wasi/string.h"); err != nil {
		skip("wasi-libc is not installed (apt-get install wasi-libc)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "libc.c")
	os.WriteFile(src, []byte("#include <string.h>\n#include <stdlib.h>\n#include <stdio.h>\n#include \"alter.h\"\n"+
		"ALTER_EXPORT(\"n\") int n(void) { char *p = malloc(32); snprintf(p, 32, \"%d\", 42); alter_output(p, strlen(p)); free(p); return 0; }\n"), 0o644)
	args := []string{"--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wall", "-Wextra", "-Werror", "-I", "."}
	if out, err := exec.Command("clang", append(args, "-c", "-o", filepath.Join(dir, "libc.o"), src)...).CombinedOutput(); err != nil {
		t.Fatalf("compiling with wasi-libc's headers: %v\n%s", err, out)
	}
	rt, _ := filepath.Glob("/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a")
	if len(rt) == 0 {
		skip("compiles; linking needs the wasm32 compiler-rt builtins (apt-get install libclang-rt-14-dev-wasm32)")
	}
	wasm := filepath.Join(dir, "libc.wasm")
	if out, err := exec.Command("clang", append(args, "-mexec-model=reactor", "-o", wasm, src)...).CombinedOutput(); err != nil {
		t.Fatalf("linking with wasi-libc: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(wasm)
	p, err := extism.NewPlugin(context.Background(), extism.Manifest{Wasm: []extism.Wasm{extism.WasmData{Data: b}}},
		extism.PluginConfig{EnableWasi: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if _, out, err := p.Call("n", nil); err != nil || string(out) != "42" {
		t.Errorf("n = %q, %v", out, err)
	}
}
