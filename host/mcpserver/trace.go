package mcpserver

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/alterhost/alterhost/host/metrics"
)

// tracerName is the instrumentation scope of the tools/call spans.
const tracerName = "github.com/alterhost/alterhost/host/mcpserver"

// traced wraps a tool's handler in the call's server span, the root of the
// call's trace unless the client sent a traceparent. The span names the
// plugin, the tool and the outcome word metrics use; never the person, the
// arguments or the output. A nil tp leaves the handler as it is.
func traced(tp trace.TracerProvider, plugin, tool string, h mcp.ToolHandler) mcp.ToolHandler {
	if tp == nil {
		return h
	}
	tracer := tp.Tracer(tracerName)
	name := "tools/call " + tool
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if req.Extra != nil && req.Extra.Header != nil {
			// Over HTTP the request's headers come along; in sessions the
			// handler's context is not the POST's, so extract here rather
			// than in HTTP middleware.
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(req.Extra.Header))
		}
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("mcp.method.name", "tools/call"),
				attribute.String("alterhost.plugin", plugin), attribute.String("alterhost.tool", tool)))
		defer span.End()
		res, err := h(ctx, req)
		outcome := outcomeOf(res, err)
		span.SetAttributes(attribute.String("alterhost.outcome", outcome))
		if outcome != metrics.OutcomeOK && outcome != metrics.OutcomeConnectRequired {
			// The outcome word only: failure messages may quote the
			// person's input.
			span.SetStatus(codes.Error, outcome)
		}
		return res, err
	}
}
