package plugin_test

// Start-up and memory figures for a folder of 20 plugins (issue 6), run by
// scripts/bench-startup.sh, which builds the folder and sets
// ALTERHOST_STARTUP_PLUGINS (and ALTERHOST_STARTUP_ROUNDS, default 5).
// Without it these tests skip. They print tables of medians; they check
// that every plugin loads, not how fast: timings are not test outcomes.
//
//   - TestStartupFolder: Folder.Reload of the folder on a new engine over a
//     compilation cache that is cold (a new folder each round) or warm
//     (filled by an earlier round), with GOMAXPROCS workers and with one
//     (one plugin at a time, as before loads ran in parallel).
//   - TestStartupGoGuest: one Go guest, step by step: compile from the warm
//     cache, instantiate, first call, second call; where each engine pays
//     the Go runtime's start (_initialize).
//   - TestInstanceMemory: the host's memory per pooled instance beyond the
//     guest's own linear memory.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/load"
	"github.com/alterhost/alterhost/vault/egress"
)

// startupFolder returns the benchmark's plugins folder and rounds, or
// skips.
func startupFolder(t *testing.T) (dir string, rounds int) {
	dir = os.Getenv("ALTERHOST_STARTUP_PLUGINS")
	if dir == "" {
		t.Skip("ALTERHOST_STARTUP_PLUGINS is not set; scripts/bench-startup.sh sets it")
	}
	rounds = 5
	if s := os.Getenv("ALTERHOST_STARTUP_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("ALTERHOST_STARTUP_ROUNDS=%q", s)
		}
		rounds = n
	}
	return dir, rounds
}

var engines = []string{"extism", "native"}

// withCold is false when ALTERHOST_STARTUP_COLD=0: the cold-cache rows,
// which take minutes, are left out.
func withCold() bool { return os.Getenv("ALTERHOST_STARTUP_COLD") != "0" }

func newEngine(t testing.TB, name, cacheDir string) engine.Engine {
	t.Helper()
	var eng engine.Engine
	var err error
	switch name {
	case "extism":
		eng, err = engine.NewExtism(engine.ExtismOptions{CacheDir: cacheDir})
	case "native":
		eng, err = engine.NewNative(engine.NativeOptions{CacheDir: cacheDir})
	}
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// cpuTime is the CPU time, user and system, the process has used so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadFolder loads dir on a new engine over cacheDir, returns how long
// Reload took and the CPU time it used (on a loaded machine the wall
// time varies with what else runs; the CPU time much less), and closes
// everything.
func loadFolder(t *testing.T, eng, dir, cacheDir string) (wall, cpu time.Duration) {
	t.Helper()
	e := newEngine(t, eng, cacheDir)
	defer e.Close(context.Background())
	h := &plugin.Host{Engine: e, Outbound: egress.New(egress.Options{})}
	f := h.OpenFolder(dir)
	runtime.GC() // the last round's garbage is not this round's cost
	start, cpu0 := time.Now(), cpuTime(t)
	_, errs := f.Reload(context.Background())
	wall, cpu = time.Since(start), cpuTime(t)-cpu0
	if len(errs) > 0 || len(f.Catalog().Plugins) != 20 {
		t.Fatalf("%s: %d plugins loaded, errors: %v", eng, len(f.Catalog().Plugins), errs)
	}
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return wall, cpu
}

// stats is the median, fastest and slowest of ds.
func stats(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%s | %s–%s", ms(s[len(s)/2]), ms(s[0]), ms(s[len(s)-1]))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func TestStartupFolder(t *testing.T) {
	dir, rounds := startupFolder(t)
	procs := runtime.GOMAXPROCS(0)
	t.Logf("startup: 20 plugins from %s, %d rounds, GOMAXPROCS %d", dir, rounds, procs)
	t.Logf("startup: | engine | cache | workers | Reload, median | fastest–slowest | CPU time, median |")
	t.Logf("startup: |---|---|--:|--:|---|--:|")
	for _, eng := range engines {
		warm := t.TempDir()
		var cold, coldCPU []time.Duration
		// Cold compiles take seconds; three rounds say enough, and the
		// first fills the warm cache.
		coldRounds := min(rounds, 3)
		if !withCold() {
			coldRounds = 1
		}
		for i := range coldRounds {
			cache := warm // the first cold round fills the warm cache
			if i > 0 {
				cache = t.TempDir()
			}
			wall, cpu := loadFolder(t, eng, dir, cache)
			cold, coldCPU = append(cold, wall), append(coldCPU, cpu)
		}
		if withCold() {
			t.Logf("startup: | %s | cold | %d | %s | %s |", eng, procs, stats(cold), ms(median(coldCPU)))
		}
		for _, workers := range []int{procs, 1} {
			prev := runtime.GOMAXPROCS(workers)
			var ds, cpus []time.Duration
			for range rounds {
				wall, cpu := loadFolder(t, eng, dir, warm)
				ds, cpus = append(ds, wall), append(cpus, cpu)
			}
			runtime.GOMAXPROCS(prev)
			t.Logf("startup: | %s | warm | %d | %s | %s |", eng, workers, stats(ds), ms(median(cpus)))
		}
	}
}

// goGuest is the Go guest the step-by-step figures use: examples/go/web,
// whose now tool does next to nothing.
func goGuest(t *testing.T, dir string) (*plugin.Spec, *abi.Tool) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, "*-go-web.wasm"))
	if len(matches) == 0 {
		t.Fatalf("no *-go-web.wasm in %s", dir)
	}
	spec, err := plugin.Read(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range spec.Manifest.Tools {
		if strings.HasPrefix(spec.Manifest.Tools[i].Name, "now") {
			return spec, &spec.Manifest.Tools[i]
		}
	}
	t.Fatal("the web plugin has no now tool")
	return nil, nil
}

func TestStartupGoGuest(t *testing.T) {
	dir, rounds := startupFolder(t)
	spec, tool := goGuest(t, dir)
	cfg := engine.Config{MemoryPages: spec.Manifest.Limits.MemoryPages(), Timeout: spec.Manifest.Limits.Timeout(),
		MaxOutputBytes: spec.Manifest.Limits.MaxOutputBytes, Request: func(context.Context, []byte) []byte { return nil }}
	ctx := context.Background()
	t.Logf("startup: one Go guest (%s, %d bytes), warm cache, step by step, %d rounds", filepath.Base(spec.File), len(spec.Wasm), rounds)
	t.Logf("startup: | engine | compile | instantiate | first call | second call |")
	t.Logf("startup: |---|--:|--:|--:|--:|")
	for _, name := range engines {
		cache := t.TempDir()
		var steps [4][]time.Duration
		for round := range rounds + 1 { // round 0 fills the cache
			e := newEngine(t, name, cache)
			runtime.GC()
			t0 := time.Now()
			m, err := e.Compile(ctx, spec.Wasm, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			inst, err := m.Instantiate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t2 := time.Now()
			var at [4]time.Time
			for i := range 2 {
				if _, err := inst.Call(ctx, tool.Export, []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
				at[2+i] = time.Now()
			}
			if round > 0 {
				steps[0] = append(steps[0], t1.Sub(t0))
				steps[1] = append(steps[1], t2.Sub(t1))
				steps[2] = append(steps[2], at[2].Sub(t2))
				steps[3] = append(steps[3], at[3].Sub(at[2]))
			}
			inst.Close(ctx)
			m.Close(ctx)
			e.Close(ctx)
		}
		t.Logf("startup: | %s | %s | %s | %s | %s |", name, ms(median(steps[0])), ms(median(steps[1])), ms(median(steps[2])), ms(median(steps[3])))
	}
}

// rss is the process's resident set size, in bytes.
func rss(t *testing.T) int64 {
	n, err := load.RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// heap is the Go heap in use after a collection, which also returns
// what is free to the system, so that RSS read next counts what lives.
func heap() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func kib(n int64) string { return fmt.Sprintf("%.0f KiB", float64(n)/1024) }

// TestInstanceMemory: K instances of each plugin, made the way the pool
// makes them (Module.Instantiate) and kept: the Go heap and the RSS they
// add, per instance, and that minus the guest's own linear memory, which
// is the host's overhead (the target: at most 256 KiB for non-Go guests).
// word_count after a call: the instance as a pool keeps it after serving.
func TestInstanceMemory(t *testing.T) {
	dir, _ := startupFolder(t)
	const k = 40
	ctx := context.Background()
	t.Logf("memory: %d instances of each plugin, kept; per instance: Go heap and RSS added, the guest's linear memory, and heap minus linear memory (the host's overhead)", k)
	t.Logf("memory: | engine | plugin | state | heap | RSS | linear memory | kernel memory | host overhead (heap − linear) |")
	t.Logf("memory: |---|---|---|--:|--:|--:|--:|--:|")
	for _, eng := range engines {
		e := newEngine(t, eng, t.TempDir())
		for _, c := range []struct{ file, tool, args string }{
			{"05-c-text.wasm", "", ""},
			{"05-c-text.wasm", "word_count", `{"text":"one two three"}`},
			{"08-c-sandbox.wasm", "", ""},
			{"13-rust-sandbox.wasm", "", ""},
			{"17-assemblyscript-sandbox.wasm", "", ""},
			{"02-go-web.wasm", "", ""},
		} {
			spec, err := plugin.Read(filepath.Join(dir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			lim := spec.Manifest.Limits
			m, err := e.Compile(ctx, spec.Wasm, engine.Config{MemoryPages: lim.MemoryPages(), Timeout: lim.Timeout(),
				MaxOutputBytes: lim.MaxOutputBytes, Request: func(context.Context, []byte) []byte { return nil }})
			if err != nil {
				t.Fatal(err)
			}
			insts := make([]engine.Instance, 0, k)
			h0, r0 := heap(), rss(t)
			for range k {
				inst, err := m.Instantiate(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if c.tool != "" {
					if _, err := inst.Call(ctx, c.tool, []byte(c.args)); err != nil {
						t.Fatal(err)
					}
				}
				insts = append(insts, inst)
			}
			h1, r1 := heap(), rss(t)
			mems, err := insts[0].(engine.Inspector).Memories()
			if err != nil {
				t.Fatal(err)
			}
			linear := int64(len(mems["guest"]))
			state := "new"
			if c.tool != "" {
				state = "after " + c.tool
			}
			perHeap, perRSS := (h1-h0)/k, (r1-r0)/k
			t.Logf("memory: | %s | %s | %s | %s | %s | %s | %s | %s |", eng, strings.TrimSuffix(c.file, ".wasm"), state,
				kib(perHeap), kib(perRSS), kib(linear), kib(int64(len(mems["kernel"]))), kib(perHeap-linear))
			for _, inst := range insts {
				inst.Close(ctx)
			}
			m.Close(ctx)
		}
		e.Close(ctx)
	}
}
