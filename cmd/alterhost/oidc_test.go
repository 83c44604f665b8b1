package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/internal/sandboxtest"
	"github.com/alterhost/alterhost/oauth/jwtverify/jwttest"
)

const (
	e2eOIDCClient = "alterhost-e2e"
	e2eOIDCSecret = "e2e-oidc-client-secret"
)

// oidcPlugins copies the text and sandbox plugins into a fresh folder.
func oidcPlugins(t *testing.T) string {
	t.Helper()
	_, plugins := build(t)
	dir := t.TempDir()
	for _, name := range []string{"text.wasm", "sandbox.wasm"} {
		b, err := os.ReadFile(filepath.Join(plugins, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	return dir
}

// startOIDC runs alterhost with args and the OIDC client secret in its
// environment, registers its redirect URI at the test provider, and
// returns the MCP endpoint, the base URL, the data directory and the logs.
func startOIDC(t *testing.T, is *jwttest.Issuer, args ...string) (endpoint, base, data string, logs *proctest.Buffer) {
	t.Helper()
	t.Setenv(oidcSecretEnv, e2eOIDCSecret) // the child inherits it
	data = t.TempDir()
	endpoint, _, logs = startWith(t, append([]string{"--addr", "127.0.0.1:0", "--plugins", oidcPlugins(t),
		"--data-dir", data, "--dev", "--oidc-issuer", is.URL, "--oidc-client-id", e2eOIDCClient}, args...))
	base = strings.TrimSuffix(endpoint, "/mcp")
	redirectURI := base + "/signin/oidc/callback"
	for range 100 {
		if strings.Contains(logs.String(), "Register this redirect URI there: "+redirectURI) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, "Register this redirect URI there: "+redirectURI) {
		t.Fatalf("the redirect URI to register was not printed:\n%s", out)
	}
	if strings.Contains(out, "Sign in to alterhost (once") {
		t.Fatalf("a sign-in link was printed in OIDC mode:\n%s", out)
	}
	if strings.Contains(out, e2eOIDCSecret) {
		t.Fatal("the client secret is in the log")
	}
	is.AddClient(e2eOIDCClient, e2eOIDCSecret, redirectURI)
	return endpoint, base, data, logs
}

// signInBrowser signs a fresh browser in at base, as the provider's
// current user, and returns the page it ends on.
func signInBrowser(t *testing.T, base string) (*http.Client, int, string) {
	t.Helper()
	browser := sandboxtest.Browser()
	resp, err := browser.Get(base + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return browser, resp.StatusCode, string(body)
}

// TestOIDCSignin runs alterhost in OIDC mode against a test provider and
// drives it with the go-sdk client's OAuth handler: the authorization
// request sends the browser to the provider, which signs in a person of an
// allowed domain; consent, tokens, tools and a Connect flow follow as that
// person's subject. A person of another domain is refused, and there are
// no sign-in links.
func TestOIDCSignin(t *testing.T) {
	is := jwttest.New(t)
	endpoint, base, data, logs := startOIDC(t, is, "--oidc-allowed-domains", "team.example, other.example")
	if strings.Contains(logs.String(), "admits everyone") {
		t.Error("warned that everyone is admitted though domains are listed")
	}
	is.SetUser(jwttest.User{Subject: "sub-alice", Email: "alice@team.example", EmailVerified: true})

	bin, _ := build(t)
	out, err := exec.Command(bin, "signin-link", "--base-url", base, "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "OpenID Connect") || strings.Contains(string(out), "link=") {
		t.Fatalf("signin-link in OIDC mode: %v\n%s", err, out)
	}

	browser := sandboxtest.Browser()
	const redirect = "http://127.0.0.1:1/callback" // never reached: the browser stops at it
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "e2e client", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL: redirect,
		AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			// Not signed in: /authorize sends the browser to the provider,
			// which sends it back signed in, to the consent page.
			back := sandboxtest.ApproveRedirect(t, browser, args.URL)
			q := back.Query()
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, OAuthHandler: handler}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, logs.String())
	}
	defer session.Close()
	if is.Logins() != 1 {
		t.Fatalf("%d sign-ins at the provider; want 1", is.Logins())
	}
	call := func(name string, args any) *mcp.CallToolResult {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	if res := call("reverse", map[string]any{"text": "abc"}); res.IsError || text(t, res) != "cba" {
		t.Fatalf("reverse: %s", text(t, res))
	}
	res := call("whoami", nil)
	connectURL, _ := errorMeta(t, res)["connect_url"].(string)
	if connectURL == "" {
		t.Fatalf("whoami without a grant: %s", text(t, res))
	}
	if page := sandboxtest.Approve(t, browser, connectURL); !strings.Contains(page, "Connected Sandbox") {
		t.Fatalf("connect: %s", page)
	}
	if res := call("whoami", nil); res.IsError || !strings.Contains(text(t, res), `"authenticated":true`) {
		t.Fatalf("whoami after connecting: %s", text(t, res))
	}
	// The grant is the subject's, not the e-mail's.
	grants, err := exec.Command(bin, "grants", "--data-dir", data).CombinedOutput()
	if err != nil || !strings.Contains(string(grants), "sub-alice") || strings.Contains(string(grants), "alice@") {
		t.Errorf("grants: %v\n%s", err, grants)
	}
	if !strings.Contains(logs.String(), "sub-alice") || !strings.Contains(logs.String(), "alice@team.example") {
		t.Errorf("the sign-in was not logged with subject and e-mail:\n%s", logs.String())
	}

	// Someone the provider signs in, but of another domain, is refused.
	is.SetUser(jwttest.User{Subject: "sub-bob", Email: "bob@elsewhere.example", EmailVerified: true})
	_, status, body := signInBrowser(t, base)
	if status != http.StatusForbidden || !strings.Contains(body, "bob@elsewhere.example") || !strings.Contains(body, "does not admit") {
		t.Fatalf("a person of another domain: %d\n%s", status, body)
	}
}

// TestTrustIssuerOIDCSignin runs alterhost beside an external issuer that
// also signs browsers in: /mcp takes the issuer's JWTs, alterhost serves
// only the sign-in routes, and a Connect link is honoured in a browser
// signed in as the token's subject and refused in one signed in as
// someone else.
func TestTrustIssuerOIDCSignin(t *testing.T) {
	is := jwttest.New(t)
	endpoint, base, _, logs := startOIDC(t, is, "--trust-issuer", is.URL)
	if !strings.Contains(logs.String(), "admits everyone") {
		t.Errorf("no warning that everyone the issuer signs in is admitted:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "refuse every link") {
		t.Error("warned that Connect pages refuse every link, though browsers can sign in")
	}
	// Sign-in is there; the authorization server is not.
	for path, want := range map[string]int{"/signin": http.StatusSeeOther, "/authorize": http.StatusNotFound,
		"/token": http.StatusNotFound, "/register": http.StatusNotFound, "/.well-known/oauth-authorization-server": http.StatusNotFound} {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want && !(want == http.StatusNotFound && resp.StatusCode == http.StatusMethodNotAllowed) {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	ctx := context.Background()
	claims := is.Claims("sub-alice", endpoint)
	client := &http.Client{Transport: bearer{is.Token(t, claims), http.DefaultTransport}}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: client}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, logs.String())
	}
	defer session.Close()
	connectURL := func() string {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
		if err != nil {
			t.Fatal(err)
		}
		u, _ := errorMeta(t, res)["connect_url"].(string)
		if u == "" {
			t.Fatalf("whoami without a grant: %s", text(t, res))
		}
		return u
	}

	// Mallory signs in at the issuer and opens Alice's link: refused.
	is.SetUser(jwttest.User{Subject: "sub-mallory", Email: "mallory@team.example", EmailVerified: true})
	mallory, status, body := signInBrowser(t, base)
	if status != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("mallory's sign-in: %d\n%s", status, body)
	}
	resp, err := mallory.Get(connectURL())
	if err != nil {
		t.Fatal(err)
	}
	body2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("alice's link in mallory's browser: %d\n%s", resp.StatusCode, body2)
	}

	// Alice signs in at the issuer: her link connects her account.
	is.SetUser(jwttest.User{Subject: "sub-alice", Email: "alice@team.example", EmailVerified: true})
	alice, status, body := signInBrowser(t, base)
	if status != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("alice's sign-in: %d\n%s", status, body)
	}
	if page := sandboxtest.Approve(t, alice, connectURL()); !strings.Contains(page, "Connected Sandbox") {
		t.Fatalf("alice's link in alice's browser: %s", page)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError || !strings.Contains(text(t, res), `"authenticated":true`) {
		t.Fatalf("whoami after connecting: %v %s", err, text(t, res))
	}
}

// TestOIDCFlags: the OIDC flags refuse what cannot work, before anything
// is served, and never take the secret from a flag.
func TestOIDCFlags(t *testing.T) {
	plugins := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--oidc-client-id", "c"}, "need --oidc-issuer"},
		{[]string{"--oidc-allowed-domains", "a.example"}, "need --oidc-issuer"},
		{[]string{"--oidc-issuer", "https://id.example"}, "needs --oidc-client-id"},
		{[]string{"--oidc-issuer", "https://id.example", "--oidc-client-id", "c", "--no-auth"}, "does not go with --no-auth"},
		{[]string{"--oidc-issuer", "https://id.example", "--oidc-client-id", "c", "--stdio"}, "does not go with --no-auth"},
		{[]string{"--oidc-client-secret", "s"}, "flag provided but not defined"},
		{[]string{"--addr", "127.0.0.1:0", "--trust-issuer", "http://127.0.0.1:1", "--oidc-issuer", "http://127.0.0.1:2",
			"--oidc-client-id", "c"}, "is not the trusted issuer"},
	} {
		var stdout, stderr strings.Builder
		args := append([]string{"--plugins", plugins, "--data-dir", t.TempDir()}, tc.args...)
		if code := run(args, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d\n%s", tc.args, code, stderr.String())
		}
	}
	if c, err := oidcConfig("https://id.example", "c", " a.example,,b.example ", "x@a.example"); err != nil ||
		len(c.AllowedDomains) != 2 || c.AllowedDomains[1] != "b.example" || len(c.AllowedPeople) != 1 {
		t.Fatalf("oidcConfig: %+v %v", c, err)
	}
}
