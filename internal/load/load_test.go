package load

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunKeepsTheRate(t *testing.T) {
	var calls atomic.Int64
	res := Run(context.Background(), Config{Rate: 200, Duration: 500 * time.Millisecond, Workers: 4},
		func(ctx context.Context, i int) error {
			calls.Add(1)
			if i == 7 {
				return errors.New("boom")
			}
			return nil
		})
	if res.Scheduled != 100 || res.OK != 99 || res.Failed != 1 || res.Dropped != 0 || calls.Load() != 100 {
		t.Fatalf("%v", res)
	}
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), "call 7: boom") {
		t.Errorf("errors: %v", res.Errors)
	}
	// 100 calls due over 0.495 s: well above 150/s unless the machine
	// stalls for a long time.
	if r := res.Rate(); r < 150 || r > 250 {
		t.Errorf("rate %.1f; want about 200", r)
	}
	if len(res.Latencies) != 99 || res.Quantile(0) > res.Quantile(0.5) || res.Quantile(0.5) > res.Quantile(1) {
		t.Errorf("latencies: %v", res.Latencies)
	}
}

func TestRunDropsWhenSaturated(t *testing.T) {
	// One worker busy for 50 ms a call and a backlog of one cannot keep
	// 100 calls/s: most calls find no room.
	res := Run(context.Background(), Config{Rate: 100, Duration: 300 * time.Millisecond, Workers: 1, Backlog: 1},
		func(ctx context.Context, i int) error { time.Sleep(50 * time.Millisecond); return nil })
	if res.Scheduled != 30 || res.Dropped < 15 || res.OK+res.Dropped != 30 {
		t.Fatalf("%v", res)
	}
	// Latency counts from when a call was due, so waiting in the backlog
	// shows.
	if res.Quantile(1) < 60*time.Millisecond {
		t.Errorf("max latency %v; want the backlog wait included", res.Quantile(1))
	}
	if len(res.Slowest) != 5 || res.Slowest[0].Latency != res.Quantile(1) || res.Slowest[4].Latency > res.Slowest[0].Latency {
		t.Errorf("slowest: %v", res.Slowest)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := Run(ctx, Config{Rate: 100, Duration: time.Hour, Workers: 2},
		func(ctx context.Context, i int) error { return nil })
	if time.Since(start) > 5*time.Second || res.Scheduled > 20 {
		t.Fatalf("did not stop: %v after %v", res, time.Since(start))
	}
}

func TestSaturate(t *testing.T) {
	res := Saturate(context.Background(), 4, 200*time.Millisecond, func(ctx context.Context, i int) error {
		time.Sleep(10 * time.Millisecond)
		return nil
	})
	// 4 workers at 10 ms a call: about 400 calls/s.
	if res.Failed != 0 || res.OK != res.Scheduled || res.Rate() < 200 || res.Rate() > 420 {
		t.Fatalf("%v", res)
	}
}

func TestRSS(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if rss < 1<<20 || rss > 64<<30 {
		t.Errorf("RSS %d bytes", rss)
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
calls_total{outcome="ok",tool="reverse"} 10
calls_total{outcome="ok",tool="word_count"} 5
calls_total{outcome="timeout",tool="reverse"} 1
notcalls_total{outcome="ok"} 100
odd{path="a b}c"} 1.5e3 1700000000
`))
	}))
	defer srv.Close()
	s, err := Scrape(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		got, want float64
	}{
		{s["go_goroutines"], 42},
		{s.Sum("calls_total"), 16},
		{s.Sum("calls_total", `outcome="ok"`), 15},
		{s.Sum("calls_total", `outcome="ok"`, `tool="reverse"`), 10},
		{s.Sum("calls_total", `tool="rev"`), 0},
		{s.Sum("odd"), 1500},
	} {
		if c.got != c.want {
			t.Errorf("got %v, want %v (samples %v)", c.got, c.want, s)
		}
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{5, 1, 3, 2}
	if m := Median(xs); m != 2 || xs[0] != 5 {
		t.Errorf("median %v of %v", m, xs)
	}
	if Median(nil) != 0 {
		t.Error("median of nothing")
	}
}

func TestFixed(t *testing.T) {
	var calls atomic.Int64
	res := Fixed(context.Background(), 3, 20, time.Second, func(ctx context.Context, w, i int) error {
		calls.Add(1)
		if w == 1 && i == 5 {
			return errors.New("boom")
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if res.Scheduled != 60 || res.OK != 59 || res.Failed != 1 || calls.Load() != 60 || len(res.Latencies) != 59 {
		t.Fatalf("%v", res)
	}
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), "worker 1 call 5: boom") {
		t.Errorf("errors: %v", res.Errors)
	}
	if res.Quantile(0) < time.Millisecond || res.Elapsed < 20*time.Millisecond || res.Rate() <= 0 {
		t.Errorf("latencies from %v, elapsed %v", res.Quantile(0), res.Elapsed)
	}
}

func TestFixedStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	res := Fixed(ctx, 2, 1000, time.Second, func(ctx context.Context, w, i int) error {
		if i == 3 {
			cancel()
		}
		return nil
	})
	if res.Scheduled > 10 || res.Failed != 0 {
		t.Fatalf("did not stop: %v", res)
	}
}

func TestQuantile(t *testing.T) {
	r := &Result{}
	for i := 1; i <= 100; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0: 1, 0.5: 50, 0.99: 99, 1: 100} {
		if got := r.Quantile(q); got != want*time.Millisecond {
			t.Errorf("quantile %v: %v; want %v ms", q, got, want)
		}
	}
}

func TestCPUTime(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	// Spin for 150 ms of CPU: the reading must grow by about that, in
	// steps of 10 ms.
	for deadline := time.Now().Add(150 * time.Millisecond); time.Now().Before(deadline); {
	}
	after, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 50*time.Millisecond || d > 10*time.Second {
		t.Errorf("CPU time grew by %v over 150 ms of spinning", d)
	}
}
