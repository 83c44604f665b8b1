package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/oauth/jwtverify/jwttest"
)

// bearer adds a fixed Authorization header to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestTrustIssuer runs alterhost with --trust-issuer pointing at a test
// authorization server: its JWTs for alterhost's /mcp call tools, a token
// for another audience is refused, and the protected-resource metadata
// sends clients to that issuer. alterhost runs no authorization server.
func TestTrustIssuer(t *testing.T) {
	_, plugins := build(t)
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(plugins, "text.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "text.wasm"), b, 0o644)
	is := jwttest.New(t)
	endpoint, _, logs := startWith(t, []string{"--addr", "127.0.0.1:0", "--plugins", dir, "--data-dir", t.TempDir(),
		"--trust-issuer", is.URL})
	if strings.Contains(logs.String(), "Sign in to alterhost") {
		t.Error("a sign-in link was printed: alterhost runs its own authorization server")
	}
	base := strings.TrimSuffix(endpoint, "/mcp")

	ctx := context.Background()
	claims := is.Claims("alice", endpoint)
	claims["scope"] = "mcp"
	client := &http.Client{Transport: bearer{is.Token(t, claims), http.DefaultTransport}}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: client}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, logs.String())
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "reverse", Arguments: map[string]any{"text": "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError || text(t, res) != "cba" {
		t.Fatalf("reverse: %s", text(t, res))
	}

	// A token the issuer signed for another resource is refused.
	post := func(token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := post(is.Token(t, is.Claims("alice", "https://elsewhere.example/mcp")))
	challenge := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) ||
		!strings.Contains(challenge, "resource_metadata="+`"`+base+"/.well-known/oauth-protected-resource/mcp") {
		t.Fatalf("another audience: %d %q", resp.StatusCode, challenge)
	}
	// So is one signed by a key that is not the issuer's.
	if resp := post(jwttest.New(t).Token(t, claims)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("foreign key: %d", resp.StatusCode)
	}

	// Both metadata documents name the external issuer.
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&meta)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		if meta.Resource != endpoint || len(meta.AuthorizationServers) != 1 || meta.AuthorizationServers[0] != is.URL {
			t.Fatalf("%s: %+v", path, meta)
		}
	}
	// alterhost's own authorization server is not there.
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/authorize", "/token", "/register"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want no such page", path, resp.StatusCode)
		}
	}
}
