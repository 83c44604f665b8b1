package tracing_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/mcpserver"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/host/tracing"
	"github.com/alterhost/alterhost/internal/sandboxtest"
	"github.com/alterhost/alterhost/oauth/connect"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/oauth/sandbox"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
	"github.com/alterhost/alterhost/vault/seal"
)

// owner is the subject every call acts for; no span may name it.
const owner = "owner"

// stack is the server's parts wired as host.New wires them, with tracing
// recorded in memory: the bundled plugins, the vault over an embedded
// database, the --dev sandbox provider and the Connect pages. example.com,
// which the web plugin may reach, is answered in-process by upstream.
type stack struct {
	rec      *tracetest.SpanRecorder
	mcp      *mcp.ClientSession
	tools    *mcpserver.Server
	sandbox  *sandbox.Sandbox
	upstream *upstream
}

// upstream answers example.com in-process and keeps the traceparent
// header of each request it saw.
type upstream struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (u *upstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Hostname() != "example.com" {
		return u.base.RoundTrip(r)
	}
	u.mu.Lock()
	u.seen = append(u.seen, r.Header.Get("Traceparent"))
	u.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}},
		Body: io.NopCloser(strings.NewReader("hello")), Request: r}, nil
}

func (u *upstream) traceparents() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// cacheDir keeps the plugins' compiled code across this package's stacks:
// compiling them again for each, under the race detector, takes minutes.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "alterhost-tracing-test")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newStack(t *testing.T, propagate bool) *stack {
	t.Helper()
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tr := tracing.NewWithProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), propagate)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	baseURL, _ := url.Parse(base)
	data := t.TempDir()
	keys, err := seal.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := vault.OpenStore(ctx, "", data)
	if err != nil {
		t.Fatal(err)
	}
	providers, err := provider.Load("")
	if err != nil {
		t.Fatal(err)
	}
	// Tokens that live less than the vault's refresh margin: every lookup
	// refreshes, so the refresh span shows.
	sb := sandbox.New(sandbox.Options{BaseURL: base, RedirectURIs: []string{base + "/connect/sandbox/callback"},
		AccessTokenTTL: 30 * time.Second})
	p, err := sb.Provider()
	if err != nil {
		t.Fatal(err)
	}
	providers.Add(p)
	providers.WrapTransport(func(rt http.RoundTripper) http.RoundTripper { return egress.TracedTransport(rt, propagate) })
	v := vault.New(st, keys, providers, nil)
	auditor := vault.NewAuditor(st, nil)
	conn := &connect.Service{Store: st, Vault: v, Providers: providers, BaseURL: baseURL,
		Subject: func(*http.Request) (string, error) { return owner, nil }}
	v.Linker = conn

	eng, err := engine.NewExtism(engine.ExtismOptions{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	up := &upstream{}
	out := egress.New(egress.Options{Providers: providers, Credentials: v, Audit: auditor,
		PropagateTrace: tr.PropagateUpstream(),
		Transport: func(rt http.RoundTripper) http.RoundTripper {
			up.base = sb.Wrap(rt)
			return up
		}})
	h := &plugin.Host{Engine: eng, Outbound: out}
	folder := h.OpenFolder(filepath.Join("..", "..", "plugins"))
	if _, errs := folder.Reload(ctx); len(errs) > 0 {
		t.Fatal(errs)
	}
	tools := mcpserver.New(folder.Catalog(), mcpserver.Options{Tracer: tr.Provider(),
		Identify: func(context.Context, *mcp.CallToolRequest) (string, error) { return owner, nil }})

	r := chi.NewRouter()
	conn.Routes(r)
	r.Handle("/sandbox/*", sb.BrowserHandler())
	hs := &http.Server{Handler: r}
	go hs.Serve(ln)

	ct, stt := mcp.NewInMemoryTransports()
	ss, err := tools.MCP().Connect(ctx, stt, nil)
	if err != nil {
		t.Fatal(err)
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "tracing-test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		session.Close()
		ss.Close()
		hs.Close()
		folder.Close(ctx)
		eng.Close(ctx)
		auditor.Close()
		st.Close()
	})
	return &stack{rec: rec, mcp: session, tools: tools, sandbox: sb, upstream: up}
}

func (s *stack) call(t *testing.T, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := s.mcp.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func connectURL(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	meta, _ := res.Meta[mcpserver.ErrorMetaKey].(map[string]any)
	u, _ := meta["connect_url"].(string)
	if !res.IsError || u == "" {
		t.Fatalf("want a failure with a Connect URL, got %+v", res)
	}
	return u
}

// tree is the ended spans of one trace.
type tree []sdktrace.ReadOnlySpan

// traces groups the recorded spans by trace, in the order their roots
// (the tools/call spans) ended.
func traces(rec *tracetest.SpanRecorder) []tree {
	by := map[trace.TraceID]tree{}
	var order []trace.TraceID
	for _, sp := range rec.Ended() {
		id := sp.SpanContext().TraceID()
		if _, ok := by[id]; !ok {
			order = append(order, id)
		}
		by[id] = append(by[id], sp)
	}
	var out []tree
	for _, id := range order {
		out = append(out, by[id])
	}
	return out
}

// one returns the only span named name whose parent is parent (any
// parent if parent is nil).
func (tr tree) one(t *testing.T, name string, parent sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, sp := range tr {
		if sp.Name() == name && (parent == nil || sp.Parent().SpanID() == parent.SpanContext().SpanID()) {
			found = append(found, sp)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one span %q under %v, found %d in %s", name, parentName(parent), len(found), tr)
	}
	return found[0]
}

func (tr tree) none(t *testing.T, name string) {
	t.Helper()
	for _, sp := range tr {
		if sp.Name() == name {
			t.Errorf("unexpected span %q in %s", name, tr)
		}
	}
}

func (tr tree) String() string {
	var names []string
	for _, sp := range tr {
		names = append(names, fmt.Sprintf("%s%v", sp.Name(), sp.Attributes()))
	}
	return strings.Join(names, "; ")
}

func parentName(p sdktrace.ReadOnlySpan) string {
	if p == nil {
		return "any parent"
	}
	return p.Name()
}

// attrs checks that sp carries want, each key with that value.
func attrs(t *testing.T, sp sdktrace.ReadOnlySpan, want map[string]any) {
	t.Helper()
	got := map[string]attribute.Value{}
	for _, kv := range sp.Attributes() {
		got[string(kv.Key)] = kv.Value
	}
	for k, w := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("%s: no attribute %s (has %v)", sp.Name(), k, sp.Attributes())
			continue
		}
		if fmt.Sprint(v.AsInterface()) != fmt.Sprint(w) {
			t.Errorf("%s: %s = %v, want %v", sp.Name(), k, v.AsInterface(), w)
		}
	}
}

// TestToolCallTrace makes a call that needs a Connect flow, connects, and
// makes it again, then checks each call's span tree and that no span says
// who called, with which token, or where the Connect link points.
func TestToolCallTrace(t *testing.T) {
	s := newStack(t, false)
	link := connectURL(t, s.call(t, "whoami", nil))
	if page := sandboxtest.Approve(t, sandboxtest.Browser(), link); !strings.Contains(page, "Connected") {
		t.Fatalf("after consent: %s", page)
	}
	if res := s.call(t, "whoami", nil); res.IsError {
		t.Fatalf("whoami after connecting: %v", res.Content)
	}
	// Refused before anything leaves: the path and query must not show.
	s.call(t, "fetch_url", map[string]any{"url": "https://not-allowed.example.net/private/" + owner + "?q=" + owner})

	all := traces(s.rec)
	if len(all) != 3 {
		t.Fatalf("want 3 traces, one per call, got %d: %v", len(all), all)
	}

	// The call without a grant: a Connect URL, no upstream request.
	tr := all[0]
	root := tr.one(t, "tools/call whoami", nil)
	if root.Parent().IsValid() || root.SpanKind() != trace.SpanKindServer {
		t.Errorf("root: parent %v, kind %v", root.Parent(), root.SpanKind())
	}
	attrs(t, root, map[string]any{"alterhost.plugin": "sandbox", "alterhost.tool": "whoami",
		"alterhost.outcome": "connect_required", "mcp.method.name": "tools/call"})
	call := tr.one(t, "plugin.call", root)
	attrs(t, call, map[string]any{"alterhost.plugin": "sandbox", "alterhost.tool": "whoami"})
	req := tr.one(t, "alter_request", call)
	attrs(t, req, map[string]any{"alterhost.provider": "sandbox", "http.request.method": "GET",
		"server.address": sandbox.Host, "alterhost.error_code": "grant_not_found"})
	attrs(t, tr.one(t, "vault.credential", req), map[string]any{"alterhost.provider": "sandbox",
		"alterhost.outcome": "grant_not_found"})
	tr.none(t, "GET")
	tr.none(t, "vault.refresh")

	// Connected: the credential is refreshed and the request goes out.
	tr = all[1]
	root = tr.one(t, "tools/call whoami", nil)
	attrs(t, root, map[string]any{"alterhost.outcome": "ok"})
	call = tr.one(t, "plugin.call", root)
	attrs(t, call, map[string]any{"alterhost.outcome": "ok"})
	req = tr.one(t, "alter_request", call)
	attrs(t, req, map[string]any{"alterhost.provider": "sandbox", "http.request.method": "GET",
		"server.address": sandbox.Host, "http.response.status_code": 200})
	cred := tr.one(t, "vault.credential", req)
	attrs(t, cred, map[string]any{"alterhost.outcome": "ok"})
	refresh := tr.one(t, "vault.refresh", cred)
	attrs(t, refresh, map[string]any{"alterhost.provider": "sandbox",
		"alterhost.outcome": "ok", "alterhost.refresh.shared": false})
	// The refresh's own HTTP exchange with the provider's token endpoint.
	post := tr.one(t, "POST", refresh)
	if post.SpanKind() != trace.SpanKindClient {
		t.Errorf("POST: kind %v", post.SpanKind())
	}
	attrs(t, post, map[string]any{"http.request.method": "POST", "http.response.status_code": 200})
	get := tr.one(t, "GET", req)
	if get.SpanKind() != trace.SpanKindClient {
		t.Errorf("GET: kind %v", get.SpanKind())
	}
	attrs(t, get, map[string]any{"http.request.method": "GET", "server.address": sandbox.Host,
		"server.port": 443, "url.scheme": "https", "http.response.status_code": 200})

	tr = all[2]
	root = tr.one(t, "tools/call fetch_url", nil)
	attrs(t, root, map[string]any{"alterhost.plugin": "web"})
	attrs(t, tr.one(t, "alter_request", nil), map[string]any{"alterhost.error_code": "host_not_allowed",
		"server.address": "not-allowed.example.net"})
	tr.none(t, "GET")

	secrets := append([]string{owner, "sbx_at_", "sbx_rt_", "/private/", "?", "q=", "link", link},
		s.sandbox.IssuedSecrets()...)
	for _, sp := range s.rec.Ended() {
		texts := []string{sp.Name(), sp.Status().Description}
		for _, kv := range sp.Attributes() {
			texts = append(texts, kv.Value.Emit())
		}
		for _, ev := range sp.Events() {
			texts = append(texts, ev.Name)
		}
		for _, text := range texts {
			for _, sec := range secrets {
				if strings.Contains(text, sec) {
					t.Errorf("span %s carries %q in %q", sp.Name(), sec, text)
				}
			}
		}
	}
}

// TestIncomingTraceparent calls a tool over streamable HTTP with a
// client's traceparent, in sessions and statelessly: the call's server
// span continues the client's trace.
func TestIncomingTraceparent(t *testing.T) {
	s := newStack(t, false)
	for i, stateless := range []bool{false, true} {
		t.Run(fmt.Sprintf("stateless=%v", stateless), func(t *testing.T) {
			h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.tools.MCP() },
				&mcp.StreamableHTTPOptions{Stateless: stateless})
			srv := httptest.NewServer(h)
			defer srv.Close()
			traceID := fmt.Sprintf("0af7651916cd43dd8448eb211c80319%d", i)
			const spanID = "b7ad6b7169203331"
			client := &http.Client{Transport: headerTransport{"Traceparent": "00-" + traceID + "-" + spanID + "-01"}}
			session, err := mcp.NewClient(&mcp.Implementation{Name: "tp", Version: "1"}, nil).Connect(context.Background(),
				&mcp.StreamableClientTransport{Endpoint: srv.URL, HTTPClient: client}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer session.Close()
			if res, err := session.CallTool(context.Background(), &mcp.CallToolParams{Name: "now"}); err != nil || res.IsError {
				t.Fatalf("now: %v %v", err, res)
			}
			tr := traces(s.rec)
			if len(tr) != i+1 {
				t.Fatalf("want %d traces, got %v", i+1, tr)
			}
			root := tr[i].one(t, "tools/call now", nil)
			if got := root.SpanContext().TraceID().String(); got != traceID {
				t.Errorf("trace id %s, want the client's %s", got, traceID)
			}
			if got := root.Parent().SpanID().String(); got != spanID || !root.Parent().IsRemote() {
				t.Errorf("parent %s (remote %v), want the client's span %s", got, root.Parent().IsRemote(), spanID)
			}
			tr[i].one(t, "plugin.call", root)
		})
	}
}

type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestPropagateUpstream fetches a page through the web plugin: the
// upstream sees a traceparent naming the client span only when the
// operator allowed propagation.
func TestPropagateUpstream(t *testing.T) {
	for _, propagate := range []bool{false, true} {
		t.Run(fmt.Sprintf("propagate=%v", propagate), func(t *testing.T) {
			s := newStack(t, propagate)
			res := s.call(t, "fetch_url", map[string]any{"url": "https://example.com/private/" + owner + "?q=" + owner})
			if res.IsError {
				t.Fatalf("fetch_url: %v", res.Content)
			}
			seen := s.upstream.traceparents()
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests", len(seen))
			}
			tr := traces(s.rec)[0]
			get := tr.one(t, "GET", tr.one(t, "alter_request", nil))
			attrs(t, get, map[string]any{"server.address": "example.com", "http.response.status_code": 200})
			want := ""
			if propagate {
				want = fmt.Sprintf("00-%s-%s-01", get.SpanContext().TraceID(), get.SpanContext().SpanID())
			}
			if seen[0] != want {
				t.Errorf("upstream traceparent %q, want %q", seen[0], want)
			}
			for _, sp := range tr {
				for _, kv := range sp.Attributes() {
					if v := kv.Value.Emit(); strings.Contains(v, "q=") || strings.Contains(v, "/private/") {
						t.Errorf("%s: %s=%q shows the path or query", sp.Name(), kv.Key, v)
					}
				}
			}
		})
	}
}

// TestOff: with no endpoint anywhere, tracing is off and every method
// still works.
func TestOff(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := tracing.New(context.Background(), tracing.Options{PropagateUpstream: true})
	if err != nil || tr != nil {
		t.Fatalf("New = %v, %v; want nil, nil", tr, err)
	}
	if tr.Provider() != nil || tr.PropagateUpstream() || tr.Shutdown(context.Background()) != nil {
		t.Error("nil Tracing is not off")
	}
	if _, err := tracing.New(context.Background(), tracing.Options{Endpoint: "http://127.0.0.1:1", SampleRatio: 2}); err == nil {
		t.Error("a sample ratio of 2 was taken")
	}
	if _, err := tracing.New(context.Background(), tracing.Options{Endpoint: "127.0.0.1:4318"}); err == nil {
		t.Error("an endpoint without a scheme was taken")
	}
}

// collector is a loopback OTLP/HTTP receiver that counts the export
// requests it gets.
type collector struct {
	srv   *httptest.Server
	path  string // where export requests must arrive
	posts atomic.Int64
	bad   atomic.Value
}

func newCollector(t *testing.T, path string) *collector {
	c := &collector{path: path}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != c.path || len(body) == 0 ||
			r.Header.Get("Content-Type") != "application/x-protobuf" {
			c.bad.Store(fmt.Sprintf("%s %s %q, %d bytes", r.Method, r.URL.Path, r.Header.Get("Content-Type"), len(body)))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		c.posts.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// TestOTLPExport sends spans through the real OTLP/HTTP exporter to a
// loopback collector, configured by option and by the standard variable;
// Shutdown flushes them.
func TestOTLPExport(t *testing.T) {
	for _, how := range []string{"option", "option with a path", "env"} {
		t.Run(how, func(t *testing.T) {
			path := "/v1/traces"
			if how == "option with a path" {
				path = "/otlp/v1/traces"
			}
			c := newCollector(t, path)
			opts := tracing.Options{ServiceVersion: "test"}
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
			switch how {
			case "option":
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
				opts.Endpoint = c.srv.URL
			case "option with a path":
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
				opts.Endpoint = c.srv.URL + "/otlp/"
			default:
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.srv.URL)
			}
			tr, err := tracing.New(context.Background(), opts)
			if err != nil || tr == nil {
				t.Fatalf("New = %v, %v", tr, err)
			}
			_, span := tr.Provider().Tracer("test").Start(context.Background(), "tools/call test")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if bad := c.bad.Load(); bad != nil {
				t.Fatalf("collector got %v", bad)
			}
			if c.posts.Load() == 0 {
				t.Fatal("no spans reached the collector")
			}
		})
	}
}
