package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/wasmtest"
	"github.com/alterhost/alterhost/vault"
)

// rememberer is a guest that keeps state between calls, as real guests do
// (caches, static buffers): "remember" answers the input of the call its
// instance ran before, then keeps the new input.
const rememberer = `
  (global $prev (mut i32) (i32.const 0))
  (func (export "remember") (result i32)
    (local $n i32) (local $i i32)
    (call $out (i32.const 1024) (global.get $prev))
    (local.set $n (i32.wrap_i64 (call $input_length)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (i32.const 1024) (local.get $i))
                  (call $input_load_u8 (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (global.set $prev (local.get $n))
    (i32.const 0))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
`

// loadRememberer loads the rememberer with room for size instances under
// isolation.
func loadRememberer(t *testing.T, isolation plugin.Isolation, size int) *plugin.Plugin {
	t.Helper()
	m := manifest("mem", fmt.Sprintf(`,"limits":{"max_instances":%d,"queue_timeout_ms":5000}`, size), "remember")
	path := writePlugin(t, t.TempDir(), "mem.wasm", wasmtest.Guest(t, rememberer), m)
	spec, err := plugin.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t, nil)
	h.Isolation = isolation
	p, err := h.Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// remember calls the rememberer as person with secret and returns what the
// instance held from before.
func remember(t *testing.T, p *plugin.Plugin, person, secret string) string {
	t.Helper()
	ctx := vault.WithIdentity(context.Background(), vault.Identity{Subject: person})
	out, err := p.Call(ctx, &p.Manifest.Tools[0], json.RawMessage(`{"s":"`+secret+`"}`))
	if err != nil {
		t.Fatalf("%s: %v", person, err)
	}
	if len(out) == 0 {
		return ""
	}
	var in struct{ S string }
	if err := json.Unmarshal(out, &in); err != nil {
		t.Fatalf("%s: output %q: %v", person, out, err)
	}
	return in.S
}

// idle counts the instances the pool keeps.
func idle(t *testing.T, p *plugin.Plugin) int {
	t.Helper()
	m, err := p.Memories()
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestIsolationPerson(t *testing.T) {
	p := loadRememberer(t, plugin.IsolatePerson, 2)
	steps := []struct{ person, secret, want string }{
		{"alice", "a1", ""},   // the instance warmed at load: clean
		{"bob", "b1", ""},     // not alice's instance
		{"alice", "a2", "a1"}, // her own instance again: kept warm
		{"bob", "b2", "b1"},
		{"carol", "c1", ""}, // the pool is full: alice's, used longest ago, makes room
		{"alice", "a3", ""}, // hers was closed; bob's is not given to her
		{"bob", "b3", ""},   // carol's and alice's were newer; bob's made room for alice
		{"carol", "c2", ""}, // and carol's for bob
	}
	for i, s := range steps {
		if got := remember(t, p, s.person, s.secret); got != s.want {
			t.Fatalf("step %d: %s found %q; want %q", i, s.person, got, s.want)
		}
		if n := idle(t, p); n > 2 {
			t.Fatalf("step %d: %d idle instances; the pool holds at most 2", i, n)
		}
	}
}

// TestIsolationPooled shows what the pooled mode gives up, and so that the
// rememberer would catch a pool that let state cross people.
func TestIsolationPooled(t *testing.T) {
	p := loadRememberer(t, plugin.IsolatePooled, 2)
	remember(t, p, "alice", "a1")
	if got := remember(t, p, "bob", "b1"); got != "a1" {
		t.Fatalf("bob found %q; pooled mode reuses alice's instance, so want a1", got)
	}
	if n := p.Instantiations(); n != 0 {
		t.Errorf("%d instances made; pooled calls reuse the warm one", n)
	}
}

func TestIsolationCall(t *testing.T) {
	p := loadRememberer(t, plugin.IsolateCall, 2)
	for i := range 5 {
		if got := remember(t, p, "alice", fmt.Sprint("a", i)); got != "" {
			t.Fatalf("call %d found %q; every call must start on a clean instance", i, got)
		}
	}
	if n := p.Instantiations(); n < 4 {
		t.Errorf("%d instances made for 5 calls; each past the first (on the instance warmed at load) needs a new one", n)
	}
	if n := idle(t, p); n > 2 {
		t.Errorf("%d idle instances; the pool holds at most 2", n)
	}
}

// TestIsolationConcurrent runs people concurrently on a pool smaller than
// their number: an instance's remembered input must always be the caller's
// own.
func TestIsolationConcurrent(t *testing.T) {
	for _, iso := range []plugin.Isolation{plugin.IsolatePerson, plugin.IsolateCall} {
		t.Run(iso.String(), func(t *testing.T) {
			p := loadRememberer(t, iso, 3)
			var wg sync.WaitGroup
			for g := range 6 {
				person := fmt.Sprint("person", g)
				wg.Go(func() {
					for i := range 40 {
						got := remember(t, p, person, fmt.Sprint(person, "-", i))
						if got != "" && !strings.HasPrefix(got, person+"-") {
							t.Errorf("%s found %q", person, got)
							return
						}
						if iso == plugin.IsolateCall && got != "" {
							t.Errorf("%s found %q on a fresh instance", person, got)
							return
						}
					}
				})
			}
			wg.Wait()
			if n := idle(t, p); n > 3 {
				t.Errorf("%d idle instances; the pool holds at most 3", n)
			}
		})
	}
}

// TestIsolationMemories checks, through instance memory, that a person's
// input is gone from every instance once another person's call needed the
// room: the evicted instance is closed, not handed on.
func TestIsolationMemories(t *testing.T) {
	p := loadRememberer(t, plugin.IsolatePerson, 1)
	remember(t, p, "alice", "alice-secret-1234")
	remember(t, p, "bob", "b1")
	mems, err := p.Memories()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mems {
		for name, b := range m {
			if bytes.Contains(b, []byte("alice-secret-1234")) {
				t.Fatalf("alice's input is still in memory %q of an idle instance", name)
			}
		}
	}
}

// TestIsolationCloseWithSpare closes a plugin while a spare is being made.
func TestIsolationCloseWithSpare(t *testing.T) {
	p := loadRememberer(t, plugin.IsolateCall, 4)
	remember(t, p, "alice", "a1")
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := p.Call(context.Background(), &p.Manifest.Tools[0], nil)
	if f, ok := err.(*plugin.Failure); !ok || f.Kind != plugin.KindRetired {
		t.Fatalf("call after close: %v; want retired", err)
	}
}

func TestParseIsolation(t *testing.T) {
	for _, iso := range []plugin.Isolation{plugin.IsolatePerson, plugin.IsolatePooled, plugin.IsolateCall} {
		if got, err := plugin.ParseIsolation(iso.String()); err != nil || got != iso {
			t.Errorf("ParseIsolation(%q) = %v, %v", iso, got, err)
		}
	}
	for _, bad := range []string{"", "Person", "none", "shared"} {
		if _, err := plugin.ParseIsolation(bad); err == nil || !strings.Contains(err.Error(), "want person, pooled or call") {
			t.Errorf("ParseIsolation(%q) = %v; want a clear error", bad, err)
		}
	}
}

// TestIsolationPersonSpare checks that a clean spare is kept ready once
// several people use a plugin, and never for one person alone.
func TestIsolationPersonSpare(t *testing.T) {
	p := loadRememberer(t, plugin.IsolatePerson, 4)
	for i := range 10 {
		remember(t, p, "owner", fmt.Sprint("o", i))
	}
	if n := p.Instantiations(); n != 0 {
		t.Fatalf("%d instances made for one person's calls; want 0 (the warm one serves her)", n)
	}
	remember(t, p, "bob", "b1") // a newcomer: his own instance, and a spare
	deadline := time.Now().Add(10 * time.Second)
	for idle(t, p) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle instances; want owner's, bob's and a clean spare", idle(t, p))
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := p.Instantiations()
	if got := remember(t, p, "carol", "c1"); got != "" {
		t.Fatalf("carol found %q on the spare", got)
	}
	if got := remember(t, p, "owner", "o10"); got != "o9" {
		t.Fatalf("owner found %q; want her own o9", got)
	}
	// Carol took the spare, and the pool may make the next one meanwhile;
	// her call itself made none.
	if n := p.Instantiations() - before; n > 1 {
		t.Errorf("%d instances made after carol's call; want at most the next spare", n)
	}
}
