package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestInstrumentBundled checks that the bundled plugins, a C guest and two
// Go guests, take the fast interrupt path rather than wazero's checks.
func TestInstrumentBundled(t *testing.T) {
	for _, name := range []string{"text", "web", "sandbox"} {
		wasm, err := os.ReadFile(filepath.Join("..", "..", "plugins", name+".wasm"))
		if err != nil {
			t.Skip(err)
		}
		if _, err := instrument(wasm); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestInstrumentFallback: a module the rewrite refuses (no memory) is still
// stopped at its deadline, by wazero.
func TestInstrumentFallback(t *testing.T) {
	// (module (func (export "spin") (result i32) (loop (br 0)) (i32.const 0)))
	wasm := []byte("\x00asm\x01\x00\x00\x00\x01\x05\x01\x60\x00\x01\x7f\x03\x02\x01\x00\x07\x08\x01\x04spin\x00\x00" +
		"\x0a\x0b\x01\x09\x00\x03\x40\x0c\x00\x0b\x41\x00\x0b")
	if _, err := instrument(wasm); err == nil {
		t.Fatal("a module without memory was instrumented")
	}
	eng, _ := NewNative(NativeOptions{})
	defer eng.Close(context.Background())
	m, err := eng.Compile(context.Background(), wasm, Config{MemoryPages: 1, Timeout: 100 * time.Millisecond,
		MaxOutputBytes: 1, Request: func(context.Context, []byte) []byte { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if m.(*nativeModule).interruptible {
		t.Fatal("the module is marked interruptible")
	}
	inst, err := m.Instantiate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	if _, err := inst.Call(context.Background(), "spin", nil); FailureOf(err) != Timeout {
		t.Fatalf("spin: %v; want a timeout", err)
	}
}
