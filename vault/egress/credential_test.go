package egress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
	"github.com/alterhost/alterhost/vault/store"
)

type fakeProvider struct{ hosts []abi.HostPattern }

func (p fakeProvider) Name() string                { return "acme" }
func (p fakeProvider) APIHosts() []abi.HostPattern { return p.hosts }
func (fakeProvider) Refresh(context.Context, string) (vault.Token, error) {
	return vault.Token{}, nil
}

type providers map[string]vault.Provider

func (ps providers) Provider(name string) (vault.Provider, bool) { p, ok := ps[name]; return p, ok }

type fakeCreds struct{ err *abi.Error }

func (f fakeCreds) Credential(_ context.Context, subject, provider string, scopes []string) (string, *abi.Error) {
	if f.err != nil {
		return "", f.err
	}
	return "tok-" + subject + "-" + provider + "-" + strings.Join(scopes, "+"), nil
}

type recorder struct {
	mu   sync.Mutex
	recs []store.AuditRecord
}

func (r *recorder) Record(rec store.AuditRecord) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func TestCredentials(t *testing.T) {
	var api, other *httptest.Server
	api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/landing", http.StatusFound)
		default:
			w.Header().Set("Authorization", r.Header.Get("Authorization")) // an upstream echoing it back
			fmt.Fprint(w, r.Header.Get("Authorization"))
		}
	}))
	defer api.Close()
	other = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "auth=%q", r.Header.Get("Authorization"))
	}))
	defer other.Close()
	apiHost, otherHost := strings.TrimPrefix(api.URL, "http://"), strings.TrimPrefix(other.URL, "http://")

	m, err := abi.ParseManifest("t", []byte(fmt.Sprintf(`{"abi":"alter/v1","name":"p","version":"1",
		"provider":"acme","scopes":["read"],"allowed_hosts":[%q,%q],
		"tools":[{"name":"t","description":"d"},{"name":"ghost","description":"d","provider":"nobody"}]}`, apiHost, otherHost)))
	if err != nil {
		t.Fatal(err)
	}
	cl := egress.Caller{Plugin: m, Tool: &m.Tools[0]}
	rec := &recorder{}
	c := egress.New(egress.Options{
		Providers:    providers{"acme": fakeProvider{hosts: []abi.HostPattern{abi.HostPattern(apiHost)}}},
		Credentials:  fakeCreds{},
		Audit:        rec,
		AllowPrivate: true,
	})
	ctx := vault.WithIdentity(context.Background(), vault.Identity{Subject: "alice", Agent: "claude"})

	resp, aerr := c.Do(ctx, cl, request(t, `{"url":"`+api.URL+`/me?secret=q"}`))
	if aerr != nil || resp.Body != "Bearer tok-alice-acme-read" {
		t.Fatalf("to the API host: %+v %v; want the host-added credential", resp, aerr)
	}
	if _, ok := resp.Headers["authorization"]; ok {
		t.Error("an Authorization header echoed by the upstream reached the guest")
	}
	if resp, _ := c.Do(ctx, cl, request(t, `{"url":"`+other.URL+`/x"}`)); resp == nil || resp.Body != `auth=""` {
		t.Errorf("to a host the plugin allows but the provider does not: %+v; want no credential", resp)
	}
	resp, aerr = c.Do(ctx, cl, request(t, `{"url":"`+api.URL+`/away"}`))
	if aerr != nil || resp.Status != http.StatusFound || !strings.Contains(resp.Headers["location"], otherHost) {
		t.Errorf("credentialed redirect to another host: %+v %v; want the 302 handed back, not followed", resp, aerr)
	}
	if _, aerr := c.Do(ctx, egress.Caller{Plugin: m, Tool: &m.Tools[1]}, request(t, `{"url":"`+api.URL+`/"}`)); aerr == nil || aerr.Code != abi.CodePolicyDenied {
		t.Errorf("unknown provider: %v; want policy_denied", aerr)
	}
	if _, aerr := c.Do(context.Background(), cl, request(t, `{"url":"`+api.URL+`/"}`)); aerr == nil || aerr.Code != abi.CodeInternal {
		t.Errorf("no identity: %v; want internal", aerr)
	}
	denied := egress.New(egress.Options{
		Providers: providers{"acme": fakeProvider{hosts: []abi.HostPattern{abi.HostPattern(apiHost)}}}, AllowPrivate: true,
		Credentials: fakeCreds{err: &abi.Error{Code: abi.CodeGrantNotFound, Message: "connect", ConnectURL: "http://x/connect"}},
	})
	if _, aerr := denied.Do(ctx, cl, request(t, `{"url":"`+api.URL+`/"}`)); aerr == nil || aerr.Code != abi.CodeGrantNotFound || aerr.ConnectURL == "" {
		t.Errorf("credential refused: %v; want grant_not_found with its Connect URL", aerr)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.recs) != 5 {
		t.Fatalf("%d audit records; want one per request (5)", len(rec.recs))
	}
	first, _ := json.Marshal(rec.recs[0])
	r := rec.recs[0]
	if r.Subject != "alice" || r.Agent != "claude" || r.Plugin != "p" || r.Tool != "t" || r.Provider != "acme" ||
		r.Method != "GET" || r.Host != apiHost || r.Path != "/me" || r.Status != 200 || r.ErrorCode != "" {
		t.Errorf("audit record = %s", first)
	}
	if strings.Contains(string(first), "secret") || strings.Contains(string(first), "tok-") {
		t.Errorf("the audit record holds a query value or a token: %s", first)
	}
	if rec.recs[3].ErrorCode != string(abi.CodePolicyDenied) {
		t.Errorf("failed request audited with code %q", rec.recs[3].ErrorCode)
	}
}
