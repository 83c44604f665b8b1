package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/wasmtest"
	"github.com/alterhost/alterhost/vault/egress"
)

func toolNamesOf(c *plugin.Catalog) []string {
	var out []string
	for _, b := range c.Tools {
		out = append(out, b.Tool.Name)
	}
	return out
}

func binding(t *testing.T, c *plugin.Catalog, name string) plugin.Binding {
	t.Helper()
	for _, b := range c.Tools {
		if b.Tool.Name == name {
			return b
		}
	}
	t.Fatalf("no tool %s in %v", name, toolNamesOf(c))
	return plugin.Binding{}
}

func reload(t *testing.T, f *plugin.Folder) (bool, []error) {
	t.Helper()
	return f.Reload(context.Background())
}

func TestFolderReload(t *testing.T) {
	wasm := wasmtest.Guest(t, guest)
	dir := t.TempDir()
	f := newHost(t, nil).OpenFolder(dir)
	t.Cleanup(func() { f.Close(context.Background()) })

	// A new plugin appears.
	writePlugin(t, dir, "a.wasm", wasm, manifest("a", "", "echo"))
	if changed, errs := reload(t, f); !changed || len(errs) > 0 || !slices.Equal(toolNamesOf(f.Catalog()), []string{"echo"}) {
		t.Fatalf("new plugin: changed=%v errs=%v tools=%v", changed, errs, toolNamesOf(f.Catalog()))
	}
	v1 := binding(t, f.Catalog(), "echo")
	// Nothing changed on disk: nothing reloads.
	if changed, errs := reload(t, f); changed || len(errs) > 0 || binding(t, f.Catalog(), "echo") != v1 {
		t.Fatalf("unchanged folder: changed=%v errs=%v", changed, errs)
	}

	// A new version with another tool replaces it; the old version is
	// retired and refuses new calls, so callers move to the new one.
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	writePlugin(t, dir, "a.wasm", wasm, manifest("a", "", "echo", "json"))
	if changed, errs := reload(t, f); !changed || len(errs) > 0 || !slices.Equal(toolNamesOf(f.Catalog()), []string{"echo", "json"}) {
		t.Fatalf("new version: changed=%v errs=%v tools=%v", changed, errs, toolNamesOf(f.Catalog()))
	}
	v2 := binding(t, f.Catalog(), "echo")
	if v2.Plugin == v1.Plugin {
		t.Fatal("the plugin was not replaced")
	}
	waitRetired(t, v1)
	if out, err := v2.Plugin.Call(context.Background(), v2.Tool, []byte(`{"x":1}`)); err != nil || string(out) != `{"x":1}` {
		t.Fatalf("new version: %s %v", out, err)
	}

	// A broken new version leaves the old one serving, and is reported once.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "a.wasm"), []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644)
	changed, errs := reload(t, f)
	if changed || len(errs) != 1 || !strings.Contains(errs[0].Error(), "keeps serving") || binding(t, f.Catalog(), "echo") != v2 {
		t.Fatalf("broken version: changed=%v errs=%v", changed, errs)
	}
	if changed, errs := reload(t, f); changed || len(errs) > 0 {
		t.Fatalf("the same broken version again: changed=%v errs=%v", changed, errs)
	}
	if out, err := v2.Plugin.Call(context.Background(), v2.Tool, []byte(`{}`)); err != nil || string(out) != `{}` {
		t.Fatalf("the old version stopped serving: %s %v", out, err)
	}

	// Removing the file drops its tools and retires the plugin.
	os.Remove(filepath.Join(dir, "a.wasm"))
	if changed, errs := reload(t, f); !changed || len(errs) > 0 || len(f.Catalog().Tools) != 0 {
		t.Fatalf("removed: changed=%v errs=%v tools=%v", changed, errs, toolNamesOf(f.Catalog()))
	}
	waitRetired(t, v2)
}

// waitRetired waits until b's plugin refuses calls as retired.
func waitRetired(t *testing.T, b plugin.Binding) {
	t.Helper()
	for range 100 {
		_, err := b.Plugin.Call(context.Background(), b.Tool, []byte(`{}`))
		var fl *plugin.Failure
		if errors.As(err, &fl) && fl.Kind == plugin.KindRetired {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the replaced version still takes calls")
}

// TestFolderInFlight: a call in progress when its plugin is replaced
// finishes on the old version.
func TestFolderInFlight(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("slow answer"))
	}))
	defer slow.Close()
	host := strings.TrimPrefix(slow.URL, "http://")
	wasm := wasmtest.Guest(t, guest)
	dir := t.TempDir()
	f := newHost(t, nil).OpenFolder(dir)
	t.Cleanup(func() { f.Close(context.Background()) })
	writePlugin(t, dir, "a.wasm", wasm, manifest("a", `,"allowed_hosts":["`+host+`"]`, "request"))
	reload(t, f)
	old := binding(t, f.Catalog(), "request")

	done := make(chan string, 1)
	go func() {
		out, err := old.Plugin.Call(context.Background(), old.Tool, []byte(`{"url":"`+slow.URL+`"}`))
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		done <- string(out)
	}()
	time.Sleep(100 * time.Millisecond) // the call is waiting on the upstream
	time.Sleep(10 * time.Millisecond)
	writePlugin(t, dir, "a.wasm", wasm, manifest("a", `,"allowed_hosts":["`+host+`"]`, "request", "echo"))
	if changed, errs := reload(t, f); !changed || len(errs) > 0 {
		t.Fatalf("reload: %v %v", changed, errs)
	}
	close(release)
	select {
	case out := <-done:
		if !strings.Contains(out, "slow answer") {
			t.Fatalf("the in-flight call: %s", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight call never finished")
	}
	waitRetired(t, old)
}

func TestFolderPartialAndCollisions(t *testing.T) {
	wasm := wasmtest.Guest(t, guest)
	dir := t.TempDir()
	f := newHost(t, nil).OpenFolder(dir)
	t.Cleanup(func() { f.Close(context.Background()) })

	// Half a file (a copy in progress) does not load; the whole one does.
	full := filepath.Join(t.TempDir(), "p.wasm")
	writePlugin(t, filepath.Dir(full), "p.wasm", wasm, manifest("p", "", "echo"))
	b, _ := os.ReadFile(full)
	os.WriteFile(filepath.Join(dir, "p.wasm"), b[:len(b)/2], 0o644)
	if _, errs := reload(t, f); len(errs) != 1 || len(f.Catalog().Tools) != 0 {
		t.Fatalf("half a plugin: errs=%v tools=%v", errs, toolNamesOf(f.Catalog()))
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "p.wasm"), b, 0o644)
	if changed, errs := reload(t, f); !changed || len(errs) > 0 {
		t.Fatalf("the whole plugin: changed=%v errs=%v", changed, errs)
	}

	// b.wasm takes a plugin name a.wasm has: skipped until a gives it up.
	writePlugin(t, dir, "q1.wasm", wasm, manifest("q", "", "json"))
	writePlugin(t, dir, "q2.wasm", wasm, manifest("q", "", "trap"))
	_, errs := reload(t, f)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `plugin name "q" is already used`) ||
		!slices.Equal(toolNamesOf(f.Catalog()), []string{"echo", "json"}) {
		t.Fatalf("collision: errs=%v tools=%v", errs, toolNamesOf(f.Catalog()))
	}
	os.Remove(filepath.Join(dir, "q1.wasm"))
	if changed, errs := reload(t, f); !changed || len(errs) > 0 || !slices.Equal(toolNamesOf(f.Catalog()), []string{"echo", "trap"}) {
		t.Fatalf("after the first gave the name up: errs=%v tools=%v", errs, toolNamesOf(f.Catalog()))
	}
}

// TestFolderWatch: a burst of writes ends with the last version serving,
// and every catalog handed out in between is whole: each tool of one
// version, never a mix or a half-registered plugin.
func TestFolderWatch(t *testing.T) {
	wasm := wasmtest.Guest(t, guest)
	dir := t.TempDir()
	f := newHost(t, nil).OpenFolder(dir)
	t.Cleanup(func() { f.Close(context.Background()) })
	reload(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen [][]string
	var reported []error
	stopped := make(chan error, 1)
	go func() {
		stopped <- f.Watch(ctx, func(c *plugin.Catalog) {
			mu.Lock()
			seen = append(seen, toolNamesOf(c))
			mu.Unlock()
		}, func(errs []error) {
			mu.Lock()
			reported = append(reported, errs...)
			mu.Unlock()
		})
	}()
	time.Sleep(50 * time.Millisecond) // the watch is set up
	versions := [][]string{{"echo"}, {"echo", "json"}, {"echo", "json", "trap"}}
	for i := range 30 {
		v := versions[i%len(versions)]
		writePlugin(t, dir, "w.wasm", wasm, manifest("w", "", v...))
		// Sometimes a copy pauses halfway.
		if i == 10 {
			b, _ := os.ReadFile(filepath.Join(dir, "w.wasm"))
			os.WriteFile(filepath.Join(dir, "w.wasm"), b[:len(b)/3], 0o644)
		}
		time.Sleep(5 * time.Millisecond)
	}
	last := versions[29%len(versions)]
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(toolNamesOf(f.Catalog()), last) {
		if time.Now().After(deadline) {
			t.Fatalf("after the burst: tools %v; want %v", toolNamesOf(f.Catalog()), last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("onChange was never called")
	}
	for _, s := range seen {
		if !slices.ContainsFunc(versions, func(v []string) bool { return slices.Equal(v, s) }) {
			t.Fatalf("a catalog mixed versions: %v", s)
		}
	}
}

// errTexts returns errs as text, with dir left out of file names.
func errTexts(errs []error, dir string) []string {
	var out []string
	for _, err := range errs {
		out = append(out, strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""))
	}
	return out
}

// countingEngine is an engine whose Compile takes a while and records how
// many ran at once.
type countingEngine struct {
	engine.Engine
	mu        sync.Mutex
	now, peak int
}

func (e *countingEngine) Compile(ctx context.Context, wasm []byte, cfg engine.Config) (engine.Module, error) {
	e.mu.Lock()
	e.now++
	e.peak = max(e.peak, e.now)
	e.mu.Unlock()
	defer func() { e.mu.Lock(); e.now--; e.mu.Unlock() }()
	time.Sleep(20 * time.Millisecond)
	return e.Engine.Compile(ctx, wasm, cfg)
}

// TestFolderParallelLoad: many plugins, some broken and some colliding,
// load in parallel to the same catalog and the same errors, in the same
// order, as one at a time in file-name order; and so do later reloads
// that change, break, remove and rename.
func TestFolderParallelLoad(t *testing.T) {
	wasm := wasmtest.Guest(t, guest)
	// manifest names tools that all run the guest's echo export.
	manifest := func(name string, tools ...string) string {
		var ts []string
		for _, tool := range tools {
			ts = append(ts, fmt.Sprintf(`{"name":%q,"description":"test tool","export":"echo"}`, tool))
		}
		return fmt.Sprintf(`{"abi":"alter/v1","name":%q,"version":"1.0.0","tools":[%s]}`, name, strings.Join(ts, ","))
	}
	var want []string
	var wantErrs []string
	populate := func(dir string) {
		for i := range 12 {
			// Every plugin offers echo: the first file's wins.
			writePlugin(t, dir, fmt.Sprintf("a%02d.wasm", i), wasm, manifest(fmt.Sprintf("p%02d", i), "echo", fmt.Sprintf("t%02d", i)))
		}
		os.WriteFile(filepath.Join(dir, "b1.wasm"), []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644)
		writePlugin(t, dir, "b2.wasm", wasm, `{"abi":"alter/v1"}`)
		writePlugin(t, dir, "c1.wasm", wasm, manifest("dup", "d1"))
		writePlugin(t, dir, "c2.wasm", wasm, manifest("dup", "d2"))
		writePlugin(t, dir, "c3.wasm", wasm, manifest("p03", "d3"))
	}
	want = append(want, "echo")
	for i := range 12 {
		if i > 0 {
			want = append(want, fmt.Sprintf("t%02d", i))
			continue
		}
		want = append(want, "t00")
	}
	want = append(want, "d1")
	for i := 1; i < 12; i++ {
		wantErrs = append(wantErrs, fmt.Sprintf(`a%02d.wasm: tool "echo" is already served by a00.wasm; this plugin's copy is skipped (rename one of them)`, i))
	}
	var first []string
	for round := range 3 {
		dir := t.TempDir()
		populate(dir)
		eng := &countingEngine{Engine: newHost(t, nil).Engine}
		h := &plugin.Host{Engine: eng, Outbound: egress.New(egress.Options{AllowPrivate: true})}
		f := h.OpenFolder(dir)
		changed, errs := f.Reload(context.Background())
		got := errTexts(errs, dir)
		if !changed || !slices.Equal(toolNamesOf(f.Catalog()), want) {
			t.Fatalf("round %d: changed=%v tools=%v\nwant %v", round, changed, toolNamesOf(f.Catalog()), want)
		}
		if len(got) != len(wantErrs)+4 || !slices.Equal(got[:len(wantErrs)], wantErrs) ||
			!strings.HasPrefix(got[11], "b1.wasm: not a valid WebAssembly module") ||
			!strings.Contains(got[12], "b2.wasm") ||
			got[13] != `c2.wasm: plugin name "dup" is already used by c1.wasm; skipped (rename one of them)` ||
			got[14] != `c3.wasm: plugin name "p03" is already used by a03.wasm; skipped (rename one of them)` {
			t.Fatalf("round %d: errors:\n%s", round, strings.Join(got, "\n"))
		}
		if round == 0 {
			first = got
		} else if !slices.Equal(got, first) {
			t.Fatalf("round %d: other errors than round 0:\n%s", round, strings.Join(got, "\n"))
		}
		// The a files loaded ahead, in parallel; c1, c2 and c3 claim
		// names another file claims too, so they loaded in order.
		if runtime.GOMAXPROCS(0) > 1 && eng.peak < 2 {
			t.Errorf("round %d: loads ran one at a time", round)
		}
		if eng.peak > runtime.GOMAXPROCS(0) {
			t.Errorf("round %d: %d loads at once, more than GOMAXPROCS %d", round, eng.peak, runtime.GOMAXPROCS(0))
		}
		if round < 2 {
			f.Close(context.Background())
			continue
		}

		// Later reloads: a05 breaks (the old version serves on), a00
		// goes (a01's echo takes over), c1 goes (c2 gets the name), and
		// a new a025 takes p07's name from a07, which comes after it.
		v5 := binding(t, f.Catalog(), "t05")
		time.Sleep(10 * time.Millisecond)
		os.WriteFile(filepath.Join(dir, "a05.wasm"), []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644)
		os.Remove(filepath.Join(dir, "a00.wasm"))
		os.Remove(filepath.Join(dir, "c1.wasm"))
		writePlugin(t, dir, "a025.wasm", wasm, manifest("p07", "n7"))
		changed, errs = f.Reload(context.Background())
		got = errTexts(errs, dir)
		want2 := []string{"echo", "t01", "t02", "n7", "t03", "t04", "t05", "t06", "t08", "t09", "t10", "t11", "d2"}
		if !changed || !slices.Equal(toolNamesOf(f.Catalog()), want2) || binding(t, f.Catalog(), "t05") != v5 {
			t.Fatalf("second reload: changed=%v tools=%v\nwant %v", changed, toolNamesOf(f.Catalog()), want2)
		}
		echo := func(file string) string {
			return file + `: tool "echo" is already served by a01.wasm; this plugin's copy is skipped (rename one of them)`
		}
		wantErrs2 := []string{echo("a02.wasm"), echo("a03.wasm"), echo("a04.wasm"),
			"a05.wasm: not a valid WebAssembly module: malformed section header at byte 8 (the version loaded before keeps serving)",
			echo("a05.wasm"), echo("a06.wasm"),
			`a07.wasm: plugin name "p07" is already used by a025.wasm; skipped (rename one of them)`,
			echo("a08.wasm"), echo("a09.wasm"), echo("a10.wasm"), echo("a11.wasm"),
			`c3.wasm: plugin name "p03" is already used by a03.wasm; skipped (rename one of them)`}
		if !slices.Equal(got, wantErrs2) {
			t.Fatalf("second reload: errors:\n%s", strings.Join(got, "\n"))
		}
		f.Close(context.Background())
	}
}
