package main

// The start-up of the real binary with 20 plugins (issue 6), run by
// scripts/bench-startup.sh, which builds the plugins and the binary and
// sets ALTERHOST_STARTUP_PLUGINS and ALTERHOST_STARTUP_BIN (and
// ALTERHOST_STARTUP_ROUNDS, default 5). Without them this test skips. It
// prints a table of medians and checks only that every plugin loads.
//
// Ready is from just before the process starts until /readyz answers 200;
// RSS is the process's resident memory after it has then been idle for
// 2 s. The baseline is the same binary serving an empty plugins folder:
// the host itself, with no Wasm.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/plugin"
	loadgen "github.com/alterhost/alterhost/internal/load"
)

// readyRE finds the MCP URL and the tool count in the serving log line.
var readyRE = regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)/mcp .*\btools=(\d+)`)

// startOnce starts bin, waits until /readyz says ready, and returns how
// long that took, the CPU time the process had used by then (10 ms
// steps), and, if idleRSS, its resident memory after 2 s idle. It stops
// the process before returning.
func startOnce(t *testing.T, bin, plugins, data, engine string, wantTools int, idleRSS bool) (time.Duration, time.Duration, int64) {
	t.Helper()
	cmd := exec.Command(bin, "--no-auth", "--addr", "127.0.0.1:0", "--plugins", plugins, "--data-dir", data,
		"--metrics-addr", "", "--engine", engine)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	var logs strings.Builder
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var m []string
	select {
	case m = <-found:
	case <-time.After(2 * time.Minute):
		t.Fatalf("alterhost did not start")
	}
	if n, _ := strconv.Atoi(m[2]); n != wantTools {
		t.Fatalf("%s serves %d tools; want %d:\n%s", plugins, n, wantTools, logs.String())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for attempt := 0; ; attempt++ {
		resp, err := client.Get(m[1] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if attempt == 5000 {
			t.Fatalf("/readyz never said ready: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	cpu, err := loadgen.CPUTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !idleRSS {
		return took, cpu, 0
	}
	time.Sleep(2 * time.Second)
	return took, cpu, rssOf(t, cmd.Process.Pid)
}

// rssOf reads a process's resident set size, in bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := loadgen.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestStartupBinary(t *testing.T) {
	plugins, bin := os.Getenv("ALTERHOST_STARTUP_PLUGINS"), os.Getenv("ALTERHOST_STARTUP_BIN")
	if plugins == "" || bin == "" {
		t.Skip("ALTERHOST_STARTUP_PLUGINS and ALTERHOST_STARTUP_BIN are not set; scripts/bench-startup.sh sets them")
	}
	rounds := 5
	if s := os.Getenv("ALTERHOST_STARTUP_ROUNDS"); s != "" {
		var err error
		if rounds, err = strconv.Atoi(s); err != nil || rounds < 1 {
			t.Fatalf("ALTERHOST_STARTUP_ROUNDS=%q", s)
		}
	}
	// The tool count says every plugin loaded.
	matches, _ := filepath.Glob(filepath.Join(plugins, "*.wasm"))
	wantTools := 0
	for _, p := range matches {
		spec, err := plugin.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		wantTools += len(spec.Manifest.Tools)
	}
	empty := t.TempDir()
	t.Logf("startup: the binary, %d plugins (%d tools), %d rounds; ready = process start until /readyz says ready", len(matches), wantTools, rounds)
	t.Logf("startup: | engine | plugins | cache | ready, median | fastest–slowest | CPU time, median | idle RSS, median |")
	t.Logf("startup: |---|--:|---|--:|---|--:|--:|")
	for _, c := range []struct {
		engine, plugins string
		tools           int
		cold            bool
	}{
		{"native", empty, 0, false},
		{"extism", plugins, wantTools, false},
		{"native", plugins, wantTools, false},
		{"extism", plugins, wantTools, true},
		{"native", plugins, wantTools, true},
	} {
		if c.cold && os.Getenv("ALTERHOST_STARTUP_COLD") == "0" {
			continue
		}
		data := t.TempDir()
		if !c.cold {
			startOnce(t, bin, c.plugins, data, c.engine, c.tools, false) // fills the cache
		}
		n := rounds
		if c.cold {
			n = min(rounds, 3) // seconds each; three say enough
		}
		var ready, cpus []time.Duration
		var rss []int64
		for range n {
			if c.cold {
				data = t.TempDir()
			}
			took, cpu, r := startOnce(t, bin, c.plugins, data, c.engine, c.tools, !c.cold)
			ready, cpus, rss = append(ready, took), append(cpus, cpu), append(rss, r)
		}
		s := slices.Clone(ready)
		slices.Sort(s)
		cache, mem := "warm", fmt.Sprintf("%.1f MiB", float64(median(rss))/(1<<20))
		if c.cold {
			cache, mem = "cold", "–"
		}
		count := len(matches)
		if c.plugins == empty {
			count = 0
		}
		t.Logf("startup: | %s | %d | %s | %s | %s–%s | %s | %s |", c.engine, count, cache, msOf(median(ready)), msOf(s[0]), msOf(s[len(s)-1]),
			msOf(median(cpus)), mem)
	}
}

func msOf(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
