package egress

import (
	"errors"
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the upstream HTTP spans.
const tracerName = "github.com/alterhost/alterhost/vault/egress"

// tracedTransport gives each upstream HTTP exchange (each redirect hop
// too) a client span, and with propagate sends W3C trace context on it.
//
// It is ours rather than otelhttp's because otelhttp records the full URL
// (url.full), query included, and a query may carry personal data; these
// spans name the method, scheme, host and port, and the status, only.
type tracedTransport struct {
	base      http.RoundTripper
	propagate bool
}

// TracedTransport wraps base so that each exchange made in a recorded
// trace gets a client span, as plugins' upstream requests do; with
// propagate it also sends W3C trace context. The vault's providers use it
// for their token and revocation requests.
func TracedTransport(base http.RoundTripper, propagate bool) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &tracedTransport{base: base, propagate: propagate}
}

func (t *tracedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := trace.SpanFromContext(req.Context())
	if !parent.IsRecording() {
		if t.propagate && parent.SpanContext().IsValid() {
			// An unsampled trace still continues upstream, as not sampled.
			req = inject(req)
		}
		return t.base.RoundTrip(req)
	}
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[req.URL.Scheme]
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(req.Context(), req.Method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method),
			attribute.String("url.scheme", req.URL.Scheme),
			attribute.String("server.address", host)))
	defer span.End()
	if p, err := strconv.Atoi(port); err == nil {
		span.SetAttributes(attribute.Int("server.port", p))
	}
	req = req.WithContext(ctx)
	if t.propagate {
		req = inject(req)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		// The error's type only: its text repeats the URL.
		kind := "transport"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			kind = "timeout"
		}
		span.SetAttributes(attribute.String("error.type", kind))
		span.SetStatus(codes.Error, kind)
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	return resp, nil
}

// inject returns a copy of req carrying the context's traceparent; a
// RoundTripper must not change the request it was given.
func inject(req *http.Request) *http.Request {
	r := req.Clone(req.Context())
	propagation.TraceContext{}.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	return r
}
