package plugin

import (
	"context"
	"testing"
)

// TestStartSpanOff: without a recording span in the context (tracing
// off), a guest call and each alter_request start no span and allocate
// nothing for tracing.
func TestStartSpanOff(t *testing.T) {
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := startSpan(ctx, "plugin.call")
		if c != ctx || span.IsRecording() {
			t.Fatal("a span was started with tracing off")
		}
		endCall(span, nil)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call with tracing off", allocs)
	}
}
