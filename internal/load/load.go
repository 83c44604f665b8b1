// Package load drives a system at a fixed rate for a bounded time and
// measures what it saw: latencies, failures, and calls that could not
// start because every worker was busy. It also reads a process's resident
// memory and a Prometheus endpoint's samples, for soak tests.
//
// The rate is open-loop: call i is due at start + i/rate whatever happened
// to the calls before it, and its latency counts from when it was due, so
// a stall shows up in the latencies instead of silently lowering the rate.
package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config is one run.
type Config struct {
	// Rate is the calls started per second.
	Rate float64
	// Duration is how long calls are started for; the run then waits for
	// the calls in flight.
	Duration time.Duration
	// Workers is the most calls in flight at once.
	Workers int
	// Backlog is how many due calls may wait for a free worker; a call due
	// when the backlog is full is dropped and counted. Zero means Workers.
	Backlog int
	// Timeout bounds each call (default 30 s), so a run always ends.
	Timeout time.Duration
}

// Result is what a run saw.
type Result struct {
	Scheduled int // calls that fell due
	OK        int
	Failed    int
	Dropped   int     // due while the backlog was full; never started
	Errors    []error // the first few failures, for the report
	// Latencies of the successful calls, sorted, each from the time the
	// call was due to its end.
	Latencies []time.Duration
	// Slowest are the slowest successful calls, slowest first, to compare
	// with what else happened then.
	Slowest []Call
	Elapsed time.Duration // from the first call's due time to the last call's end
}

// Call is one successful call.
type Call struct {
	I       int
	Due     time.Duration // since the run began
	Latency time.Duration
}

func (c Call) String() string {
	return fmt.Sprintf("#%d at %.1fs took %v", c.I, c.Due.Seconds(), c.Latency.Round(100*time.Microsecond))
}

// slowest is how many calls Result.Slowest keeps.
const slowest = 5

// finish sorts the calls into Latencies and Slowest.
func (r *Result) finish(calls []Call) {
	slices.SortFunc(calls, func(a, b Call) int { return int(b.Latency - a.Latency) })
	r.Slowest = slices.Clone(calls[:min(slowest, len(calls))])
	r.Latencies = make([]time.Duration, len(calls))
	for i, c := range calls {
		r.Latencies[len(calls)-1-i] = c.Latency
	}
}

// maxErrors bounds Result.Errors: a broken run fails thousands of calls
// the same way.
const maxErrors = 10

// Quantile returns the q-quantile (0..1) of the latencies, or 0 without any.
func (r *Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.Latencies)-1))
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// Rate is the successful calls per second achieved.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// String summarises r in one line.
func (r *Result) String() string {
	return fmt.Sprintf("%d calls due, %d ok, %d failed, %d dropped in %.1fs: %.1f calls/s, p50 %v, p99 %v, max %v",
		r.Scheduled, r.OK, r.Failed, r.Dropped, r.Elapsed.Seconds(), r.Rate(),
		r.Quantile(0.5).Round(10*time.Microsecond), r.Quantile(0.99).Round(10*time.Microsecond),
		r.Quantile(1).Round(10*time.Microsecond))
}

type job struct {
	i   int
	due time.Time
}

// Run calls call(ctx, i) for i = 0, 1, ... at cfg.Rate for cfg.Duration,
// from at most cfg.Workers goroutines, and returns once every call has
// ended. A call fails when it returns an error. If ctx ends, no more calls
// start. Every goroutine Run starts has ended when it returns.
func Run(ctx context.Context, cfg Config, call func(ctx context.Context, i int) error) *Result {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = cfg.Workers
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	n := int(cfg.Rate * cfg.Duration.Seconds())
	res := &Result{}
	var mu sync.Mutex // guards res while workers run
	jobs := make(chan job, cfg.Backlog)
	var wg sync.WaitGroup
	var last time.Time
	var calls []Call
	start := time.Now()
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				err := call(cctx, j.i)
				cancel()
				end := time.Now()
				mu.Lock()
				if err != nil {
					res.Failed++
					if len(res.Errors) < maxErrors {
						res.Errors = append(res.Errors, fmt.Errorf("call %d: %w", j.i, err))
					}
				} else {
					res.OK++
					calls = append(calls, Call{I: j.i, Due: j.due.Sub(start), Latency: end.Sub(j.due)})
				}
				if end.After(last) {
					last = end
				}
				mu.Unlock()
			}
		}()
	}
	timer := time.NewTimer(0)
	<-timer.C
schedule:
	for i := range n {
		due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				break schedule
			}
		}
		res.Scheduled++ // only this goroutine writes Scheduled and Dropped
		select {
		case jobs <- job{i, due}:
		default:
			res.Dropped++
		}
	}
	close(jobs)
	wg.Wait()
	res.finish(calls)
	if last.After(start) {
		res.Elapsed = last.Sub(start)
	}
	return res
}

// Saturate measures capacity: workers goroutines each call back to back
// for d, and the Result tells how many calls per second that gave
// (closed-loop, so latencies count from each call's own start and nothing
// is dropped). i counts calls across workers, as in Run.
func Saturate(ctx context.Context, workers int, d time.Duration, call func(ctx context.Context, i int) error) *Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	res := &Result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := 0
	var calls []Call
	start := time.Now()
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				res.Scheduled++
				mu.Unlock()
				begin := time.Now()
				// The call gets a context of its own: the end of d stops
				// new calls, not the ones under way.
				cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := call(cctx, i)
				ccancel()
				mu.Lock()
				if err != nil {
					res.Failed++
					if len(res.Errors) < maxErrors {
						res.Errors = append(res.Errors, fmt.Errorf("call %d: %w", i, err))
					}
				} else {
					res.OK++
					calls = append(calls, Call{I: i, Due: begin.Sub(start), Latency: time.Since(begin)})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.finish(calls)
	return res
}

// Fixed measures latency and throughput at a fixed concurrency and a fixed
// amount of work: workers goroutines each make calls calls back to back
// (closed-loop, as one client each would), call(ctx, w, i) with w the
// worker and i its own call number from 0. Unlike Saturate, the run ends
// after a known number of calls rather than after a time, so every run of
// a benchmark does the same work. Latencies count from each call's own
// start; Elapsed from the first call's start to the last call's end. If
// ctx ends, no more calls start. Each call is bounded by timeout (30 s if
// zero or less), so a run always ends.
func Fixed(ctx context.Context, workers, calls int, timeout time.Duration, call func(ctx context.Context, w, i int) error) *Result {
	workers = max(workers, 1)
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	// Each worker keeps its own record, merged at the end: no lock on the
	// path being measured.
	type record struct {
		calls   []Call
		started int
		errs    []error
		failed  int
		end     time.Time
	}
	recs := make([]record, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := &recs[w]
			rec.calls = make([]Call, 0, max(calls, 0))
			for i := range max(calls, 0) {
				if ctx.Err() != nil {
					break
				}
				rec.started++
				begin := time.Now()
				cctx, cancel := context.WithTimeout(ctx, timeout)
				err := call(cctx, w, i)
				cancel()
				rec.end = time.Now()
				if err != nil {
					rec.failed++
					if len(rec.errs) < maxErrors {
						rec.errs = append(rec.errs, fmt.Errorf("worker %d call %d: %w", w, i, err))
					}
					continue
				}
				rec.calls = append(rec.calls, Call{I: w*calls + i, Due: begin.Sub(start), Latency: rec.end.Sub(begin)})
			}
		}()
	}
	wg.Wait()
	res := &Result{}
	var all []Call
	var last time.Time
	for _, rec := range recs {
		res.Scheduled += rec.started
		res.OK += len(rec.calls)
		res.Failed += rec.failed
		for _, err := range rec.errs {
			if len(res.Errors) < maxErrors {
				res.Errors = append(res.Errors, err)
			}
		}
		all = append(all, rec.calls...)
		if rec.end.After(last) {
			last = rec.end
		}
	}
	if last.After(start) {
		res.Elapsed = last.Sub(start)
	}
	res.finish(all)
	return res
}

// RSS returns the resident set size of process pid in bytes, from
// /proc/PID/status (Linux only).
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// Samples are the samples of one Prometheus text exposition, keyed by the
// series as exposed: the metric name with its labels, e.g.
// `go_goroutines` or `requests_total{code="200"}`.
type Samples map[string]float64

// Scrape fetches url and parses its Prometheus text exposition (version
// 0.0.4: comments, then one "series value [timestamp]" a line).
func Scrape(ctx context.Context, client *http.Client, url string) (Samples, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Parse reads a Prometheus text exposition.
func Parse(r io.Reader) (Samples, error) {
	s := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// Label values may hold spaces, so the series ends at the closing
		// brace when there are labels.
		cut := strings.LastIndexByte(line, '}') + 1
		if cut == 0 {
			cut = strings.IndexByte(line, ' ')
		}
		if cut <= 0 || cut >= len(line) {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		fields := strings.Fields(line[cut:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s[line[:cut]] = v
	}
	return s, sc.Err()
}

// Sum adds the samples of metric name whose labels include every one of
// labels, each written name="value".
func (s Samples) Sum(name string, labels ...string) float64 {
	var sum float64
	for series, v := range s {
		rest, ok := strings.CutPrefix(series, name)
		if !ok || rest != "" && rest[0] != '{' {
			continue
		}
		if !hasAll(rest, labels) {
			continue
		}
		sum += v
	}
	return sum
}

func hasAll(labels string, want []string) bool {
	for _, l := range want {
		if !strings.Contains(labels, "{"+l) && !strings.Contains(labels, ","+l) {
			return false
		}
	}
	return true
}

// Median returns the median of xs (the lower middle of an even count), or
// 0 for none. xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// clockTick is the unit of /proc/PID/stat's CPU times: USER_HZ, which
// Linux fixes at 100 for user space on every architecture Go runs on.
const clockTick = 10 * time.Millisecond

// CPUTime returns the CPU time (user and system) that process pid has used
// so far, from /proc/PID/stat (Linux only), in steps of 10 ms.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields that
	// follow are counted from its closing parenthesis, where field 3
	// (state) begins; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}
