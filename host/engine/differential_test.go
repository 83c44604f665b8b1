package engine_test

// Differential tests: the same guests, inputs and alter_request replies
// under the Extism engine and the native engine must give the same output
// and the same failure (kind, code and message).
//
// Documented differences, which the comparison allows:
//   - A trap raised by the host rather than by Wasm (a refused var_set or
//     http_request, a kernel access outside the guest's blocks) has the
//     same kind, Trap, but its own message: the Extism engine's carries
//     wazero's "(recovered by wazero)" suffix and the SDK's wording.
//   - Kernel loads and stores outside every live block trap under the
//     native engine; the Extism kernel reads and writes any byte of its
//     memory (see TestNativeBounds, which runs those under native only).
//   - output_set and input_set across two blocks are ignored by the native
//     engine and taken by the Extism kernel.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/internal/pluginbuild"
	"github.com/alterhost/alterhost/internal/wasmtest"
)

// result is what a call gave, in comparable form.
type result struct {
	out     string
	failure engine.Failure
	code    uint32
	msg     string
}

func (r result) String() string {
	if r.failure == 0 {
		return fmt.Sprintf("ok %.80q", r.out)
	}
	return fmt.Sprintf("%s code=%d %q", r.failure, r.code, r.msg)
}

func resultOf(out []byte, err error) result {
	if err == nil {
		return result{out: string(out)}
	}
	var ce *engine.CallError
	if !errors.As(err, &ce) {
		return result{failure: -1, msg: err.Error()}
	}
	return result{out: string(out), failure: ce.Failure, code: ce.Code, msg: ce.Message}
}

// hostTrap tells a trap the host raised from one Wasm raised, whose
// message wazero writes the same way under both engines.
func hostTrap(r result) bool {
	return r.failure == engine.Trap && !strings.HasPrefix(r.msg, "wasm error:") && r.msg != "stack overflow"
}

// same reports whether the two results agree, allowing the documented
// differences.
func same(ext, nat result) bool {
	if ext.failure != nat.failure || ext.out != nat.out || ext.code != nat.code {
		return false
	}
	return ext.msg == nat.msg || hostTrap(ext) && hostTrap(nat)
}

type engineKind struct {
	name string
	open func(cacheDir string) (engine.Engine, error)
}

var engineKinds = []engineKind{
	{"extism", func(dir string) (engine.Engine, error) {
		return engine.NewExtism(engine.ExtismOptions{CacheDir: dir})
	}},
	{"native", func(dir string) (engine.Engine, error) {
		return engine.NewNative(engine.NativeOptions{CacheDir: dir})
	}},
}

// replyKey carries a test's canned alter_request reply through the call's
// context to cannedRequest.
type replyKey struct{}

// cannedRequest answers alter_request with the reply in the call's
// context, or with "got:" and the request when there is none.
func cannedRequest(ctx context.Context, req []byte) []byte {
	if r, ok := ctx.Value(replyKey{}).([]byte); ok {
		return r
	}
	return append([]byte("got:"), req...)
}

func diffConfig(timeout time.Duration) engine.Config {
	return engine.Config{MemoryPages: 256, Timeout: timeout, MaxOutputBytes: 1 << 20,
		Request: cannedRequest, Settings: map[string]string{"greeting": "hi there", "empty": ""}}
}

// pair is one module compiled by both engines.
type pair [2]engine.Module

// compileBoth compiles wasm with each engine over one cache folder, so a
// big module is compiled to machine code once.
func compileBoth(t testing.TB, cacheDir string, wasm []byte, cfg engine.Config) pair {
	t.Helper()
	var p pair
	for n, k := range engineKinds {
		eng, err := k.open(cacheDir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := eng.Compile(context.Background(), wasm, cfg)
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		t.Cleanup(func() { m.Close(context.Background()); eng.Close(context.Background()) })
		p[n] = m
	}
	return p
}

// callFresh calls export on a new instance of m.
func callFresh(t testing.TB, ctx context.Context, m engine.Module, export, input string) result {
	t.Helper()
	inst, err := m.Instantiate(ctx)
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	defer inst.Close(context.Background())
	return resultOf(inst.Call(ctx, export, []byte(input)))
}

type diffCase struct {
	export, input string
	reply         string // canned alter_request reply; empty: echo the request
	// check replaces the equality check, for outputs that are not
	// deterministic (clocks, randomness); it sees both results.
	check func(ext, nat result) error
}

// diff runs each case under both engines and compares.
func diff(t *testing.T, p pair, cases []diffCase) {
	t.Helper()
	for _, c := range cases {
		name := c.export
		if c.input != "" {
			name += "/" + fmt.Sprintf("%.24s", c.input)
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if c.reply != "" {
				ctx = context.WithValue(ctx, replyKey{}, []byte(c.reply))
			}
			ext := callFresh(t, ctx, p[0], c.export, c.input)
			nat := callFresh(t, ctx, p[1], c.export, c.input)
			if c.check != nil {
				if err := c.check(ext, nat); err != nil {
					t.Errorf("extism: %v\nnative: %v\n%v", ext, nat, err)
				}
				return
			}
			if !same(ext, nat) {
				t.Errorf("engines disagree\nextism: %v\nnative: %v", ext, nat)
			}
		})
	}
}

func sameKind(ext, nat result) error {
	if ext.failure != nat.failure || len(ext.out) != len(nat.out) {
		return errors.New("different kinds or output lengths")
	}
	return nil
}

// kernelSemantics exercises the kernel functions whose results a guest can
// observe, one export each; every output is a few digits or bytes that do
// not depend on where blocks are placed.
const kernelSemantics = `
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "length_unsafe" (func $length_unsafe (param i64) (result i64)))
  (import "extism:host/env" "load_u64" (func $load_u64 (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (import "extism:host/env" "http_request" (func $http_request (param i64 i64) (result i64)))
  (import "extism:host/env" "http_status_code" (func $http_status_code (result i32)))
  (import "extism:host/env" "http_headers" (func $http_headers (result i64)))
  (import "extism:host/env" "get_log_level" (func $get_log_level (result i32)))
  (import "extism:host/env" "log_trace" (func $log_trace (param i64)))
  (import "extism:host/env" "log_debug" (func $log_debug (param i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (import "extism:host/env" "log_warn" (func $log_warn (param i64)))
  (import "extism:host/env" "log_error" (func $log_error (param i64)))
  (import "extism:host/env" "reset" (func $reset))
  (import "extism:host/env" "error_get" (func $error_get (result i64)))
  (import "extism:host/env" "output_length" (func $output_length (result i64)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (data (i32.const 0) "greeting")
  (data (i32.const 16) "missing")
  (data (i32.const 32) "boom")
  (data (i32.const 48) "hello")
  (data (i32.const 64) "empty")
  ;; $digit writes one byte '0'+d at 1024 and makes it the output.
  (func $digit (param $d i64)
    (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (i32.wrap_i64 (local.get $d))))
    (call $out (i32.const 1024) (i32.const 1)))
  ;; $digits writes each value as a digit, for up to 4 values.
  (func $digits4 (param $a i64) (param $b i64) (param $c i64) (param $d i64)
    (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (i32.wrap_i64 (local.get $a))))
    (i32.store8 (i32.const 1025) (i32.add (i32.const 48) (i32.wrap_i64 (local.get $b))))
    (i32.store8 (i32.const 1026) (i32.add (i32.const 48) (i32.wrap_i64 (local.get $c))))
    (i32.store8 (i32.const 1027) (i32.add (i32.const 48) (i32.wrap_i64 (local.get $d))))
    (call $out (i32.const 1024) (i32.const 4)))
  (func (export "free_reuse") (result i32)
    (local $a i64) (local $b i64)
    (local.set $a (call $alloc (i64.const 16)))
    (call $free (local.get $a))
    (local.set $b (call $alloc (i64.const 8)))
    (call $digits4 (i64.extend_i32_u (i64.eq (local.get $a) (local.get $b)))
      (call $length (local.get $b)) (call $length_unsafe (local.get $b))
      (call $length (i64.add (local.get $b) (i64.const 1))))
    (i32.const 0))
  (func (export "length_checks") (result i32)
    (call $digits4 (call $length (i64.const 0)) (call $length (i64.const 12345))
      (call $length (call $alloc (i64.const 5))) (call $length (i64.const 99999999999)))
    (i32.const 0))
  (func (export "alloc_zero") (result i32)
    (call $digit (i64.extend_i32_u (i64.eqz (call $alloc (i64.const 0))))) (i32.const 0))
  (func (export "error_freed") (result i32)
    (local $e i64)
    (local.set $e (call $put (i32.const 32) (i32.const 4)))
    (call $error_set (local.get $e))
    (call $free (local.get $e))
    (i32.const 0))
  (func (export "error_rc0") (result i32)
    (call $error_set (call $put (i32.const 32) (i32.const 4))) (i32.const 0))
  (func (export "error_cleared") (result i32)
    (call $error_set (call $put (i32.const 32) (i32.const 4)))
    (call $error_set (i64.const 0)) (i32.const 5))
  (func (export "error_get") (result i32)
    (local $e i64)
    (local.set $e (call $put (i32.const 32) (i32.const 4)))
    (call $error_set (local.get $e))
    (call $digit (i64.extend_i32_u (i64.eq (call $error_get) (local.get $e))))
    (call $error_set (i64.const 0))
    (i32.const 0))
  (func (export "rc_no_msg") (result i32) (i32.const 7))
  (func (export "output_empty") (result i32)
    (call $output_set (call $alloc (i64.const 8)) (i64.const 0)) (i32.const 0))
  (func (export "output_after_free") (result i32)
    (local $a i64)
    (local.set $a (call $put (i32.const 48) (i32.const 5)))
    (call $output_set (local.get $a) (i64.const 5))
    (call $free (local.get $a))
    (i32.const 0))
  (func (export "output_length") (result i32)
    (call $out (i32.const 48) (i32.const 5))
    (call $digit (call $output_length)) (i32.const 0))
  (func (export "input_via_load") (result i32)
    (local $i i64) (local $n i64) (local $blk i64)
    (local.set $n (call $input_length))
    (local.set $blk (call $alloc (local.get $n)))
    (block $done (loop $next
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $blk) (local.get $i))
        (call $load_u8 (i64.add (call $input_offset) (local.get $i))))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $next)))
    (call $output_set (local.get $blk) (local.get $n)) (i32.const 0))
  (func (export "input_u64") (result i32)
    (local $blk i64)
    (local.set $blk (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $blk) (call $input_load_u64 (i64.const 0)))
    (call $output_set (local.get $blk) (i64.const 8)) (i32.const 0))
  (func (export "input_past_end") (result i32)
    (call $digit (i64.extend_i32_u (call $input_load_u8 (i64.add (call $input_length) (i64.const 3)))))
    (i32.const 0))
  (func (export "input_free") (result i32)
    (call $free (call $input_offset))
    (call $digit (call $input_length)) (i32.const 0))
  (func (export "u64_roundtrip") (result i32)
    (local $a i64)
    (local.set $a (call $alloc (i64.const 16)))
    (call $store_u64 (local.get $a) (i64.const 0x6867666564636261))
    (call $store_u64 (i64.add (local.get $a) (i64.const 8)) (call $load_u64 (local.get $a)))
    (call $output_set (local.get $a) (i64.const 16)) (i32.const 0))
  (func (export "config") (result i32)
    (local $v i64)
    (local.set $v (call $config_get (call $put (i32.const 0) (i32.const 8))))
    (call $output_set (local.get $v) (call $length (local.get $v))) (i32.const 0))
  (func (export "config_missing") (result i32)
    (call $digits4 (call $config_get (call $put (i32.const 16) (i32.const 7)))
      (call $config_get (call $put (i32.const 64) (i32.const 5)))
      (call $config_get (i64.const 0)) (i64.const 0))
    (i32.const 0))
  (func (export "vars") (result i32)
    (call $digit (call $var_get (call $put (i32.const 48) (i32.const 5)))) (i32.const 0))
  (func (export "var_set") (result i32)
    (call $var_set (call $put (i32.const 48) (i32.const 5)) (call $put (i32.const 48) (i32.const 5))) (i32.const 0))
  (func (export "http_request") (result i32)
    (drop (call $http_request (call $put (i32.const 48) (i32.const 5)) (i64.const 0))) (i32.const 0))
  (func (export "http_other") (result i32)
    (call $digits4 (i64.extend_i32_u (call $http_status_code)) (call $http_headers) (i64.const 0) (i64.const 0))
    (i32.const 0))
  (func (export "logs") (result i32)
    (call $log_trace (call $put (i32.const 48) (i32.const 5)))
    (call $log_debug (call $put (i32.const 48) (i32.const 5)))
    (call $log_info (call $put (i32.const 48) (i32.const 5)))
    (call $log_warn (call $put (i32.const 48) (i32.const 5)))
    (call $log_error (call $put (i32.const 48) (i32.const 5)))
    (call $log_info (i64.const 0))
    (call $log_info (i64.const 77777))
    (call $digit (i64.extend_i32_u (call $get_log_level))) (i32.const 0))
  (func (export "reset_mid") (result i32)
    (call $out (i32.const 32) (i32.const 4))
    (call $error_set (call $put (i32.const 32) (i32.const 4)))
    (call $reset)
    (call $digits4 (call $input_length) (call $error_get) (i64.const 0) (i64.const 0))
    (i32.const 0))
  (func (export "reply_free") (result i32)
    (local $r i64)
    (local.set $r (call $alter_request (call $put (i32.const 48) (i32.const 5))))
    (call $free (local.get $r))
    (call $digit (call $length (local.get $r))) (i32.const 0))
  (func (export "request_twice") (result i32)
    (local $r i64)
    (drop (call $alter_request (call $put (i32.const 48) (i32.const 5))))
    (local.set $r (call $alter_request (call $input_offset)))
    (call $output_set (local.get $r) (call $length (local.get $r))) (i32.const 0))
  (func (export "exit0") (result i32)
    (call $out (i32.const 48) (i32.const 5)) (call $proc_exit (i32.const 0)) (i32.const 9))
  (func (export "exit3") (result i32)
    (call $proc_exit (i32.const 3)) (i32.const 0))
  (func (export "no_result") (call $out (i32.const 48) (i32.const 5)))
  (func (export "two_results") (result i32 i32) (i32.const 0) (i32.const 0))
  (func (export "with_param") (param i32) (result i32) (i32.const 0))
`

// TestDifferentialFixtures runs the WAT fixtures of the engine and plugin
// tests, and the kernel-semantics guest, under both engines.
func TestDifferentialFixtures(t *testing.T) {
	cache := t.TempDir()
	short := 300 * time.Millisecond
	long := 10 * time.Second
	big := strings.Repeat("0123456789abcdef", 6400) // 100 KiB, several arena pages

	t.Run("engine_guests", func(t *testing.T) {
		wasm := wasmtest.Guest(t, guests)
		pl, ps := compileBoth(t, cache, wasm, diffConfig(long)), compileBoth(t, cache, wasm, diffConfig(short))
		diff(t, ps, []diffCase{{export: "spin"}, {export: "kernel_bomb"}})
		var cases []diffCase
		for _, e := range []string{"echo", "hello", "fail", "trap", "say_then_trap", "recurse", "grow", "huge", "lying",
			"lying_offset", "request", "bad_request_offset", "missing_export"} {
			cases = append(cases, diffCase{export: e, input: "ping"})
		}
		cases = append(cases, diffCase{export: "echo", input: big}, diffCase{export: "echo"})
		diff(t, pl, cases)
	})

	t.Run("plugin_guest", func(t *testing.T) {
		wasm := wasmtest.Guest(t, wasmtest.Hostile)
		// Recursing to a stack overflow takes seconds under the race
		// detector (each stack growth's copy is checked), so only spin
		// runs with a short deadline.
		diff(t, compileBoth(t, cache, wasm, diffConfig(short)), []diffCase{{export: "spin", input: `{"url":"ftp://x"}`}})
		p := compileBoth(t, cache, wasm, diffConfig(long))
		var cases []diffCase
		for _, e := range []string{"echo", "json", "trap", "recurse", "grow", "huge", "lying",
			"malformed_request", "request", "request_then_fail"} {
			cases = append(cases, diffCase{export: e, input: `{"url":"ftp://x"}`})
		}
		cases = append(cases,
			diffCase{export: "request", input: `{"url":"https://example.com/"}`,
				reply: `{"status":200,"headers":{"content-type":"text/plain"},"body":"hi"}`},
			diffCase{export: "request", input: "x", reply: ""},
		)
		diff(t, p, cases)
	})

	t.Run("sandbox", func(t *testing.T) {
		p := compileBoth(t, cache, wasmtest.Guest(t, sandbox), diffConfig(long))
		diff(t, p, []diffCase{
			{export: "clock", check: sameKind},
			{export: "random", check: func(ext, nat result) error {
				if err := sameKind(ext, nat); err != nil || ext.out == nat.out {
					return fmt.Errorf("want 16 random bytes from each: %v", err)
				}
				return nil
			}},
			{export: "preopens"}, {export: "sockets"}, {export: "http"}, {export: "vars"},
		})
	})

	t.Run("kernel", func(t *testing.T) {
		p := compileBoth(t, cache, wasmtest.Guest(t, kernelSemantics), diffConfig(long))
		var cases []diffCase
		for _, e := range []string{"free_reuse", "length_checks", "alloc_zero", "error_freed", "error_rc0",
			"error_cleared", "error_get", "rc_no_msg", "output_empty", "output_after_free", "output_length",
			"input_past_end", "input_free", "u64_roundtrip", "config", "config_missing", "vars", "var_set",
			"http_request", "http_other", "logs", "reset_mid", "reply_free", "exit0", "exit3", "no_result",
			"two_results", "with_param"} {
			cases = append(cases, diffCase{export: e, input: "input!"})
		}
		cases = append(cases,
			diffCase{export: "input_via_load", input: "through load_u8"},
			diffCase{export: "input_via_load", input: big[:9000]},
			diffCase{export: "input_u64", input: "abcdefgh"},
			diffCase{export: "input_u64", input: "abcdefghijk"},
			diffCase{export: "request_twice", input: "second"},
			diffCase{export: "reply_free", reply: `{"status":204,"headers":{}}`},
		)
		diff(t, p, cases)
	})
}

// pluginsDir is the repository's bundled plugins folder.
func pluginsDir(t testing.TB) string {
	dir := filepath.Join("..", "..", "plugins")
	if _, err := os.Stat(filepath.Join(dir, "text.wasm")); err != nil {
		t.Skipf("bundled plugins not found: %v", err)
	}
	return dir
}

// TestDifferentialPlugins runs the bundled plugins (a C guest and two Go
// guests) under both engines with the same arguments and replies.
func TestDifferentialPlugins(t *testing.T) {
	dir := pluginsDir(t)
	cache := t.TempDir()
	load := func(t *testing.T, name string) pair {
		wasm, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return compileBoth(t, cache, wasm, diffConfig(10*time.Second))
	}
	ok := func(body string) string {
		b, _ := json.Marshal(map[string]any{"status": 200, "headers": map[string]string{"content-type": "application/json"}, "body": body})
		return string(b)
	}
	const grantNotFound = `{"error":{"code":"grant_not_found","message":"no sandbox account is connected","connect_url":"https://alter.example/connect/x"}}`
	const scopes = `{"error":{"code":"scope_reauth_required","message":"needs write","connect_url":"https://alter.example/c","missing_scopes":["write"]}}`

	t.Run("text", func(t *testing.T) {
		p := load(t, "text")
		var cases []diffCase
		for _, in := range []string{`{"text":""}`, `{"text":"a\n\nb"}`, `{"text":"x\u00a0y\u2003z\u3000w\u0085v"}`,
			`{"text":"lone \ud800 surrogate \udc00 and pair \ud83d\ude00"}`, `{"text":"` + strings.Repeat("word ", 20000) + `"}`,
			`{}`, `not json`, `{"text":12}`, ``} {
			cases = append(cases, diffCase{export: "word_count", input: in}, diffCase{export: "reverse", input: in})
		}
		diff(t, p, cases)
	})
	t.Run("web", func(t *testing.T) {
		p := load(t, "web")
		diff(t, p, []diffCase{
			{export: "now", input: `{}`, check: func(ext, nat result) error {
				var a, b struct{ Unix int64 }
				if err := errors.Join(json.Unmarshal([]byte(ext.out), &a), json.Unmarshal([]byte(nat.out), &b)); err != nil {
					return err
				}
				if d := a.Unix - b.Unix; d < -5 || d > 5 {
					return fmt.Errorf("clocks %d apart", d)
				}
				return nil
			}},
			{export: "random_id", input: `{}`, check: func(ext, nat result) error {
				if err := sameKind(ext, nat); err != nil || ext.out == nat.out || ext.failure != 0 {
					return fmt.Errorf("want two different ids of one length: %v", err)
				}
				return nil
			}},
			{export: "fetch_url", input: `{"url":"https://example.com/","max_chars":5}`,
				reply: `{"status":200,"headers":{"content-type":"text/html"},"body":"<html>hello</html>"}`},
			{export: "fetch_url", input: `{"url":"https://example.com/"}`, reply: grantNotFound},
			{export: "fetch_url", input: `{"url":"https://example.com/"}`, reply: `not json at all`},
			{export: "fetch_url", input: `{"url":"https://example.com/"}`, reply: `{"status":200}`},
			{export: "fetch_url", input: `{"url":5}`},
			{export: "fetch_url", input: `[`},
		})
	})
	t.Run("sandbox", func(t *testing.T) {
		if raceEnabled || testing.Short() {
			t.Skip("a second Go guest is compiled only without -race and -short")
		}
		p := load(t, "sandbox")
		diff(t, p, []diffCase{
			{export: "whoami", input: `{}`, reply: ok(`{"subject":"owner","token_valid":true}`)},
			{export: "whoami", input: `{}`, reply: grantNotFound},
			{export: "list_notes", input: `{}`, reply: ok(`{"notes":[{"id":1,"text":"a"},{"id":2,"text":"b\u00e9"}]}`)},
			{export: "add_note", input: `{"text":"hello"}`, reply: scopes},
			{export: "add_note", input: `{"text":"hello"}`, reply: ok(`{"id":3}`)},
			{export: "add_note", input: `{"text":7}`},
			{export: "add_note", input: `{"text":"` + strings.Repeat("long ", 3000) + `"}`, reply: ok(`{}`)},
		})
	})
}

// TestDifferentialReuse makes many calls on one instance of each engine,
// as a warm pool does, and compares every answer: state left by one call
// (kernel memory, the error, the output) must not change the next.
func TestDifferentialReuse(t *testing.T) {
	p := compileBoth(t, t.TempDir(), wasmtest.Guest(t, kernelSemantics), diffConfig(10*time.Second))
	var insts [2]engine.Instance
	for n, m := range p {
		inst, err := m.Instantiate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close(context.Background())
		insts[n] = inst
	}
	seq := []struct{ export, input string }{
		{"error_rc0", ""}, {"output_length", ""}, {"u64_roundtrip", ""}, {"rc_no_msg", ""}, {"free_reuse", ""},
		{"input_via_load", strings.Repeat("x", 9000)}, {"input_via_load", "short"}, {"config", ""},
		{"error_freed", ""}, {"output_empty", ""}, {"request_twice", "again"}, {"logs", ""}, {"length_checks", ""},
	}
	for round := range 3 {
		for _, s := range seq {
			var r [2]result
			for n, inst := range insts {
				r[n] = resultOf(inst.Call(context.Background(), s.export, []byte(s.input)))
			}
			if !same(r[0], r[1]) {
				t.Errorf("round %d, %s: extism %v, native %v", round, s.export, r[0], r[1])
			}
			if r[0].failure != 0 && r[0].failure != engine.GuestError {
				t.Fatalf("%s: %v: the sequence must keep its instances alive", s.export, r[0])
			}
		}
	}
}

// TestDifferentialLanguages builds the sandbox example in C, Rust and
// AssemblyScript (skipping a language whose toolchain is missing) and runs
// its tools under both engines with the same replies.
func TestDifferentialLanguages(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("builds plugins with their toolchains; not under -short or -race")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ok := `{"status":200,"headers":{"content-type":"application/json"},"body":"{\"subject\":\"owner\",\"notes\":[{\"id\":1,\"text\":\"caf\\u00e9\"}]}"}`
	const grantNotFound = `{"error":{"code":"grant_not_found","message":"no sandbox account is connected","connect_url":"https://alter.example/connect/x"}}`
	const scopes = `{"error":{"code":"scope_reauth_required","message":"needs write","connect_url":"https://alter.example/c","missing_scopes":["write"]}}`
	cache := t.TempDir()
	for _, lang := range []pluginbuild.Lang{pluginbuild.C, pluginbuild.Rust, pluginbuild.AssemblyScript} {
		t.Run(string(lang), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sandbox.wasm")
			err := pluginbuild.Run(context.Background(), pluginbuild.Build{Lang: lang,
				Dir: filepath.Join(root, "examples", string(lang), "sandbox"), Out: out, Root: root})
			var te *pluginbuild.ToolchainError
			if errors.As(err, &te) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			wasm, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			diff(t, compileBoth(t, cache, wasm, diffConfig(10*time.Second)), []diffCase{
				{export: "whoami", input: `{}`, reply: ok},
				{export: "whoami", input: `{}`, reply: grantNotFound},
				{export: "list_notes", input: `{}`, reply: ok},
				{export: "add_note", input: `{"text":"hello"}`, reply: scopes},
				{export: "add_note", input: `{"text":"h\u00e9llo"}`, reply: ok},
				{export: "add_note", input: `{"text":7}`},
				{export: "add_note", input: `not json`},
				{export: "whoami", input: `{}`, reply: `not json`},
			})
		})
	}
}
