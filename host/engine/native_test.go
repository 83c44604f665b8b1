package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/internal/wasmtest"
)

func nativeModule(t testing.TB, wasm []byte, cfg engine.Config) engine.Module {
	t.Helper()
	eng, err := engine.NewNative(engine.NativeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := eng.Compile(context.Background(), wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()); eng.Close(context.Background()) })
	return m
}

func instantiate(t testing.TB, m engine.Module) engine.Instance {
	t.Helper()
	inst, err := m.Instantiate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close(context.Background()) })
	return inst
}

// outOfBounds are guests that hand the kernel offsets outside their
// blocks, which the native engine refuses (see differential_test.go for
// why the Extism engine is not compared here).
const outOfBounds = `
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "load_u64" (func $load_u64 (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (func (export "load_zero") (result i32) (drop (call $load_u8 (i64.const 0))) (i32.const 0))
  (func (export "load_past_block") (result i32)
    (drop (call $load_u8 (i64.add (call $alloc (i64.const 8)) (i64.const 8)))) (i32.const 0))
  (func (export "load_u64_straddle") (result i32)
    (drop (call $load_u64 (i64.add (call $alloc (i64.const 8)) (i64.const 1)))) (i32.const 0))
  (func (export "load_u64_huge") (result i32)
    (drop (call $load_u64 (i64.const -4))) (i32.const 0))
  (func (export "store_between") (result i32)
    (local $a i64)
    (local.set $a (call $alloc (i64.const 8)))
    (drop (call $alloc (i64.const 8)))
    (call $store_u64 (i64.add (local.get $a) (i64.const 4)) (i64.const 1)) (i32.const 0))
  (func (export "store_freed") (result i32)
    (local $a i64)
    (local.set $a (call $alloc (i64.const 8)))
    (call $free (local.get $a))
    (call $store_u8 (local.get $a) (i32.const 1)) (i32.const 0))
  (func (export "input_u64_past") (result i32)
    (drop (call $input_load_u64 (call $input_length))) (i32.const 0))
  (func (export "output_across") (result i32)
    (local $a i64)
    (local.set $a (call $put (i32.const 0) (i32.const 8)))
    (drop (call $put (i32.const 0) (i32.const 8)))
    (call $output_set (local.get $a) (i64.const 16)) (i32.const 0))
  (func (export "u64_tail") (result i32)
    (local $a i64)
    (local.set $a (call $alloc (i64.const 5)))
    (call $store_u64 (local.get $a) (i64.const 0x0000006f6c6c6568))
    (call $output_set (local.get $a) (call $length (local.get $a))) (i32.const 0))
`

func TestNativeBounds(t *testing.T) {
	m := nativeModule(t, wasmtest.Guest(t, outOfBounds), diffConfig(10*time.Second))
	for _, tc := range []struct {
		export, want, msg string
	}{
		{export: "load_zero", msg: "load_u8: 1 bytes at offset 0 are outside every live kernel memory block"},
		{export: "load_past_block", msg: "load_u8: 1 bytes at offset 72"},
		{export: "load_u64_straddle", msg: "load_u64: 8 bytes at offset 65"},
		{export: "load_u64_huge", msg: "load_u64: 8 bytes at offset 18446744073709551612"},
		{export: "store_between", msg: "store_u64: 8 bytes at offset 68"},
		{export: "store_freed", msg: "store_u8: 1 bytes at offset 64"},
		{export: "input_u64_past", msg: "input_load_u64: offset 5 is past the end of the 5-byte input"},
		// Ignored, as the Extism kernel ignores a range outside its memory.
		{export: "output_across", want: ""},
		// A block's capacity is rounded up to 8, so a word-sized store of
		// a short block's tail is in bounds.
		{export: "u64_tail", want: "hello"},
	} {
		t.Run(tc.export, func(t *testing.T) {
			input := ""
			if tc.export == "input_u64_past" {
				input = "input"
			}
			r := callFresh(t, context.Background(), m, tc.export, input)
			if tc.msg == "" {
				if r.failure != 0 || r.out != tc.want {
					t.Fatalf("got %v; want %q", r, tc.want)
				}
				return
			}
			if r.failure != engine.Trap || !strings.Contains(r.msg, tc.msg) {
				t.Fatalf("got %v; want a trap saying %q", r, tc.msg)
			}
		})
	}
}

// holder keeps its input in a kernel block across an alter_request and
// then returns the block: whatever runs meanwhile must leave it intact.
const holder = `
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (func (export "hold") (result i32)
    (local $blk i64) (local $i i64) (local $n i64)
    (local.set $n (call $input_length))
    (local.set $blk (call $alloc (local.get $n)))
    (block $done (loop $next
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $blk) (local.get $i)) (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $next)))
    (drop (call $alter_request (call $put (i32.const 0) (i32.const 1))))
    (call $output_set (local.get $blk) (local.get $n)) (i32.const 0))
`

// TestNativeIsolation checks that two instances have separate kernel
// memory, that a call leaves no data behind in its instance, and that an
// output does not change when the instance runs again.
func TestNativeIsolation(t *testing.T) {
	const secret = "SECRET-of-instance-a-0123456789"
	var mu sync.Mutex
	var during map[string][]byte
	var b engine.Instance
	m := nativeModule(t, wasmtest.Guest(t, holder), engine.Config{MemoryPages: 16, Timeout: 10 * time.Second,
		MaxOutputBytes: 1 << 20, Request: func(ctx context.Context, req []byte) []byte {
			if ctx.Value(replyKey{}) != nil {
				return []byte("inner")
			}
			// While a holds the secret, b runs and is inspected.
			out, err := b.Call(context.WithValue(ctx, replyKey{}, true), "hold", []byte("b's own input"))
			if err != nil || string(out) != "b's own input" {
				t.Errorf("b: %q, %v", out, err)
			}
			mems, err := b.(engine.Inspector).Memories()
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			during = mems
			mu.Unlock()
			return []byte("outer")
		}})
	a := instantiate(t, m)
	b = instantiate(t, m)
	out, err := a.Call(context.Background(), "hold", []byte(secret))
	if err != nil || string(out) != secret {
		t.Fatalf("a: %q, %v", out, err)
	}
	for name, mem := range during {
		if bytes.Contains(mem, []byte(secret)) {
			t.Errorf("b's %s memory held a's secret while a ran", name)
		}
	}
	for who, inst := range map[string]engine.Instance{"a": a, "b": b} {
		mems, err := inst.(engine.Inspector).Memories()
		if err != nil {
			t.Fatal(err)
		}
		if k := mems["kernel"]; bytes.ContainsFunc(k, func(r rune) bool { return r != 0 }) {
			t.Errorf("%s's kernel memory is not zero after its calls: %q", who, bytes.Trim(k, "\x00"))
		}
		if _, ok := mems["guest"]; !ok {
			t.Errorf("%s: no guest memory in %v", who, mems)
		}
	}
	// The output is the caller's copy.
	first, _ := a.Call(context.Background(), "hold", []byte("one"))
	if _, err := a.Call(context.Background(), "hold", []byte("two")); err != nil || string(first) != "one" {
		t.Errorf("an earlier output changed to %q (%v)", first, err)
	}
}

// starter logs from its _initialize, as a Go reactor's runtime start
// reaches the host, and counts how often it ran.
const starter = `
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (global $starts (mut i32) (i32.const 0))
  (data (i32.const 0) "started")
  (func (export "_initialize")
    (global.set $starts (i32.add (global.get $starts) (i32.const 1)))
    (call $log_info (call $put (i32.const 0) (i32.const 7))))
  (func (export "starts") (result i32)
    (i32.store8 (i32.const 100) (i32.add (i32.const 48) (global.get $starts)))
    (call $out (i32.const 100) (i32.const 1)) (i32.const 0))
`

type recordHandler struct {
	mu    sync.Mutex
	lines []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestNativeStartsGuestRuntimeAtInstantiation(t *testing.T) {
	h := &recordHandler{}
	cfg := diffConfig(10 * time.Second)
	cfg.Logger = slog.New(h)
	m := nativeModule(t, wasmtest.Guest(t, starter), cfg)
	inst := instantiate(t, m)
	if got := strings.Join(h.lines, "|"); got != "INFO started" {
		t.Fatalf("after Instantiate, the log is %q; want _initialize to have run once", got)
	}
	for range 3 {
		if out, err := inst.Call(context.Background(), "starts", nil); err != nil || string(out) != "1" {
			t.Fatalf("starts = %q, %v; want 1", out, err)
		}
	}
}

// TestNativeContexts checks the timeout, the caller's cancellation and
// deadline, and what alter_request's context carries.
func TestNativeContexts(t *testing.T) {
	type key struct{}
	// The context is the call's: it is read while the call runs.
	var (
		seenValue    any
		seenDeadline time.Time
		seenOK       bool
	)
	cfg := diffConfig(300 * time.Millisecond)
	cfg.Request = func(ctx context.Context, req []byte) []byte {
		seenValue = ctx.Value(key{})
		seenDeadline, seenOK = ctx.Deadline()
		return []byte("r")
	}
	m := nativeModule(t, wasmtest.Guest(t, guests), cfg)

	t.Run("request context", func(t *testing.T) {
		inst := instantiate(t, m)
		start := time.Now()
		if _, err := inst.Call(context.WithValue(context.Background(), key{}, "v"), "request", nil); err != nil {
			t.Fatal(err)
		}
		d := seenDeadline
		if seenValue != "v" || !seenOK || d.Sub(start) > 400*time.Millisecond || d.Sub(start) < 300*time.Millisecond {
			t.Errorf("alter_request's context: value %v, deadline %v (%v after start)", seenValue, seenOK, d.Sub(start))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		r := callFresh(t, context.Background(), m, "spin", "")
		if r.failure != engine.Timeout || r.msg != "the call did not finish within 300ms and was stopped" {
			t.Fatalf("got %v", r)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		r := callFresh(t, ctx, m, "spin", "")
		if r.failure != engine.Canceled || time.Since(start) > 2*time.Second {
			t.Fatalf("got %v after %s; want canceled soon after 50ms (the timeout is 300ms)", r, time.Since(start))
		}
	})
	t.Run("canceled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if r := callFresh(t, ctx, m, "echo", "x"); r.failure != engine.Canceled {
			t.Fatalf("got %v; want canceled", r)
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if r := callFresh(t, ctx, m, "spin", ""); r.failure != engine.Timeout {
			t.Fatalf("got %v; want a timeout", r)
		}
	})
	t.Run("many quick calls", func(t *testing.T) {
		// The timer is re-armed on every call: none may fire late.
		inst := instantiate(t, m)
		for i := range 2000 {
			in := fmt.Sprint(i)
			if out, err := inst.Call(context.Background(), "echo", []byte(in)); err != nil || string(out) != in {
				t.Fatalf("call %d: %q, %v", i, out, err)
			}
		}
	})
	t.Run("concurrent instances", func(t *testing.T) {
		var wg sync.WaitGroup
		for g := range 4 {
			inst := instantiate(t, m)
			wg.Go(func() {
				for i := range 200 {
					in := fmt.Sprintf("%d-%d", g, i)
					ctx, cancel := context.WithCancel(context.Background())
					out, err := inst.Call(ctx, "echo", []byte(in))
					cancel()
					if err != nil || string(out) != in {
						t.Errorf("%s: %q, %v", in, out, err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
}

func TestNativeConfig(t *testing.T) {
	eng, err := engine.NewNative(engine.NativeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	if _, err := eng.Compile(context.Background(), wasmtest.Guest(t, guests), engine.Config{}); err == nil {
		t.Error("an empty config compiled")
	}
	cfg := diffConfig(time.Second)
	if _, err := eng.Compile(context.Background(), []byte("\x00asm\x01\x00\x00\x00\x01\xff"), cfg); err == nil ||
		!strings.HasPrefix(err.Error(), "compile:") {
		t.Errorf("a broken module: %v", err)
	}
	unknown := wasmtest.Build(t, `(module (import "env" "system" (func (param i32))) (func (export "x") (result i32) i32.const 0))`)
	m, err := eng.Compile(context.Background(), unknown, cfg)
	if err == nil {
		_, err = m.Instantiate(context.Background())
		m.Close(context.Background())
	}
	if err == nil {
		t.Error("a module importing env.system instantiated")
	}
	// A trap in the runtime start fails Instantiate.
	broken := wasmtest.Guest(t, `(func (export "_initialize") unreachable)`)
	m, err = eng.Compile(context.Background(), broken, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if _, err := m.Instantiate(context.Background()); err == nil || !strings.Contains(err.Error(), "failed to initialize runtime: wasm error: unreachable") {
		t.Errorf("Instantiate = %v", err)
	}
}

// TestNativeSpinnersDoNotStallGo runs more spinning guests than there are
// Ps, with the garbage collector running: each must still be stopped at its
// deadline, so guest machine code must let Go preempt it.
func TestNativeSpinnersDoNotStallGo(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	m := nativeModule(t, wasmtest.Guest(t, guests), diffConfig(200*time.Millisecond))
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		inst := instantiate(t, m)
		wg.Go(func() {
			if _, err := inst.Call(context.Background(), "spin", nil); engine.FailureOf(err) != engine.Timeout {
				t.Errorf("spin: %v; want a timeout", err)
			}
		})
	}
	for range 5 {
		runtime.GC()
	}
	wg.Wait()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("three 200ms spinners took %s on one P", d)
	}
}
