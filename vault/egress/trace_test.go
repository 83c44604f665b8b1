package egress

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// headerEcho answers every request in-process and keeps its traceparent.
type headerEcho struct{ traceparent string }

func (h *headerEcho) RoundTrip(r *http.Request) (*http.Response, error) {
	h.traceparent = r.Header.Get("Traceparent")
	return &http.Response{StatusCode: 503, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func TestTracedTransport(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	sampled, parent := tp.Tracer("test").Start(context.Background(), "alter_request")
	defer parent.End()
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}}))

	for _, c := range []struct {
		name      string
		ctx       context.Context
		propagate bool
		want      string // traceparent upstream; "span" for the client span's
		spans     int
	}{
		{"untraced", context.Background(), true, "", 0},
		{"sampled, not propagated", sampled, false, "", 1},
		{"sampled, propagated", sampled, true, "span", 1},
		{"unsampled, propagated", unsampled, true, "00-01000000000000000000000000000000-0200000000000000-00", 0},
		{"unsampled, not propagated", unsampled, false, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(rec.Ended())
			up := &headerEcho{}
			rt := &tracedTransport{base: up, propagate: c.propagate}
			req, _ := http.NewRequestWithContext(c.ctx, "GET", "https://api.example.com/users/owner?q=owner", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if req.Header.Get("Traceparent") != "" {
				t.Error("the caller's request was changed")
			}
			spans := rec.Ended()[before:]
			if len(spans) != c.spans {
				t.Fatalf("%d spans, want %d", len(spans), c.spans)
			}
			want := c.want
			if want == "span" {
				sc := spans[0].SpanContext()
				want = "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
			}
			if up.traceparent != want {
				t.Errorf("upstream traceparent %q, want %q", up.traceparent, want)
			}
			for _, sp := range spans {
				if sp.Name() != "GET" || sp.Parent().SpanID() != parent.SpanContext().SpanID() {
					t.Errorf("span %s under %v", sp.Name(), sp.Parent().SpanID())
				}
				for _, kv := range sp.Attributes() {
					if v := kv.Value.Emit(); strings.Contains(v, "owner") || strings.Contains(v, "/users") {
						t.Errorf("%s=%q shows the path or query", kv.Key, v)
					}
				}
				if sp.Status().Code.String() != "Error" {
					t.Errorf("a 503 left status %v", sp.Status())
				}
			}
		})
	}
}
