package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// TestFullFlow is the journey of a real client: discovery and
// registration with the go-sdk's client helpers, sign-in, consent, the
// code exchange and a refresh with golang.org/x/oauth2, Verify, and
// revocation.
func TestFullFlow(t *testing.T) {
	e := newEnv(t)
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient)

	prm, err := oauthex.GetProtectedResourceMetadata(ctx, e.ts.URL+"/.well-known/oauth-protected-resource/mcp", e.resource(), http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != e.ts.URL {
		t.Fatalf("authorization_servers = %v", prm.AuthorizationServers)
	}
	asm, err := oauthex.GetAuthServerMeta(ctx, e.ts.URL+"/.well-known/oauth-authorization-server", e.ts.URL, http.DefaultClient)
	if err != nil || asm == nil {
		t.Fatalf("metadata: %v %v", asm, err)
	}
	reg, err := oauthex.RegisterClient(ctx, asm.RegistrationEndpoint, &oauthex.ClientRegistrationMetadata{
		RedirectURIs: []string{redirect}, TokenEndpointAuthMethod: "none", ClientName: "Flow Test",
		GrantTypes: []string{"authorization_code", "refresh_token"},
	}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if reg.ClientSecret != "" {
		t.Fatal("a public client got a secret")
	}

	// Not signed in: the sign-in page, carrying the request back.
	cfg := &oauth2.Config{ClientID: reg.ClientID, RedirectURL: redirect, Scopes: []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: asm.AuthorizationEndpoint, TokenURL: asm.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", prm.Resource))
	resp, body := e.get(e.browser, authURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "alterhost signin-link") || !strings.Contains(body, `name="next"`) {
		t.Fatalf("sign-in page: %d %s", resp.StatusCode, body)
	}
	next := hiddenInput.FindStringSubmatch(body)
	if next == nil || next[1] != "next" {
		t.Fatalf("no next field: %s", body)
	}

	// The pasted link signs in and returns to the authorization request.
	link, err := e.srv.SigninLink(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/signin",
		strings.NewReader(url.Values{"link": {link}, "next": {unescape(next[2])}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = e.do(e.browser, req)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/authorize?") {
		t.Fatalf("sign-in: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}

	q := e.approve(e.ts.URL + resp.Header.Get("Location"))
	if q.Get("state") != "state-123" || q.Get("iss") != asm.Issuer {
		t.Fatalf("redirect: %v", q)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", prm.Resource))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.AccessToken, "ah_at_") || !strings.HasPrefix(tok.RefreshToken, "ah_rt_") || tok.TokenType != "Bearer" {
		t.Fatalf("token: %+v", tok)
	}
	if tok.Extra("scope") != "mcp" || tok.ExpiresIn != 3600 {
		t.Fatalf("scope %v, expires_in %d", tok.Extra("scope"), tok.ExpiresIn)
	}
	info, err := e.srv.Verify(t.Context(), tok.AccessToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.UserID != owner || len(info.Scopes) != 1 || info.Scopes[0] != "mcp" || !info.Expiration.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("token info: %+v", info)
	}

	// Refresh through x/oauth2's token source, as a client does when its
	// access token runs out.
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == tok.RefreshToken || fresh.RefreshToken == "" {
		t.Fatal("refresh did not rotate")
	}
	if !e.valid(fresh.AccessToken) {
		t.Fatal("refreshed access token rejected")
	}

	// Revoking the refresh token ends the whole family.
	status, m := e.postForm("/revoke", url.Values{"client_id": {reg.ClientID}, "token": {fresh.RefreshToken}}, "", "")
	if status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, m)
	}
	for _, at := range []string{tok.AccessToken, fresh.AccessToken} {
		if _, err := e.srv.Verify(t.Context(), at, nil); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("revoked token: %v", err)
		}
	}
	if status, _ := e.refresh(reg.ClientID, fresh.RefreshToken, nil); status != http.StatusBadRequest {
		t.Fatalf("refresh after revocation: %d", status)
	}
}

func unescape(s string) string {
	r := strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">")
	return r.Replace(s)
}

// TestConfidentialClient: a client_secret_basic client gets a secret,
// stored only hashed, and must present it.
func TestConfidentialClient(t *testing.T) {
	e := newEnv(t)
	status, m := e.register(map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "client_secret_basic"})
	if status != http.StatusCreated {
		e.e(status, m)
	}
	id, secret := m["client_id"].(string), m["client_secret"].(string)
	if exp, ok := m["client_secret_expires_at"]; !ok || exp.(float64) != 0 {
		t.Fatalf("client_secret_expires_at = %v, %v", exp, ok)
	}
	c, err := e.store.(authStore).GetClient(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(c.Metadata), secret) || string(c.SecretHash) == secret || len(c.SecretHash) != 32 {
		t.Fatal("the secret is stored in the clear")
	}
	e.signIn()
	v := oauth2.GenerateVerifier()
	code := e.code(id, v)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v},
		"redirect_uri": {redirect}}
	if status, m := e.postForm("/token", form, id, "wrong"); status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", status, m)
	}
	f2 := url.Values{"client_id": {id}}
	for k, v := range form {
		f2[k] = v
	}
	if status, m := e.postForm("/token", f2, "", ""); status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Fatalf("no secret: %d %v", status, m)
	}
	// The failed attempts above were refused before the code was looked
	// at, so it is still good.
	if status, m := e.postForm("/token", form, id, secret); status != http.StatusOK {
		t.Fatalf("right secret: %d %v", status, m)
	}
}

// TestDeny: denying sends access_denied back, with state and iss.
func TestDeny(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	form := e.consentForm(e.authURL(id, oauth2.GenerateVerifier()))
	form.Set("decision", "deny")
	resp, _ := e.submit(form)
	if got := e.redirectError(resp); got != "access_denied" {
		t.Fatalf("error = %s", got)
	}
}
