package vault

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracerName is the instrumentation scope of the vault's spans.
const tracerName = "github.com/alterhost/alterhost/vault"

// startSpan starts a child of the span in ctx, from that span's provider,
// so the vault needs no tracing configuration of its own. Without a
// recording span in ctx (tracing off, or the trace not sampled) it starts
// nothing and returns ctx as it is.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noop.Span{}
	}
	return parent.TracerProvider().Tracer(tracerName).Start(ctx, name)
}

// endSpan ends a vault span with the provider and an outcome word; never
// the subject, whose grant it is, nor anything of the grant.
func endSpan(span trace.Span, provider, outcome string, attrs ...attribute.KeyValue) {
	if span.IsRecording() {
		span.SetAttributes(attribute.String("alterhost.provider", provider), attribute.String("alterhost.outcome", outcome))
		span.SetAttributes(attrs...)
		// A missing grant is an answer (the person is asked to connect), not
		// a fault.
		if outcome != LookupOK && outcome != LookupGrantNotFound && outcome != LookupScopeReauth {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}
