package metrics_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/metrics"
	"github.com/alterhost/alterhost/host/plugin"
)

// BenchmarkCall is a warm call of the C text plugin's reverse, with
// metrics off and on: the difference is what instrumentation costs a call.
func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	spec, err := plugin.Read(filepath.Join("..", "..", "plugins", "text.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	eng, err := engine.NewExtism(engine.ExtismOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close(ctx)
	args := json.RawMessage(`{"text":"hello, world"}`)
	for _, c := range []struct {
		name string
		m    *metrics.Metrics
	}{{"off", nil}, {"on", metrics.New()}} {
		b.Run(c.name, func(b *testing.B) {
			h := &plugin.Host{Engine: eng, Metrics: c.m}
			p, err := h.Load(ctx, spec)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			tool := &p.Manifest.Tools[1]
			tm := p.ToolMetrics(tool.Name)
			for b.Loop() {
				start := time.Now()
				if _, err := p.Call(ctx, tool, args); err != nil {
					b.Fatal(err)
				}
				tm.Call(metrics.OutcomeOK, time.Since(start))
			}
		})
	}
}

// BenchmarkRecord is what one call's series cost alone: the tool call, one
// alter_request, the pool's wait and gauges.
func BenchmarkRecord(b *testing.B) {
	p := metrics.New().Plugin("p")
	tl := p.Tool("t", "sandbox")
	for b.Loop() {
		p.Waited(time.Microsecond)
		p.AddIdle(-1)
		p.AddInUse(1)
		tl.Request(200, "", time.Millisecond)
		p.AddInUse(-1)
		p.AddIdle(1)
		tl.Call(metrics.OutcomeOK, time.Millisecond)
	}
}
