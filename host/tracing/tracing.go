// Package tracing is alterhost's OpenTelemetry set-up: one trace per tool
// call, exported over OTLP/HTTP when an endpoint is configured, and off
// (nothing recorded, next to nothing spent) otherwise.
//
// Only this package imports the OpenTelemetry SDK and exporter. The
// instrumented packages import the API alone: host/mcpserver starts the
// root span of a tools/call with the provider this package hands it, and
// host/plugin, vault and vault/egress start their spans from the provider
// of the span already in the context (trace.SpanFromContext), so they need
// no wiring and, without a recording span above them, start none.
//
// The spans of one call:
//
//	tools/call TOOL        server   alterhost.plugin, alterhost.tool, alterhost.outcome
//	└ plugin.call          internal alterhost.plugin, alterhost.tool, alterhost.outcome
//	  └ alter_request      internal alterhost.provider, http.request.method, server.address,
//	    │                           http.response.status_code or alterhost.error_code
//	    ├ vault.credential internal alterhost.provider, alterhost.outcome
//	    │ └ vault.refresh  internal alterhost.provider, alterhost.outcome
//	    └ GET              client   http.request.method, server.address, server.port,
//	                                url.scheme, http.response.status_code, error.type
//
// No attribute holds a subject, tool arguments or output, a path's query, a
// header value, a token or a Connect link.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure New.
type Options struct {
	// Endpoint is the OTLP/HTTP collector's base URL, such as
	// http://127.0.0.1:4318; "/v1/traces" is appended unless the path ends
	// with it. Empty uses $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// $OTEL_EXPORTER_OTLP_ENDPOINT; with none of the three, tracing is off.
	Endpoint string
	// SampleRatio is the share of new traces recorded, in (0, 1]; zero
	// means 1. A call whose client sent a traceparent follows the client's
	// sampling decision.
	SampleRatio float64
	// PropagateUpstream sends W3C trace context (traceparent) on the
	// requests plugins make, so upstreams can join the trace. Off by
	// default: an upstream then learns nothing of our trace ids.
	PropagateUpstream bool
	// ServiceVersion is the resource's service.version.
	ServiceVersion string
	// Exporter, if set, replaces the OTLP exporter (tests); tracing is then
	// on whatever Endpoint says.
	Exporter sdktrace.SpanExporter
	// Logger hears of export failures.
	Logger *slog.Logger
}

// Tracing is a configured tracer provider. A nil *Tracing is tracing off:
// every method works on it and records nothing.
type Tracing struct {
	provider  trace.TracerProvider
	sdk       *sdktrace.TracerProvider
	propagate bool
}

// Enabled reports whether opts turn tracing on: an endpoint given, in
// opts or in the standard environment variables, or an exporter.
func Enabled(opts Options) bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") && opts.Exporter == nil {
		return false
	}
	return opts.Endpoint != "" || opts.Exporter != nil ||
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// New returns the tracing opts configure, or nil (tracing off) when no
// endpoint is configured. Spans are batched and exported in the
// background; call Shutdown to flush them.
func New(ctx context.Context, opts Options) (*Tracing, error) {
	if !Enabled(opts) {
		return nil, nil
	}
	ratio := opts.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	if ratio < 0 || ratio > 1 {
		return nil, fmt.Errorf("trace sample ratio %v: want a number in (0, 1]", ratio)
	}
	exp := opts.Exporter
	if exp == nil {
		var eopts []otlptracehttp.Option
		if opts.Endpoint != "" {
			u, err := endpointURL(opts.Endpoint)
			if err != nil {
				return nil, err
			}
			eopts = append(eopts, otlptracehttp.WithEndpointURL(u))
		}
		// Without options the exporter reads the OTEL_EXPORTER_OTLP_*
		// variables itself (endpoint, headers, TLS, timeout).
		var err error
		if exp, err = otlptracehttp.New(ctx, eopts...); err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
	}
	// The environment's resource attributes (OTEL_SERVICE_NAME,
	// OTEL_RESOURCE_ATTRIBUTES) come last so an operator can tell instances
	// apart.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "alterhost"),
			attribute.String("service.version", opts.ServiceVersion)),
		resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	if opts.Logger != nil {
		logger := opts.Logger
		// Export failures would otherwise go to the SDK's own stderr logger.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Warn("tracing: exporting spans failed", "error", err)
		}))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return &Tracing{provider: tp, sdk: tp, propagate: opts.PropagateUpstream}, nil
}

// NewWithProvider returns tracing that starts its spans from tp, for tests
// that record spans (sdk/trace/tracetest) without exporting them.
// Shutdown leaves tp alone.
func NewWithProvider(tp trace.TracerProvider, propagateUpstream bool) *Tracing {
	return &Tracing{provider: tp, propagate: propagateUpstream}
}

// endpointURL turns a collector base URL into its traces URL, as the OTLP
// specification does for OTEL_EXPORTER_OTLP_ENDPOINT.
func endpointURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("OTLP endpoint %q: want an http or https URL such as http://127.0.0.1:4318", endpoint)
	}
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}

// Provider returns the tracer provider for mcpserver.Options.Tracer, or nil
// when tracing is off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.provider
}

// PropagateUpstream reports whether upstream requests carry trace context,
// for egress.Options.PropagateTrace.
func (t *Tracing) PropagateUpstream() bool { return t != nil && t.propagate }

// Shutdown exports the spans still buffered and stops the exporter. Call
// it once, after the last tool call finished.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.sdk == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}
