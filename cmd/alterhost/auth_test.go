package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/alterhost/alterhost/internal/sandboxtest"
)

var signinRE = regexp.MustCompile(`Sign in to alterhost \(once, within 15 minutes\): (\S+)`)

// TestOAuthJourney runs alterhost as an authorization server and drives
// the go-sdk's own client-side OAuth handler against the real binary:
// discovery from the 401, dynamic registration, PKCE authorization with a
// scripted person signing in and approving, the token exchange, tool
// calls as that person, a Connect flow from the signed-in browser, and a
// refresh without authorizing again.
func TestOAuthJourney(t *testing.T) {
	_, plugins := build(t)
	dir := t.TempDir()
	for _, name := range []string{"text.wasm", "sandbox.wasm"} {
		b, err := os.ReadFile(filepath.Join(plugins, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	endpoint, _, logs := startWith(t, []string{"--addr", "127.0.0.1:0", "--plugins", dir, "--data-dir", t.TempDir(),
		"--dev", "--access-token-ttl", "2s"})

	// Without a token: 401 and where to find the authorization server.
	resp, err := http.Post(endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Fatalf("without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// The person signs in with the link alterhost printed.
	var link string
	for range 100 {
		if m := signinRE.FindStringSubmatch(logs.String()); m != nil {
			link = m[1]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if link == "" {
		t.Fatalf("no sign-in link printed:\n%s", logs.String())
	}
	browser := sandboxtest.Browser()
	if page := sandboxtest.SignIn(t, browser, link); !strings.Contains(page, "Signed in") {
		t.Fatalf("sign-in: %s", page)
	}

	const redirect = "http://127.0.0.1:1/callback" // never reached: the browser stops at it
	authorizations := 0
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "e2e client", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL: redirect,
		AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			authorizations++
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

	// A credentialed tool: the signed-in browser connects the account.
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
	// A Connect link opened in a browser that is not signed in leads to
	// sign-in and leaves the link unspent; the signed-in browser then uses
	// it.
	res = call("add_note", map[string]any{"text": "x"})
	connectLink := errorMeta(t, res)["connect_url"].(string)
	stranger, err := sandboxtest.Browser().Get(connectLink)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(stranger.Body)
	stranger.Body.Close()
	if stranger.StatusCode != http.StatusOK || stranger.Request.URL.Path != "/signin" ||
		stranger.Request.URL.Query().Get("next") == "" || !strings.Contains(string(body), "Sign in") {
		t.Errorf("a Connect link in a browser not signed in: %d %s\n%s", stranger.StatusCode, stranger.Request.URL, body)
	}
	if page := sandboxtest.Approve(t, browser, connectLink); !strings.Contains(page, "Connected Sandbox") {
		t.Fatalf("the link after the stranger's visit: %s", page)
	}

	// The access token lives 2 s: the client refreshes, and the person is
	// not asked again.
	time.Sleep(2500 * time.Millisecond)
	if res := call("reverse", map[string]any{"text": "xy"}); res.IsError || text(t, res) != "yx" {
		t.Fatalf("after the access token expired: %s", text(t, res))
	}
	if authorizations != 1 {
		t.Errorf("%d authorizations; want 1 (the refresh needs none)", authorizations)
	}
}
