package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/vault"
)

const (
	testClientID = "client-1"
	testSecret   = "s3cr3t-value-never-printed"
)

// fakeServer is a small OAuth server on 127.0.0.1 that checks what a
// client sends: client authentication, PKCE, redirect_uri, and rotation.
type fakeServer struct {
	*httptest.Server
	t *testing.T

	mu        sync.Mutex
	challenge string // S256 challenge of the expected verifier
	redirect  string
	refresh   map[string]bool // live refresh tokens
	revoked   []string
	revokeReq *http.Request
	// form makes token answers form-encoded with comma scopes, as GitHub's.
	form bool
	// errorWith200 answers errors with HTTP 200, as GitHub and Slack do.
	errorWith200 bool
	deadCode     string // error code for a dead refresh token
	scope        string // scope to report; "" reports none
	nested       bool   // put the token under authed_user, as Slack does
	authStyle    TokenAuth
	tokenCalls   int
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{t: t, refresh: map[string]bool{"rt-0": true}, deadCode: "invalid_grant",
		scope: "read write", authStyle: TokenAuthHeader}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("/revoke", f.revoke)
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) config() Config {
	return Config{
		Name: "fake", DisplayName: "Fake", AuthURL: f.URL + "/authorize", TokenURL: f.URL + "/token",
		RevokeURL: f.URL + "/revoke", ClientID: testClientID, Scopes: []string{"base"}, PKCE: true,
		TokenAuth: f.authStyle, APIHosts: []abi.HostPattern{"api.fake.test"},
	}
}

func (f *fakeServer) fail(w http.ResponseWriter, status int, code string) {
	if f.errorWith200 {
		status = http.StatusOK
	}
	if f.form {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		w.WriteHeader(status)
		fmt.Fprint(w, url.Values{"error": {code}, "error_description": {"nope"}}.Encode())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": code, "error_description": "nope"})
}

// clientOK checks client authentication in the configured style only.
func (f *fakeServer) clientOK(r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if f.authStyle == TokenAuthParams {
		return !basic && r.PostForm.Get("client_id") == testClientID && r.PostForm.Get("client_secret") == testSecret
	}
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	return basic && id == testClientID && secret == testSecret && r.PostForm.Get("client_secret") == ""
}

func (f *fakeServer) token(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenCalls++
	r.ParseForm()
	if !f.clientOK(r) {
		f.fail(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	var rt string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		if r.PostForm.Get("code") != "good-code" || r.PostForm.Get("redirect_uri") != f.redirect ||
			oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != f.challenge {
			f.fail(w, http.StatusBadRequest, "invalid_grant")
			return
		}
	case "refresh_token":
		old := r.PostForm.Get("refresh_token")
		if !f.refresh[old] {
			f.fail(w, http.StatusBadRequest, f.deadCode)
			return
		}
		if old == "rt-keep" { // a provider that keeps its refresh token
			f.writeToken(w, "at-kept", "")
			return
		}
		delete(f.refresh, old)
	default:
		f.fail(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	rt = fmt.Sprintf("rt-%d", f.tokenCalls)
	f.refresh[rt] = true
	f.writeToken(w, fmt.Sprintf("at-%d", f.tokenCalls), rt)
}

func (f *fakeServer) writeToken(w http.ResponseWriter, access, refresh string) {
	if f.form {
		v := url.Values{"access_token": {access}, "token_type": {"bearer"}, "expires_in": {"3600"}}
		if refresh != "" {
			v.Set("refresh_token", refresh)
		}
		if f.scope != "" {
			v.Set("scope", strings.ReplaceAll(f.scope, " ", ","))
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		fmt.Fprint(w, v.Encode())
		return
	}
	tok := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": 3600}
	if refresh != "" {
		tok["refresh_token"] = refresh
	}
	if f.scope != "" {
		tok["scope"] = f.scope
	}
	body := tok
	if f.nested {
		tok["id"] = "U123"
		body = map[string]any{"ok": true, "access_token": "xoxb-bot", "refresh_token": "bot-refresh",
			"scope": "bot:scope", "authed_user": tok}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

func (f *fakeServer) revoke(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r.ParseForm()
	f.revokeReq = r
	if !f.clientOK(r) {
		f.fail(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	f.revoked = append(f.revoked, r.PostForm.Get("token"))
	delete(f.refresh, r.PostForm.Get("token"))
}

func newFake(t *testing.T, f *fakeServer, mutate ...func(*Config)) *Provider {
	t.Helper()
	cfg := f.config()
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg, WithClientSecret(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExchangeWithPKCE(t *testing.T) {
	for _, style := range []TokenAuth{TokenAuthHeader, TokenAuthParams} {
		t.Run(string(style), func(t *testing.T) {
			f := newFakeServer(t)
			f.authStyle = style
			p := newFake(t, f)
			verifier := oauth2.GenerateVerifier()
			f.challenge = oauth2.S256ChallengeFromVerifier(verifier)
			f.redirect = "http://127.0.0.1:9/callback"

			u, err := url.Parse(p.AuthCodeURL("st4te", f.challenge, f.redirect, []string{"write", "base", "read"}))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			for k, want := range map[string]string{"state": "st4te", "code_challenge": f.challenge,
				"code_challenge_method": "S256", "redirect_uri": f.redirect, "client_id": testClientID,
				"response_type": "code", "scope": "base write read"} {
				if q.Get(k) != want {
					t.Errorf("auth URL %s = %q, want %q", k, q.Get(k), want)
				}
			}

			if _, err := p.Exchange(context.Background(), "good-code", "wrong-verifier", f.redirect); err == nil {
				t.Error("exchange with a wrong verifier succeeded")
			}
			tok, err := p.Exchange(context.Background(), "good-code", verifier, f.redirect)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.RefreshToken == "" || !slices.Equal(tok.Scopes, []string{"read", "write"}) {
				t.Errorf("token = %+v", tok)
			}
			if d := time.Until(tok.Expiry); d < 59*time.Minute || d > 61*time.Minute {
				t.Errorf("expiry in %v, want about an hour", d)
			}
		})
	}
}

func TestExchangeWithoutPKCE(t *testing.T) {
	f := newFakeServer(t)
	p := newFake(t, f, func(c *Config) { c.PKCE = false })
	u, _ := url.Parse(p.AuthCodeURL("s", "challenge", "http://127.0.0.1/cb", nil))
	if u.Query().Has("code_challenge") || u.Query().Get("scope") != "base" {
		t.Errorf("auth URL without PKCE: %s", u)
	}
}

func TestRefreshRotationAndInvalidGrant(t *testing.T) {
	f := newFakeServer(t)
	p := newFake(t, f)
	ctx := context.Background()
	tok, err := p.Refresh(ctx, "rt-0")
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == "rt-0" || tok.AccessToken == "" {
		t.Errorf("rotated token = %+v", tok)
	}
	if _, err := p.Refresh(ctx, tok.RefreshToken); err != nil {
		t.Errorf("refresh with the rotated token: %v", err)
	}
	_, err = p.Refresh(ctx, "rt-0")
	if !errors.Is(err, vault.ErrInvalidGrant) {
		t.Fatalf("reused refresh token: %v, want ErrInvalidGrant", err)
	}
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "invalid_grant" || te.Status != 400 {
		t.Errorf("TokenError = %+v", te)
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error leaks the secret: %v", err)
	}

	// A provider that keeps the refresh token: "" says so.
	f.refresh["rt-keep"] = true
	tok, err = p.Refresh(ctx, "rt-keep")
	if err != nil || tok.RefreshToken != "" || tok.AccessToken != "at-kept" {
		t.Errorf("kept refresh token: %+v, %v", tok, err)
	}

	// Other errors do not read as invalid_grant.
	f.deadCode = "temporarily_unavailable"
	if _, err := p.Refresh(ctx, "unknown"); err == nil || errors.Is(err, vault.ErrInvalidGrant) {
		t.Errorf("temporarily_unavailable: %v", err)
	}
}

// TestGitHubStyle: form-encoded answers, errors with HTTP 200, scopes
// separated by commas, and bad_refresh_token meaning invalid_grant.
func TestGitHubStyle(t *testing.T) {
	f := newFakeServer(t)
	f.form, f.errorWith200, f.deadCode = true, true, "bad_refresh_token"
	f.authStyle = TokenAuthParams
	p := newFake(t, f, func(c *Config) { c.InvalidGrantErrors = []string{"bad_refresh_token"} })
	tok, err := p.Refresh(context.Background(), "rt-0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tok.Scopes, []string{"read", "write"}) {
		t.Errorf("scopes = %q", tok.Scopes)
	}
	if _, err := p.Refresh(context.Background(), "rt-0"); !errors.Is(err, vault.ErrInvalidGrant) {
		t.Errorf("bad_refresh_token: %v, want ErrInvalidGrant", err)
	}
}

// TestSlackStyle: comma-joined user_scope, the person's token nested under
// authed_user beside a bot token, and the account id read from there.
func TestSlackStyle(t *testing.T) {
	f := newFakeServer(t)
	f.nested, f.scope = true, "users:read,chat:write"
	p := newFake(t, f, func(c *Config) {
		c.ScopeSeparator, c.ScopeParam, c.UserTokenField, c.AccountIDField = ",", "user_scope", "authed_user", "authed_user.id"
		c.Scopes = nil
	})
	u, _ := url.Parse(p.AuthCodeURL("s", "", "http://127.0.0.1/cb", []string{"users:read", "chat:write"}))
	if got := u.Query().Get("user_scope"); got != "users:read,chat:write" || u.Query().Has("scope") {
		t.Errorf("user_scope = %q in %s", got, u)
	}
	tok, err := p.Refresh(context.Background(), "rt-0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.AccessToken, "at-") || !strings.HasPrefix(tok.RefreshToken, "rt-") || tok.AccountID != "U123" ||
		!slices.Equal(tok.Scopes, []string{"users:read", "chat:write"}) {
		t.Errorf("token = %+v; want the nested user token, not the bot's", tok)
	}
}

func TestScopeFallback(t *testing.T) {
	f := newFakeServer(t)
	f.scope = ""
	p := newFake(t, f)
	tok, err := p.Refresh(context.Background(), "rt-0")
	if err != nil || tok.Scopes != nil {
		t.Errorf("no scope in the answer: scopes %q, %v; want nil (the caller's requested scopes apply)", tok.Scopes, err)
	}
}

func TestRevoke(t *testing.T) {
	f := newFakeServer(t)
	p := newFake(t, f)
	ctx := context.Background()
	if err := p.RevokeGrant(ctx, vault.Token{AccessToken: "at", RefreshToken: "rt-0"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.revoked, []string{"rt-0"}) {
		t.Errorf("revoked %q, want the refresh token", f.revoked)
	}
	if _, err := p.Refresh(ctx, "rt-0"); !errors.Is(err, vault.ErrInvalidGrant) {
		t.Errorf("refresh after revoke: %v", err)
	}

	none := newFake(t, f, func(c *Config) { c.RevokeURL = "" })
	if err := none.Revoke(ctx, "x"); !errors.Is(err, ErrRevokeUnsupported) || none.CanRevoke() {
		t.Errorf("no revoke_url: %v", err)
	}

	// A refused revocation is an error that does not repeat the token.
	bad, _ := New(f.config(), WithClientSecret("wrong"))
	err := bad.Revoke(ctx, "tok-123")
	if err == nil || strings.Contains(err.Error(), "tok-123") {
		t.Errorf("refused revocation: %v", err)
	}
}

func TestRevokeStyles(t *testing.T) {
	var got *http.Request
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		if r.URL.Path == "/slack" {
			fmt.Fprint(w, `{"ok": false, "error": "invalid_auth"}`)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	ctx := context.Background()
	mk := func(path string, style RevokeStyle, headers map[string]string) *Provider {
		f := &fakeServer{Server: srv}
		cfg := f.config()
		cfg.RevokeURL, cfg.RevokeStyle, cfg.RevokeHeaders = srv.URL+path, style, headers
		p, err := New(cfg, WithClientSecret(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	if err := mk("/applications/{client_id}/grant", RevokeGitHub, nil).RevokeGrant(ctx, vault.Token{AccessToken: "at", RefreshToken: "rt"}); err != nil {
		t.Fatal(err)
	}
	id, secret, _ := got.BasicAuth()
	if got.Method != http.MethodDelete || got.URL.Path != "/applications/client-1/grant" || body != `{"access_token":"at"}` ||
		id != testClientID || secret != testSecret {
		t.Errorf("github style: %s %s %s", got.Method, got.URL.Path, body)
	}

	// A replaced grant at GitHub: "delete an app token", the token alone.
	gh := mk("/applications/{client_id}/grant", RevokeGitHub, nil)
	gh.cfg.ReplacedRevokeURL = srv.URL + "/applications/{client_id}/token"
	if err := gh.RevokeReplacedGrant(ctx, vault.Token{AccessToken: "at", RefreshToken: "rt"}); err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodDelete || got.URL.Path != "/applications/client-1/token" || body != `{"access_token":"at"}` {
		t.Errorf("github replaced grant: %s %s %s", got.Method, got.URL.Path, body)
	}
	// Without a replaced_revoke_url, a replaced grant goes where any does.
	if err := mk("/rfc7009", RevokeRFC7009, nil).RevokeReplacedGrant(ctx, vault.Token{AccessToken: "at", RefreshToken: "rt"}); err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/rfc7009" || !strings.Contains(body, "token=rt") {
		t.Errorf("rfc7009 replaced grant: %s %s", got.URL.Path, body)
	}

	if err := mk("/notion", RevokeJSON, map[string]string{"Notion-Version": "2025-09-03"}).Revoke(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || body != `{"token":"tok"}` || got.Header.Get("Notion-Version") != "2025-09-03" {
		t.Errorf("json style: %s %s %v", got.Method, body, got.Header)
	}

	err := mk("/slack", RevokeBearer, nil).Revoke(ctx, "xoxp-1")
	if got.Header.Get("Authorization") != "Bearer xoxp-1" || err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Errorf("bearer style: %v, header %q", err, got.Header.Get("Authorization"))
	}
}

func TestNotConfigured(t *testing.T) {
	f := newFakeServer(t)
	cfg := f.config()
	cfg.ClientID = ""
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Configured() {
		t.Error("a provider without client id is configured")
	}
	if _, err := p.Exchange(context.Background(), "c", "v", "http://127.0.0.1/"); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("exchange: %v", err)
	}
	// A client id without a secret is an error unless the client is public.
	cfg.ClientID = "id"
	if _, err := New(cfg); err == nil {
		t.Error("confidential client without a secret accepted")
	}
	cfg.Public = true
	if p, err := New(cfg); err != nil || !p.Configured() {
		t.Errorf("public client: %v", err)
	}
	cfg.Public, cfg.ClientSecretEnv = false, "ALTERHOST_TEST_SECRET_XYZ"
	t.Setenv("ALTERHOST_TEST_SECRET_XYZ", "from-env")
	if p, err := New(cfg); err != nil || p.secretValue() != "from-env" {
		t.Errorf("secret from env: %v", err)
	}
}

// TestDefaultClientDoesNotFollowRedirects: a token endpoint that
// redirects must not get the client secret replayed elsewhere.
func TestDefaultClientDoesNotFollowRedirects(t *testing.T) {
	hit := false
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit = true }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	p, err := New(Config{Name: "r", AuthURL: srv.URL, TokenURL: srv.URL + "/token", ClientID: "c",
		TokenAuth: TokenAuthParams, APIHosts: []abi.HostPattern{"x.test"}}, WithClientSecret(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Refresh(context.Background(), "rt"); err == nil || hit {
		t.Errorf("redirect followed: err %v, hit %v", err, hit)
	}
}
