package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alterhost/alterhost/internal/wasmtest"
)

// spinWithMemory is (module (memory 1) (func (export "spin") (result i32)
// (loop (br 0)) (i32.const 0))), which the rewrite instruments.
const spinWithMemory = "\x00asm\x01\x00\x00\x00\x01\x05\x01\x60\x00\x01\x7f\x03\x02\x01\x00\x05\x03\x01\x00\x01" +
	"\x07\x08\x01\x04spin\x00\x00\x0a\x0b\x01\x09\x00\x03\x40\x0c\x00\x0b\x41\x00\x0b"

// spinNoMemory is spinWithMemory without its memory: the rewrite refuses it.
const spinNoMemory = "\x00asm\x01\x00\x00\x00\x01\x05\x01\x60\x00\x01\x7f\x03\x02\x01\x00\x07\x08\x01\x04spin\x00\x00" +
	"\x0a\x0b\x01\x09\x00\x03\x40\x0c\x00\x0b\x41\x00\x0b"

// TestRewriteVersion fails when the rewrite's output changes, so that
// rewriteVersion is changed with it and stale cache entries go unused.
func TestRewriteVersion(t *testing.T) {
	out, err := instrument([]byte(spinWithMemory))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(out)
	const golden = "66304fcf7e3c95cc14fec6368200de732d2260d046a76b1d6345f04acb5b0b63"
	if got := hex.EncodeToString(sum[:]); got != golden || rewriteVersion != 1 {
		t.Fatalf("instrument's output changed (sha256 %s): increase rewriteVersion (now %d) and set this test's golden hash and version",
			got, rewriteVersion)
	}
}

func spinConfig() Config {
	return Config{MemoryPages: 2, Timeout: 100 * time.Millisecond, MaxOutputBytes: 1 << 10,
		Request: func(context.Context, []byte) []byte { return nil }}
}

// compileSpin compiles wasm on a new native engine over dir, checks that
// its spin export is stopped at the deadline, and reports whether the
// module took the instrumented path.
func compileSpin(t *testing.T, dir string, wasm []byte) bool {
	t.Helper()
	eng, err := NewNative(NativeOptions{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	m, err := eng.Compile(context.Background(), wasm, spinConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	inst, err := m.Instantiate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	if _, err := inst.Call(context.Background(), "spin", nil); FailureOf(err) != Timeout {
		t.Fatalf("spin: %v; want a timeout", err)
	}
	return m.(*nativeModule).interruptible
}

// TestRewriteCache: a warm start takes the instrumented module (or the
// word that there is none) from CacheDir; an entry that does not check out
// is ignored and replaced.
func TestRewriteCache(t *testing.T) {
	dir := t.TempDir()
	guest := wasmtest.Guest(t, wasmtest.Hostile)
	for _, c := range []struct {
		name          string
		wasm          []byte
		interruptible bool
	}{
		{"instrumented", guest, true},
		{"not instrumentable", []byte(spinNoMemory), false},
		{"small", []byte(spinWithMemory), true},
	} {
		sum := sha256.Sum256(c.wasm)
		entry := filepath.Join(dir, rewriteCacheName, hex.EncodeToString(sum[:]))
		want, wantErr := instrument(c.wasm)
		for round := range 2 { // cold, then warm
			if got := compileSpin(t, dir, c.wasm); got != c.interruptible {
				t.Fatalf("%s, round %d: interruptible = %v", c.name, round, got)
			}
			kind, payload, ok := readRewrite(entry)
			switch {
			case !ok:
				t.Fatalf("%s, round %d: no sound cache entry", c.name, round)
			case c.interruptible && (kind != 'I' || !bytes.Equal(payload, want)):
				t.Fatalf("%s, round %d: the entry is not the instrumented module", c.name, round)
			case !c.interruptible && (kind != 'N' || wantErr == nil || !strings.Contains(wantErr.Error(), string(payload))):
				t.Fatalf("%s, round %d: entry %c %q; want why it cannot be instrumented (%v)", c.name, round, kind, payload, wantErr)
			}
		}
	}

	// The warm path really serves the entry: one holding another module's
	// rewrite is what instrument returns.
	eng := &nativeEngine{rewrites: filepath.Join(dir, rewriteCacheName), logger: slog.New(slog.DiscardHandler)}
	sum := sha256.Sum256(guest)
	entry := filepath.Join(eng.rewrites, hex.EncodeToString(sum[:]))
	small, _ := instrument([]byte(spinWithMemory))
	eng.saveRewrite(entry, 'I', small)
	if got, err := eng.instrument(guest); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("the entry was not used: %v", err)
	}

	// Torn, rotted or foreign entries are ignored and written again.
	want, _ := instrument(guest)
	b, _ := os.ReadFile(entry)
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"torn":      b[:len(b)/2],
		"rotted":    append(append([]byte(nil), b[:len(b)-1]...), b[len(b)-1]^1),
		"foreign":   []byte("not an entry at all"),
		"bad kind":  append(append([]byte(rewriteMagic), 'X'), b[len(rewriteMagic)+1:]...),
		"not wasm":  nil,
		"truncated": b[:len(rewriteMagic)+3],
	} {
		if name == "not wasm" {
			eng.saveRewrite(entry, 'I', []byte("wasm it is not"))
		} else if err := os.WriteFile(entry, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := eng.instrument(guest); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s entry: instrument = %v", name, err)
		}
		if kind, payload, ok := readRewrite(entry); !ok || kind != 'I' || !bytes.Equal(payload, want) {
			t.Fatalf("%s entry: not replaced by a sound one", name)
		}
	}
}
