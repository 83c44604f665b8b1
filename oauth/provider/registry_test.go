package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alterhost/alterhost/abi"
)

// env is a fake environment for load.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPresetsAreValid(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Presets() {
		if seen[c.Name] {
			t.Errorf("preset %q twice", c.Name)
		}
		seen[c.Name] = true
		c.ClientID = "id"
		p, err := New(c, WithClientSecret("secret"))
		if err != nil {
			t.Errorf("preset %s: %v", c.Name, err)
			continue
		}
		if !p.Configured() || p.DisplayName() == p.Name() || len(p.APIHosts()) == 0 {
			t.Errorf("preset %s: %v", c.Name, p)
		}
		if _, err := url.Parse(p.AuthCodeURL("s", "c", "https://alterhost.example/cb", []string{"x"})); err != nil {
			t.Errorf("preset %s auth URL: %v", c.Name, err)
		}
	}
	for _, name := range []string{"github", "google", "slack", "microsoft", "gitlab", "notion", "linear"} {
		if !seen[name] {
			t.Errorf("no preset %q", name)
		}
	}
	google, _ := preset("google")
	google.ClientID = "id"
	p, _ := New(google, WithClientSecret("s"))
	q := mustQuery(t, p.AuthCodeURL("s", "c", "https://a.example/cb", []string{"https://www.googleapis.com/auth/gmail.readonly"}))
	if q.Get("access_type") != "offline" || q.Get("prompt") != "consent" ||
		q.Get("scope") != "openid email https://www.googleapis.com/auth/gmail.readonly" {
		t.Errorf("google auth URL query: %v", q)
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestLoadPresetsFromEnv(t *testing.T) {
	r, err := load("", env{"ALTERHOST_GITHUB_CLIENT_ID": "gh-id", "ALTERHOST_GITHUB_CLIENT_SECRET": "gh-secret"}.get)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Provider("github"); !ok {
		t.Error("github configured from env is not served")
	}
	if _, ok := r.Provider("google"); ok {
		t.Error("unconfigured google is served to the vault")
	}
	if p, ok := r.Lookup("google"); !ok || p.Configured() {
		t.Error("unconfigured google is not listed")
	}
	if n := len(r.All()); n != len(Presets()) {
		t.Errorf("All() has %d providers, want %d", n, len(Presets()))
	}
	gh, _ := r.Lookup("github")
	if gh.secretValue() != "gh-secret" || gh.Config().ClientSecretEnv != "ALTERHOST_GITHUB_CLIENT_SECRET" {
		t.Errorf("github: %v", gh.Config())
	}
}

func TestLoadFile(t *testing.T) {
	path := writeConfig(t, `{"providers": [
	  {"name": "google", "client_id": "g-id", "client_secret_env": "MY_GOOGLE_SECRET",
	   "extra_auth_params": {"prompt": "", "hd": "example.com"}, "scopes": ["openid"]},
	  {"name": "acme", "display_name": "Acme", "auth_url": "https://acme.example/authorize",
	   "token_url": "https://acme.example/token", "client_id": "acme-id", "public": true, "pkce": true,
	   "scope_separator": ",", "api_hosts": ["api.acme.example", "*.files.acme.example"]},
	  {"name": "local", "auth_url": "http://127.0.0.1:9999/a", "token_url": "http://localhost:9999/t",
	   "api_hosts": ["127.0.0.1:9999"]}
	]}`)
	r, err := load(path, env{"MY_GOOGLE_SECRET": "gs", "ALTERHOST_LOCAL_CLIENT_ID": "l-id", "ALTERHOST_LOCAL_CLIENT_SECRET": "ls"}.get)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := r.Lookup("google")
	c := g.Config()
	if !g.Configured() || c.ClientID != "g-id" || !slices.Equal(c.Scopes, []string{"openid"}) ||
		c.ExtraAuthParams["hd"] != "example.com" || c.ExtraAuthParams["access_type"] != "offline" ||
		c.ExtraAuthParams["prompt"] != "" || c.TokenURL != "https://oauth2.googleapis.com/token" {
		t.Errorf("google override: %+v", c)
	}
	// The preset itself is untouched by the override.
	if p, _ := preset("google"); p.ExtraAuthParams["prompt"] != "consent" || len(p.Scopes) != 2 {
		t.Errorf("preset changed: %+v", p)
	}
	acme, ok := r.Provider("acme")
	if !ok || acme.(*Provider).DisplayName() != "Acme" || !acme.(*Provider).PKCE() {
		t.Errorf("acme: %v", acme)
	}
	if l, ok := r.Lookup("local"); !ok || !l.Configured() {
		t.Errorf("local: %v", l)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		env       env
		want      []string // substrings of the error
	}{
		{"not json", `{"providers": [`, nil, []string{"is not a provider configuration"}},
		{"unknown top-level", `{"provider": []}`, nil, []string{`unknown field "provider"`}},
		{"unknown field", `{"providers": [{"name": "acme", "tokn_url": "x"}]}`, nil,
			[]string{`providers[0] ("acme")`, `unknown field "tokn_url"`, "token_url"}},
		{"wrong type", `{"providers": [{"name": "acme", "scopes": "read"}]}`, nil, []string{`providers[0] ("acme") scopes`}},
		{"missing urls", `{"providers": [{"name": "acme", "client_id": "x", "public": true, "api_hosts": ["a.example"]}]}`, nil,
			[]string{"auth_url: is missing", "token_url: is missing"}},
		{"plain http", `{"providers": [{"name": "acme", "client_id": "x", "public": true, "auth_url": "http://acme.example/a",
			"token_url": "https://acme.example/t", "revoke_url": "ftp://acme.example/r", "api_hosts": ["a.example"]}]}`, nil,
			[]string{"auth_url: uses plain http on a host that is not loopback", `revoke_url: has scheme "ftp"`}},
		{"bad api hosts", `{"providers": [{"name": "acme", "client_id": "x", "public": true, "auth_url": "https://a.example/a",
			"token_url": "https://a.example/t", "api_hosts": ["https://api.acme.example/v1", "*.com"]}]}`, nil,
			[]string{"api_hosts[0]: is not a host", "api_hosts[1]: wildcards must stay under a registrable domain"}},
		{"no api hosts", `{"providers": [{"name": "acme", "client_id": "x", "public": true, "auth_url": "https://a.example/a",
			"token_url": "https://a.example/t"}]}`, nil, []string{"api_hosts: is empty"}},
		{"bad name", `{"providers": [{"name": "Acme Corp"}]}`, nil, []string{`providers[0] ("Acme Corp") name:`}},
		{"duplicate", `{"providers": [{"name": "github", "client_id": "a"}, {"name": "github", "client_id": "b"}]}`,
			env{"ALTERHOST_GITHUB_CLIENT_SECRET": "s"}, []string{`providers[1] ("github") name: "github" is also the name of providers[0]`}},
		{"secret env empty", `{"providers": [{"name": "github", "client_id": "a", "client_secret_env": "GH_SECRET"}]}`, nil,
			[]string{`providers[0] ("github") client_secret_env: names GH_SECRET, which is empty or unset`}},
		{"default secret env empty", ``, env{"ALTERHOST_SLACK_CLIENT_ID": "a"},
			[]string{`provider "slack"`, "ALTERHOST_SLACK_CLIENT_ID is set but ALTERHOST_SLACK_CLIENT_SECRET"}},
		{"secret without id", ``, env{"ALTERHOST_LINEAR_CLIENT_SECRET": "s"},
			[]string{`provider "linear" client_id: is missing`, "ALTERHOST_LINEAR_CLIENT_ID"}},
		{"generic without id", `{"providers": [{"name": "acme", "auth_url": "https://a.example/a",
			"token_url": "https://a.example/t", "api_hosts": ["a.example"]}]}`, nil, []string{"client_id: is missing", "ALTERHOST_ACME_CLIENT_ID"}},
		{"reserved param", `{"providers": [{"name": "google", "extra_auth_params": {"redirect_uri": "x"}}]}`, nil,
			[]string{`"redirect_uri" is set by alterhost`}},
		{"bad style", `{"providers": [{"name": "gitlab", "token_auth": "cookie", "revoke_style": "smoke"}]}`, nil,
			[]string{`token_auth: "cookie"`, `revoke_style: "smoke"`}},
		{"revoke replaced without revoke url", `{"providers": [{"name": "microsoft", "revoke_replaced": true}]}`,
			env{"ALTERHOST_MICROSOFT_CLIENT_ID": "a", "ALTERHOST_MICROSOFT_CLIENT_SECRET": "s"},
			[]string{`providers[0] ("microsoft") revoke_url: is missing but revoke_style, revoke_headers, revoke_replaced or replaced_revoke_url is set`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.doc != "" {
				path = writeConfig(t, tc.doc)
			}
			_, err := load(path, tc.env.get)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if path != "" && !strings.HasPrefix(err.Error(), path+": ") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

// TestSecretPastedAsEnvName: a secret put in client_secret_env by mistake
// is refused without being repeated in the error.
func TestSecretPastedAsEnvName(t *testing.T) {
	const pasted = "ghs_9f8e7d6c5b4a-live-secret!"
	path := writeConfig(t, `{"providers": [{"name": "github", "client_id": "a", "client_secret_env": "`+pasted+`"}]}`)
	_, err := load(path, env{}.get)
	if err == nil || !strings.Contains(err.Error(), "client_secret_env: is not an environment variable name") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), pasted) {
		t.Errorf("error repeats the pasted secret: %v", err)
	}
	c, _ := preset("github")
	c.ClientID, c.ClientSecretEnv = "a", pasted
	if _, err := New(c); err == nil || strings.Contains(err.Error(), pasted) {
		t.Errorf("New: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.json")); err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Errorf("err = %v", err)
	}
}

func TestRegistryAdd(t *testing.T) {
	r := NewRegistry()
	p, err := New(Config{Name: "sandbox", AuthURL: "http://127.0.0.1/a", TokenURL: "https://sandbox.alterhost.test/t",
		ClientID: "c", APIHosts: []abi.HostPattern{"sandbox.alterhost.test"}}, WithClientSecret("s"))
	if err != nil {
		t.Fatal(err)
	}
	r.Add(p)
	if got, ok := r.Provider("sandbox"); !ok || got.Name() != "sandbox" {
		t.Errorf("Provider(sandbox) = %v, %v", got, ok)
	}
	if _, ok := r.Provider("nope"); ok {
		t.Error("Provider(nope) found")
	}
}

// TestSecretNeverPrinted formats a configured provider, and things holding
// it, every way a log line or a debug dump might.
func TestSecretNeverPrinted(t *testing.T) {
	const secret = "very-secret-client-secret"
	t.Setenv("ALTERHOST_GITHUB_CLIENT_ID", "gh-id")
	t.Setenv("ALTERHOST_GITHUB_CLIENT_SECRET", secret)
	r, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := r.Lookup("github")
	cfg := p.Config()
	var outs []string
	for _, v := range []any{p, *p, cfg, r, struct{ P *Provider }{p}, []*Provider{p}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		b, _ := json.Marshal(v)
		outs = append(outs, string(b))
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		l := slog.New(h(&buf))
		l.Info("provider", "p", p, "value", *p, "cfg", cfg, "registry", r)
		outs = append(outs, buf.String())
	}
	for _, out := range outs {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", secret)) {
			t.Errorf("secret printed: %s", out)
		}
	}
	if s := p.String(); !strings.Contains(s, "gh-id") || !strings.Contains(s, "[redacted]") {
		t.Errorf("String() = %s", s)
	}
	b, _ := json.Marshal(p)
	if !strings.Contains(string(b), `"client_secret":"[redacted]"`) || !strings.Contains(string(b), `"configured":true`) {
		t.Errorf("MarshalJSON = %s", b)
	}
}

// TestRevokeReplaced: only the presets whose revocation is known to end
// the token sent alone let the vault revoke a replaced grant; a file can
// change it either way.
func TestRevokeReplaced(t *testing.T) {
	alone := map[string]bool{"slack": true, "gitlab": true, "github": true}
	for _, c := range Presets() {
		c.ClientID = "a"
		p, err := New(c, WithClientSecret("s"))
		if err != nil {
			t.Fatal(err)
		}
		if p.RevokeReplaced() != alone[c.Name] {
			t.Errorf("%s: RevokeReplaced() = %v; want %v", c.Name, p.RevokeReplaced(), alone[c.Name])
		}
	}
	path := writeConfig(t, `{"providers": [{"name": "slack", "client_id": "a", "revoke_replaced": false},
		{"name": "linear", "client_id": "b", "revoke_replaced": true}]}`)
	reg, err := load(path, env{"ALTERHOST_SLACK_CLIENT_SECRET": "s", "ALTERHOST_LINEAR_CLIENT_SECRET": "s"}.get)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"slack": false, "linear": true} {
		p, ok := reg.Provider(name)
		if !ok {
			t.Fatalf("no provider %s", name)
		}
		if got := p.(*Provider).RevokeReplaced(); got != want {
			t.Errorf("%s from the file: RevokeReplaced() = %v; want %v", name, got, want)
		}
	}
}
