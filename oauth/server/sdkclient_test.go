package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// TestGoSDKClient drives the go-sdk's own client-side OAuth handler
// against an MCP server whose /mcp is guarded by Verify: discovery from
// the 401, dynamic registration, PKCE authorization with RFC 9207 iss
// checking, the token exchange with resource, and a tool call that sees
// the signed-in subject.
func TestGoSDKClient(t *testing.T) {
	e := newEnv(t)
	ms := mcp.NewServer(&mcp.Implementation{Name: "alterhost-test"}, nil)
	type out struct {
		Subject string `json:"subject"`
	}
	mcp.AddTool(ms, &mcp.Tool{Name: "whoami"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, out, error) {
		return nil, out{Subject: req.Extra.TokenInfo.UserID}, nil
	})
	guard := auth.RequireBearerToken(e.srv.Verify, &auth.RequireBearerTokenOptions{
		ResourceMetadataURL: e.ts.URL + "/.well-known/oauth-protected-resource/mcp",
		Scopes:              []string{"mcp"},
	})
	e.router.Handle("/mcp", guard(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return ms }, nil)))

	e.signIn()
	authorizations := 0
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "go-sdk test client", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL: redirect,
		AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			authorizations++
			q := e.approve(args.URL)
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.resource(), OAuthHandler: h}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError || res.StructuredContent.(map[string]any)["subject"] != owner {
		t.Fatalf("whoami: %+v", res.StructuredContent)
	}
	if authorizations != 1 {
		t.Fatalf("%d authorizations", authorizations)
	}

	// A token in the query string is not a bearer token here (OAuth 2.1
	// §5.1.1 forbids it: URLs end up in logs and Referer headers).
	id := e.publicClient()
	v := oauth2.GenerateVerifier()
	at, _ := e.tokens(id, e.code(id, v), v)
	for _, u := range []string{e.resource() + "?access_token=" + at, e.resource() + "?token=" + at} {
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, _ := e.do(http.DefaultClient, req)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
			t.Fatalf("token in query: %d %v", resp.StatusCode, resp.Header)
		}
	}
	if !e.valid(at) {
		t.Fatal("the token itself is fine")
	}
}
