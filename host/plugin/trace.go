package plugin

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/alterhost/alterhost/abi"
)

// tracerName is the instrumentation scope of the guest call and
// alter_request spans.
const tracerName = "github.com/alterhost/alterhost/host/plugin"

// startSpan starts a child of the span in ctx, from that span's provider,
// so the plugin host needs no tracing configuration of its own. Without a
// recording span in ctx (tracing off, or the trace not sampled) it starts
// nothing and returns ctx as it is.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noop.Span{}
	}
	return parent.TracerProvider().Tracer(tracerName).Start(ctx, name)
}

// endCall ends a plugin.call span with the call's outcome: "ok" or the
// Failure's kind, never its message, which may quote the arguments.
func endCall(span trace.Span, err error) {
	if span.IsRecording() {
		outcome := "ok"
		if f, ok := err.(*Failure); ok {
			outcome = f.Kind
		} else if err != nil {
			outcome = "internal"
		}
		span.SetAttributes(attribute.String("alterhost.outcome", outcome))
		if err != nil {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}

// traceRequest describes one alter_request on its span: the provider, the
// method and host, and the status or the refusal's code. Never the path,
// the query or a header, which may carry personal data or secrets.
func traceRequest(span trace.Span, provider string, req *abi.OutboundRequest, resp *abi.Response, aerr *abi.Error) {
	if provider != "" {
		span.SetAttributes(attribute.String("alterhost.provider", provider))
	}
	if req != nil {
		span.SetAttributes(attribute.String("http.request.method", req.Method),
			attribute.String("server.address", req.URL.Hostname()))
	}
	if aerr != nil {
		span.SetAttributes(attribute.String("alterhost.error_code", string(aerr.Code)))
		// The code only: the message may name the path or the person.
		span.SetStatus(codes.Error, string(aerr.Code))
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.Status))
}
