package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/mcpserver"
	"github.com/alterhost/alterhost/host/metrics"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/sandboxtest"
	"github.com/alterhost/alterhost/oauth/connect"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/oauth/sandbox"
	"github.com/alterhost/alterhost/oauth/server"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
	"github.com/alterhost/alterhost/vault/seal"
)

// owner is the subject every call and page acts for; it must never be a
// label value.
const owner = "owner"

// stack is the server's parts wired as host.New wires them, with metrics:
// the bundled plugins, the vault over an embedded database, the --dev
// sandbox provider, the Connect pages and the authorization server.
type stack struct {
	m       *metrics.Metrics
	mcp     *mcp.ClientSession
	base    string
	sandbox *sandbox.Sandbox
	auth    *server.Server
	auditor *vault.Auditor
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	m := metrics.New()
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
	sb := sandbox.New(sandbox.Options{BaseURL: base, RedirectURIs: []string{base + "/connect/sandbox/callback"}})
	p, err := sb.Provider()
	if err != nil {
		t.Fatal(err)
	}
	providers.Add(p)

	v := vault.New(st, keys, providers, nil)
	v.Observer = m.Vault()
	auditor := vault.NewAuditor(st, nil)
	m.ObserveAuditor(auditor)
	subject := func(*http.Request) (string, error) { return owner, nil }
	conn := &connect.Service{Store: st, Vault: v, Providers: providers, BaseURL: baseURL, Subject: subject,
		Observer: m.Connect()}
	v.Linker = conn
	auth, err := server.New(server.Options{Store: st, Issuer: baseURL, Owner: owner, Observer: m.OAuth()})
	if err != nil {
		t.Fatal(err)
	}

	eng, err := engine.NewExtism(engine.ExtismOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := egress.New(egress.Options{Providers: providers, Credentials: v, Audit: auditor, Transport: sb.Wrap})
	h := &plugin.Host{Engine: eng, Outbound: out, Metrics: m}
	folder := h.OpenFolder(filepath.Join("..", "..", "plugins"))
	if _, errs := folder.Reload(ctx); len(errs) > 0 {
		t.Fatal(errs)
	}
	tools := mcpserver.New(folder.Catalog(), mcpserver.Options{
		Identify: func(context.Context, *mcp.CallToolRequest) (string, error) { return owner, nil }})

	r := chi.NewRouter()
	conn.Routes(r)
	auth.Routes(r)
	r.Handle("/sandbox/*", sb.BrowserHandler())
	r.Handle("/metrics", m.Handler())
	hs := &http.Server{Handler: r}
	go hs.Serve(ln)

	ct, stt := mcp.NewInMemoryTransports()
	ss, err := tools.MCP().Connect(ctx, stt, nil)
	if err != nil {
		t.Fatal(err)
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "metrics-test", Version: "1"}, nil).Connect(ctx, ct, nil)
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
	return &stack{m: m, mcp: session, base: base, sandbox: sb, auth: auth, auditor: auditor}
}

func (s *stack) call(t *testing.T, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := s.mcp.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// scrape GETs /metrics and parses the text exposition.
func (s *stack) scrape(t *testing.T) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams, string(body)
}

// value returns the value of the series of family name with exactly
// labels (a histogram's count), and whether it exists.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
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

// TestScrape drives tool calls that succeed, fail and need a Connect
// flow, a sign-in and a few OAuth requests through the real parts, then
// scrapes /metrics and checks the series and that no label carries the
// person, a token or a URL.
func TestScrape(t *testing.T) {
	s := newStack(t)
	browser := sandboxtest.Browser()

	if res := s.call(t, "word_count", map[string]any{"text": "one two three"}); res.IsError {
		t.Fatalf("word_count: %v", res.Content)
	}
	s.call(t, "reverse", map[string]any{"text": "abc"})
	if res := s.call(t, "word_count", map[string]any{"words": 3}); !res.IsError {
		t.Fatal("word_count with bad arguments succeeded")
	}
	// Refused by the host before anything leaves: its path and query, and
	// the person's name in it, must not reach a label.
	if res := s.call(t, "fetch_url", map[string]any{"url": "https://not-allowed.example.net/private/" + owner + "?q=" + owner}); !res.IsError {
		t.Fatal("fetch_url to a host not allowed succeeded")
	}

	// No grant yet: a Connect URL; connect; then the call works.
	u := connectURL(t, s.call(t, "whoami", nil))
	if page := sandboxtest.Approve(t, browser, u); !strings.Contains(page, "Connected") {
		t.Fatalf("after consent: %s", page)
	}
	if res := s.call(t, "whoami", nil); res.IsError {
		t.Fatalf("whoami after connecting: %v", res.Content)
	}
	// add_note needs the write scope: a re-consent URL.
	connectURL(t, s.call(t, "add_note", map[string]any{"text": "hi"}))
	// A used Connect link fails its flow.
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// The owner signs in; a client registers and presents a bad code.
	link, err := s.auth.SigninLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.SignIn(t, sandboxtest.Browser(), link)
	resp, err = http.Post(s.base+"/register", "application/json",
		strings.NewReader(`{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"owner's client"}`))
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", resp.StatusCode, reg)
	}
	clientID := between(string(reg), `"client_id":"`, `"`)
	resp, err = http.PostForm(s.base+"/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID},
		"code": {"nope"}, "code_verifier": {strings.Repeat("v", 43)}, "redirect_uri": {"http://127.0.0.1/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Flush the audit trail so its write shows.
	deadline := time.Now().Add(5 * time.Second)
	var fams map[string]*dto.MetricFamily
	var text string
	for {
		fams, text = s.scrape(t)
		if n, _ := value(fams, "alterhost_audit_writes_total", map[string]string{"outcome": "ok"}); n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"alterhost_tool_calls_total", map[string]string{"plugin": "text", "tool": "word_count", "outcome": "ok"}, 1},
		{"alterhost_tool_calls_total", map[string]string{"plugin": "text", "tool": "word_count", "outcome": "invalid_arguments"}, 1},
		{"alterhost_tool_calls_total", map[string]string{"plugin": "text", "tool": "reverse", "outcome": "ok"}, 1},
		{"alterhost_tool_calls_total", map[string]string{"plugin": "text", "tool": "reverse", "outcome": "trap"}, 0},
		{"alterhost_tool_calls_total", map[string]string{"plugin": "sandbox", "tool": "whoami", "outcome": "connect_required"}, 1},
		{"alterhost_tool_calls_total", map[string]string{"plugin": "sandbox", "tool": "whoami", "outcome": "ok"}, 1},
		{"alterhost_tool_calls_total", map[string]string{"plugin": "sandbox", "tool": "add_note", "outcome": "connect_required"}, 1},
		{"alterhost_tool_call_duration_seconds", map[string]string{"plugin": "sandbox", "tool": "whoami"}, 2},
		{"alterhost_tool_call_duration_seconds", map[string]string{"plugin": "text", "tool": "word_count"}, 2},

		{"alterhost_alter_requests_total", map[string]string{"plugin": "web", "provider": "none", "result": "host_not_allowed"}, 1},
		{"alterhost_alter_requests_total", map[string]string{"plugin": "sandbox", "provider": "sandbox", "result": "grant_not_found"}, 1},
		{"alterhost_alter_requests_total", map[string]string{"plugin": "sandbox", "provider": "sandbox", "result": "scope_reauth_required"}, 1},
		{"alterhost_alter_requests_total", map[string]string{"plugin": "sandbox", "provider": "sandbox", "result": "2xx"}, 1},
		{"alterhost_alter_request_duration_seconds", map[string]string{"plugin": "sandbox", "provider": "sandbox"}, 3},

		{"alterhost_vault_credential_lookups_total", map[string]string{"provider": "sandbox", "outcome": "grant_not_found"}, 1},
		{"alterhost_vault_credential_lookups_total", map[string]string{"provider": "sandbox", "outcome": "scope_reauth_required"}, 1},
		{"alterhost_vault_credential_lookups_total", map[string]string{"provider": "sandbox", "outcome": "ok"}, 1},

		{"alterhost_connect_flows_started_total", map[string]string{"provider": "sandbox"}, 1},
		{"alterhost_connect_flows_completed_total", map[string]string{"provider": "sandbox"}, 1},
		{"alterhost_connect_flows_failed_total", map[string]string{"provider": "sandbox", "reason": "link_invalid"}, 1},

		{"alterhost_plugins_loaded", nil, 3},
		{"alterhost_tools_loaded", nil, 8},
		{"alterhost_plugin_loads_total", map[string]string{"outcome": "ok"}, 3},
		{"alterhost_plugin_loads_total", map[string]string{"outcome": "failed"}, 0},
		{"alterhost_plugin_compile_duration_seconds", map[string]string{"plugin": "sandbox"}, 1},
		{"alterhost_plugin_instantiate_duration_seconds", map[string]string{"plugin": "text"}, 1},
		{"alterhost_pool_instances", map[string]string{"plugin": "text", "state": "idle"}, 1},
		{"alterhost_pool_instances", map[string]string{"plugin": "text", "state": "in_use"}, 0},
		{"alterhost_pool_instantiations_total", map[string]string{"plugin": "text"}, 0},
		{"alterhost_pool_wait_seconds", map[string]string{"plugin": "text"}, 2},

		{"alterhost_oauth_signins_total", map[string]string{"mode": "link", "outcome": "ok"}, 1},
		{"alterhost_oauth_registrations_total", map[string]string{"outcome": "ok"}, 1},
		{"alterhost_oauth_token_requests_total", map[string]string{"grant_type": "authorization_code", "outcome": "invalid_grant"}, 1},
		{"alterhost_oauth_token_reuse_total", map[string]string{"kind": "refresh_token"}, 0},
		{"alterhost_audit_queue_depth", nil, 0},
	} {
		got, ok := value(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if n, _ := value(fams, "alterhost_audit_writes_total", map[string]string{"outcome": "ok"}); n < 1 {
		t.Errorf("no audit batch written")
	}

	// Nothing personal or secret in any label of alterhost's series, nor
	// anywhere in the exposition.
	secrets := append([]string{owner, clientID, "sbx_at_", "sbx_rt_", "/private/", "q=", "link="}, s.sandbox.IssuedSecrets()...)
	for name, f := range fams {
		if !strings.HasPrefix(name, "alterhost_") {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				v := l.GetValue()
				if strings.ContainsAny(v, "/?=@:") {
					t.Errorf("%s: label %s=%q looks like a URL, path or address", name, l.GetName(), v)
				}
				for _, sec := range secrets {
					if strings.Contains(v, sec) {
						t.Errorf("%s: label %s=%q carries %q", name, l.GetName(), v, sec)
					}
				}
			}
		}
	}
	for _, sec := range secrets {
		if strings.Contains(text, sec) {
			t.Errorf("the exposition contains %q", sec)
		}
	}
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}

// TestNil checks that a nil Metrics, the state with metrics off, records
// nothing and fails nowhere.
func TestNil(t *testing.T) {
	var m *metrics.Metrics
	m.SetLoaded(1, 2)
	m.PluginLoaded(true)
	m.ObserveAuditor(nil)
	p := m.Plugin("x")
	p.Compiled(time.Millisecond)
	p.Instantiated(time.Millisecond, true)
	p.Waited(time.Millisecond)
	p.AddIdle(1)
	p.AddInUse(1)
	p.Discarded()
	tl := p.Tool("t", "")
	tl.Call("ok", time.Millisecond)
	tl.Request(200, "", time.Millisecond)
	if m.Vault() != nil || m.OAuth() != nil || m.Connect() != nil {
		t.Fatal("a nil Metrics hands out non-nil observers")
	}
}

// TestUnknownLabelsAreCapped checks that values outside the fixed sets
// become "other".
func TestUnknownLabelsAreCapped(t *testing.T) {
	m := metrics.New()
	tl := m.Plugin("p").Tool("t", "https://evil.example/path")
	tl.Call("something_new", time.Millisecond)
	tl.Request(0, "made_up_code", time.Millisecond)
	tl.Request(999, "", time.Millisecond)
	m.OAuth().TokenRequest("urn:ietf:params:oauth:grant-type:device_code", "invalid_grant")
	m.Connect().FlowFailed("/connect/x?link=abc", "because")
	m.Vault().CredentialLookup("sandbox", "weird")

	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"alterhost_tool_calls_total", map[string]string{"plugin": "p", "tool": "t", "outcome": "other"}},
		{"alterhost_alter_requests_total", map[string]string{"plugin": "p", "provider": "other", "result": "other"}},
		{"alterhost_oauth_token_requests_total", map[string]string{"grant_type": "other", "outcome": "invalid_grant"}},
		{"alterhost_connect_flows_failed_total", map[string]string{"provider": "other", "reason": "other"}},
		{"alterhost_vault_credential_lookups_total", map[string]string{"provider": "sandbox", "outcome": "other"}},
	} {
		if got, ok := value(byName, c.name, c.labels); !ok || got < 1 {
			t.Errorf("%s%v = %v (present %v), want at least 1", c.name, c.labels, got, ok)
		}
	}
}
