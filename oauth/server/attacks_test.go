package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/vault/store"
)

// authorizeWith opens an authorization request built from params in the
// signed-in browser.
func (e *env) authorizeWith(params url.Values) (*http.Response, string) {
	e.t.Helper()
	return e.get(e.browser, e.ts.URL+"/authorize?"+params.Encode())
}

func (e *env) baseParams(clientID string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"state": {"state-123"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}, "resource": {e.resource()}, "scope": {"mcp"}}
}

func TestPKCERequired(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	for name, mod := range map[string]func(url.Values){
		"no challenge":       func(p url.Values) { p.Del("code_challenge"); p.Del("code_challenge_method") },
		"no method":          func(p url.Values) { p.Del("code_challenge_method") },
		"plain":              func(p url.Values) { p.Set("code_challenge_method", "plain") },
		"short challenge":    func(p url.Values) { p.Set("code_challenge", "abc") },
		"method but no code": func(p url.Values) { p.Del("code_challenge") },
	} {
		t.Run(name, func(t *testing.T) {
			p := e.baseParams(id)
			mod(p)
			resp, _ := e.authorizeWith(p)
			if got := e.redirectError(resp); got != "invalid_request" {
				t.Fatalf("error = %s", got)
			}
		})
	}
	// The same request with S256 reaches the consent page.
	resp, body := e.authorizeWith(e.baseParams(id))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Approve") {
		t.Fatalf("consent page: %d", resp.StatusCode)
	}
}

func TestWrongVerifier(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	code := e.code(id, v)
	for _, bad := range []string{oauth2.GenerateVerifier(), "", "short"} {
		status, m := e.exchange(id, code, bad, nil)
		if status != http.StatusBadRequest || (m["error"] != "invalid_grant" && m["error"] != "invalid_request") {
			t.Fatalf("verifier %q: %d %v", bad, status, m)
		}
	}
}

func TestRedirectURIMismatchIsAPage(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient(redirect, "http://127.0.0.1/loopback", "https://app.example/cb")
	e.signIn()
	for _, bad := range []string{
		"https://evil.example/callback",
		redirect + "/evil",               // prefix match
		redirect + "x",                   // prefix match
		redirect + "?next=https://evil",  // query added
		"http://localhost:5555/callback", // another loopback name
		"https://app.example/cb/../evil",
		"https://app.example/cb#frag",
		"https://app.example:444/cb", // port varies only on loopback
		"http://127.0.0.1:9/loopback/x",
		"",
	} {
		p := e.baseParams(id)
		p.Set("redirect_uri", bad)
		resp, body := e.authorizeWith(p)
		noRedirect(t, resp, body)
	}
	// Unknown client: a page too.
	p := e.baseParams("ahc_nobody")
	resp, body := e.authorizeWith(p)
	noRedirect(t, resp, body)
	// Even a bad request with a bad redirect URI is a page, not a redirect.
	p = e.baseParams(id)
	p.Set("redirect_uri", "https://evil.example/")
	p.Set("code_challenge_method", "plain")
	resp, body = e.authorizeWith(p)
	noRedirect(t, resp, body)

	// A loopback redirect matches with any port (RFC 8252 §7.3).
	p = e.baseParams(id)
	p.Set("redirect_uri", "http://127.0.0.1:41234/loopback")
	if resp, _ := e.authorizeWith(p); resp.StatusCode != http.StatusOK {
		t.Fatalf("loopback with a port: %d", resp.StatusCode)
	}
}

func TestCodeReplayRevokesTokens(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	code := e.code(id, v)
	at, rt := e.tokens(id, code, v)
	if !e.valid(at) {
		t.Fatal("first access token rejected")
	}
	status, m := e.exchange(id, code, v, nil)
	if status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", status, m)
	}
	if e.valid(at) {
		t.Fatal("the replayed code's access token is still valid")
	}
	if status, _ := e.refresh(id, rt, nil); status != http.StatusBadRequest {
		t.Fatalf("the replayed code's refresh token still works: %d", status)
	}
}

func TestCodeRedeemedByAnotherClient(t *testing.T) {
	e := newEnv(t)
	a, b := e.publicClient(), e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	code := e.code(a, v)
	status, m := e.exchange(b, code, v, nil)
	if status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("other client: %d %v", status, m)
	}
}

func TestCodeRedirectMustMatch(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	code := e.code(id, v)
	status, m := e.exchange(id, code, v, url.Values{"redirect_uri": {"http://127.0.0.1:5556/callback"}})
	if status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("other redirect: %d %v", status, m)
	}
}

func TestCodeExpires(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	code := e.code(id, v)
	e.clock.Advance(61 * time.Second)
	status, m := e.exchange(id, code, v, nil)
	if status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("expired code: %d %v", status, m)
	}
}

func TestResourceBinding(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()

	// At authorize: required, and only this server's.
	for _, res := range []string{"", "https://other.example/mcp", e.ts.URL, e.resource() + "/"} {
		p := e.baseParams(id)
		if res == "" {
			p.Del("resource")
		} else {
			p.Set("resource", res)
		}
		resp, _ := e.authorizeWith(p)
		if got := e.redirectError(resp); got != "invalid_target" {
			t.Fatalf("resource %q: %s", res, got)
		}
	}
	p := e.baseParams(id)
	p.Add("resource", "https://other.example/mcp")
	if resp, _ := e.authorizeWith(p); e.redirectError(resp) != "invalid_target" {
		t.Fatal("two resources accepted")
	}

	// At the token endpoint: a different or added resource is refused.
	v := oauth2.GenerateVerifier()
	code := e.code(id, v)
	status, m := e.exchange(id, code, v, url.Values{"resource": {"https://other.example/mcp"}})
	if status != http.StatusBadRequest || m["error"] != "invalid_target" {
		t.Fatalf("other resource: %d %v", status, m)
	}
	code = e.code(id, v)
	status, m = e.exchange(id, code, v, url.Values{"resource": {e.resource(), "https://other.example/mcp"}})
	if status != http.StatusBadRequest || m["error"] != "invalid_target" {
		t.Fatalf("widened resource: %d %v", status, m)
	}
	// Omitted, the code's resource holds.
	code = e.code(id, v)
	status, m = e.exchange(id, code, v, url.Values{"resource": nil})
	if status != http.StatusOK {
		t.Fatalf("no resource: %d %v", status, m)
	}
	rt := m["refresh_token"].(string)
	status, m = e.refresh(id, rt, url.Values{"resource": {"https://other.example/mcp"}})
	if status != http.StatusBadRequest || m["error"] != "invalid_target" {
		t.Fatalf("refresh to another resource: %d %v", status, m)
	}
}

func TestVerifyAudienceAndKind(t *testing.T) {
	e := newEnv(t)
	as := e.store.(authStore)
	now := e.clock.Now()
	put := func(raw string, kind store.TokenKind, resource string) {
		err := as.PutTokens(t.Context(), store.Token{Hash: hash(raw), Kind: kind, FamilyID: "f-" + raw, ClientID: "c",
			Subject: owner, Resource: resource, Scopes: []string{"mcp"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("ah_at_good", store.AccessToken, e.resource())
	put("ah_at_other", store.AccessToken, "https://other.example/mcp")
	put("ah_rt_refresh", store.RefreshToken, e.resource())
	put("ah_at_refreshkind", store.RefreshToken, e.resource()) // the kind decides, not the prefix
	put("ah_at_origin", store.AccessToken, e.ts.URL)
	if !e.valid("ah_at_good") {
		t.Fatal("good token rejected")
	}
	for _, bad := range []string{"ah_at_other", "ah_rt_refresh", "ah_at_refreshkind", "ah_at_origin", "ah_at_unknown", "", "Bearer ah_at_good", "good"} {
		if _, err := e.srv.Verify(t.Context(), bad, nil); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	e.clock.Advance(time.Hour)
	if _, err := e.srv.Verify(t.Context(), "ah_at_good", nil); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("expired: %v", err)
	}
}

// TestRefreshReuseAfterGrace: a rotated refresh token may be retried
// within the grace window; after it, presenting it revokes the family.
func TestRefreshReuseAfterGrace(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	at1, rt1 := e.tokens(id, e.code(id, v), v)
	status, m := e.refresh(id, rt1, nil)
	if status != http.StatusOK {
		e.e(status, m)
	}
	at2, rt2 := m["access_token"].(string), m["refresh_token"].(string)
	e.clock.Advance(10 * time.Second)
	status, m = e.refresh(id, rt1, nil) // a retry after a lost response
	if status != http.StatusOK {
		t.Fatalf("retry within grace: %d %v", status, m)
	}
	at3 := m["access_token"].(string)
	e.clock.Advance(25 * time.Second)
	status, m = e.refresh(id, rt1, nil)
	if status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("reuse after grace: %d %v", status, m)
	}
	for _, at := range []string{at1, at2, at3} {
		if e.valid(at) {
			t.Fatal("an access token of the reused family is still valid")
		}
	}
	if status, _ := e.refresh(id, rt2, nil); status != http.StatusBadRequest {
		t.Fatal("the successor refresh token survived the reuse")
	}
}

// TestConcurrentRefreshOneFamily: racing refreshes of one token never
// start a second family: whatever they mint, reusing the token later
// revokes all of it.
func TestConcurrentRefreshOneFamily(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	_, rt := e.tokens(id, e.code(id, v), v)
	var mu sync.Mutex
	var access, refresh []string
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			form := url.Values{"grant_type": {"refresh_token"}, "client_id": {id}, "refresh_token": {rt}}
			resp, err := http.PostForm(e.ts.URL+"/token", form)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var m map[string]any
			json.NewDecoder(resp.Body).Decode(&m)
			if resp.StatusCode == http.StatusOK {
				mu.Lock()
				defer mu.Unlock()
				access = append(access, m["access_token"].(string))
				refresh = append(refresh, m["refresh_token"].(string))
			} else if m["error"] != "invalid_grant" {
				t.Errorf("concurrent refresh: %d %v", resp.StatusCode, m)
			}
		})
	}
	wg.Wait()
	if len(access) == 0 {
		t.Fatal("no concurrent refresh succeeded")
	}
	e.clock.Advance(time.Minute)
	status, m := e.refresh(id, rt, nil)
	if status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("reuse after grace: %d %v", status, m)
	}
	// Had a refresh started a second family, its tokens would survive.
	for _, at := range access {
		if e.valid(at) {
			t.Fatal("an access token from a concurrent refresh survived the family's revocation")
		}
	}
	for _, r := range refresh {
		if status, _ := e.refresh(id, r, nil); status != http.StatusBadRequest {
			t.Fatal("a refresh token from a concurrent refresh survived the family's revocation")
		}
	}
}

func TestRefreshScopeNarrowsNeverWidens(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Scopes = []string{"mcp", "extra"} })
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	q := e.approve(e.authURL(id, v, oauth2.SetAuthURLParam("scope", "mcp extra")))
	_, rt := e.tokens(id, q.Get("code"), v)
	status, m := e.refresh(id, rt, url.Values{"scope": {"mcp"}})
	if status != http.StatusOK || m["scope"] != "mcp" {
		t.Fatalf("narrow: %d %v", status, m)
	}
	info, err := e.srv.Verify(t.Context(), m["access_token"].(string), nil)
	if err != nil || len(info.Scopes) != 1 {
		t.Fatalf("narrowed token: %+v %v", info, err)
	}
	// The grant keeps its scopes: the next refresh may ask for both again.
	rt = m["refresh_token"].(string)
	status, m = e.refresh(id, rt, url.Values{"scope": {"mcp extra admin"}})
	if status != http.StatusBadRequest || m["error"] != "invalid_scope" {
		t.Fatalf("widen: %d %v", status, m)
	}
	status, m = e.refresh(id, rt, url.Values{"scope": {"mcp extra"}})
	if status != http.StatusOK || m["scope"] != "mcp extra" {
		t.Fatalf("back to the grant's scopes: %d %v", status, m)
	}
	// At authorize, an unsupported scope is refused.
	p := e.baseParams(id)
	p.Set("scope", "mcp admin")
	if resp, _ := e.authorizeWith(p); e.redirectError(resp) != "invalid_scope" {
		t.Fatal("unsupported scope accepted")
	}
}

func TestRefreshByAnotherClient(t *testing.T) {
	e := newEnv(t)
	a, b := e.publicClient(), e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	_, rt := e.tokens(a, e.code(a, v), v)
	if status, m := e.refresh(b, rt, nil); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("other client: %d %v", status, m)
	}
	// Not spent by the attempt.
	if status, m := e.refresh(a, rt, nil); status != http.StatusOK {
		t.Fatalf("owner: %d %v", status, m)
	}
}

func TestRevokeAnotherClientsToken(t *testing.T) {
	e := newEnv(t)
	a, b := e.publicClient(), e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	at, rt := e.tokens(a, e.code(a, v), v)
	for _, tok := range []string{at, rt} {
		status, _ := e.postForm("/revoke", url.Values{"client_id": {b}, "token": {tok}}, "", "")
		if status != http.StatusOK {
			t.Fatalf("revoke by another client: %d, want 200", status)
		}
	}
	if !e.valid(at) {
		t.Fatal("another client revoked the token")
	}
	if status, _ := e.postForm("/revoke", url.Values{"client_id": {b}, "token": {"ah_at_nonsense"}}, "", ""); status != http.StatusOK {
		t.Fatal("unknown token: not 200")
	}
	if status, _ := e.postForm("/revoke", url.Values{"client_id": {"ahc_nobody"}, "token": {at}}, "", ""); status != http.StatusUnauthorized {
		t.Fatal("unknown client may revoke")
	}
	if status, _ := e.postForm("/revoke", url.Values{"client_id": {a}, "token": {at}}, "", ""); status != http.StatusOK {
		t.Fatal("own revocation failed")
	}
	if e.valid(at) {
		t.Fatal("revoked token still valid")
	}
}

func TestConsentCSRF(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	good := e.consentForm(e.authURL(id, oauth2.GenerateVerifier()))
	good.Set("decision", "approve")
	for name, mod := range map[string]func(url.Values){
		"no token":    func(f url.Values) { f.Del("csrf") },
		"wrong token": func(f url.Values) { f.Set("csrf", "x"+f.Get("csrf")[1:]) },
		"empty token": func(f url.Values) { f.Set("csrf", "") },
	} {
		f := url.Values{}
		for k, v := range good {
			f[k] = v
		}
		mod(f)
		resp, body := e.submit(f)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: %d", name, resp.StatusCode)
		}
		noRedirect(t, resp, body)
	}
	// A browser that is not signed in: refused too.
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/authorize", strings.NewReader(good.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := e.do(http.DefaultClient, req)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no session: %d", resp.StatusCode)
	}
	noRedirect(t, resp, body)
	// The real form still works: the failures spent nothing.
	if resp, _ := e.submit(good); resp.StatusCode != http.StatusFound {
		t.Fatalf("good form: %d", resp.StatusCode)
	}
}

func TestPagesForbidFraming(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	check := func(what string, resp *http.Response) {
		t.Helper()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "default-src 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", what, csp, want)
			}
		}
		if strings.Contains(csp, "script-src") {
			t.Errorf("%s: CSP allows scripts: %q", what, csp)
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", what, k, h.Get(k), v)
			}
		}
	}
	authURL := e.authURL(id, oauth2.GenerateVerifier())
	resp, _ := e.get(e.browser, authURL)
	check("sign-in page", resp)
	e.signIn()
	resp, body := e.get(e.browser, authURL)
	if !strings.Contains(body, "Approve") {
		t.Fatal("not the consent page")
	}
	check("consent page", resp)
	// The approval's redirect must pass the page's form-action.
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, " http://127.0.0.1:5555") {
		t.Errorf("consent CSP does not allow the redirect: %q", csp)
	}
	resp, _ = e.get(e.browser, e.ts.URL+"/authorize?client_id=nobody")
	check("error page", resp)
}

func TestConsentPageContent(t *testing.T) {
	var calls []string
	e := newEnv(t, func(o *Options) {
		o.Providers = func() []ProviderScopes {
			return []ProviderScopes{{Name: "github", DisplayName: "GitHub", Scopes: []string{"repo"}}, {Name: "sandbox"}}
		}
		o.Connect = func(_ context.Context, subject, provider string, scopes []string) (string, error) {
			calls = append(calls, subject+"/"+provider+"/"+strings.Join(scopes, ","))
			return "http://127.0.0.1/connect/" + provider + "?link=L-" + provider, nil
		}
	})
	status, m := e.register(map[string]any{"redirect_uris": []string{"http://localhost/cb"}, "client_name": `<b>Evil</b> "Client"`})
	if status != http.StatusCreated {
		e.e(status, m)
	}
	id := m["client_id"].(string)
	e.signIn()
	p := e.baseParams(id)
	p.Set("redirect_uri", "http://localhost:8123/cb")
	resp, body := e.authorizeWith(p)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"&lt;b&gt;Evil&lt;/b&gt;", "this computer", "localhost:8123", "GitHub", "<code>repo</code>",
		`href="http://127.0.0.1/connect/github?link=L-github"`, "sandbox", "<code>mcp</code>", owner} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>Evil") {
		t.Error("client name not escaped")
	}
	if len(calls) != 2 || calls[0] != owner+"/github/repo" {
		t.Errorf("Connect calls: %v", calls)
	}
}
