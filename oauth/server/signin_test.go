package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/vault/store"
)

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	getJSON := func(path string) map[string]any {
		t.Helper()
		resp, body := e.get(http.DefaultClient, e.ts.URL+path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d, CORS %q", path, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	as := getJSON("/.well-known/oauth-authorization-server")
	want := map[string]any{
		"issuer":                                         e.ts.URL,
		"authorization_endpoint":                         e.ts.URL + "/authorize",
		"token_endpoint":                                 e.ts.URL + "/token",
		"registration_endpoint":                          e.ts.URL + "/register",
		"revocation_endpoint":                            e.ts.URL + "/revoke",
		"code_challenge_methods_supported":               []any{"S256"},
		"response_types_supported":                       []any{"code"},
		"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported":          []any{"none", "client_secret_basic", "client_secret_post"},
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          true,
		"scopes_supported":                               []any{"mcp"},
	}
	for k, v := range want {
		got, ok := as[k]
		if !ok || !reflect.DeepEqual(got, v) {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := as["jwks_uri"]; ok {
		t.Error("jwks_uri published though nothing is signed")
	}
	if oidc := getJSON("/.well-known/openid-configuration"); !reflect.DeepEqual(oidc, as) {
		t.Errorf("openid-configuration differs: %v", oidc)
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		prm := getJSON(path)
		if prm["resource"] != e.resource() || !reflect.DeepEqual(prm["authorization_servers"], []any{e.ts.URL}) ||
			!reflect.DeepEqual(prm["scopes_supported"], []any{"mcp"}) || !reflect.DeepEqual(prm["bearer_methods_supported"], []any{"header"}) {
			t.Errorf("%s: %v", path, prm)
		}
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t)
	preflight := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, e.ts.URL+path, nil)
		req.Header.Set("Origin", "https://inspector.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type, mcp-protocol-version")
		resp, _ := e.do(http.DefaultClient, req)
		return resp
	}
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration",
		"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp", "/register", "/token", "/revoke"} {
		resp := preflight(path)
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "mcp-protocol-version") {
			t.Errorf("%s preflight: %d %v", path, resp.StatusCode, h)
		}
	}
	// The pages a browser navigates to are not for cross-origin scripts.
	for _, path := range []string{"/authorize", "/signin"} {
		if h := preflight(path).Header.Get("Access-Control-Allow-Origin"); h != "" {
			t.Errorf("%s allows origin %q", path, h)
		}
		resp, _ := e.get(http.DefaultClient, e.ts.URL+path)
		if h := resp.Header.Get("Access-Control-Allow-Origin"); h != "" {
			t.Errorf("%s GET allows origin %q", path, h)
		}
	}
	// The token endpoint's real answers carry CORS too, errors included.
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/token", strings.NewReader("grant_type=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ := e.do(http.DefaultClient, req)
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("token error without CORS")
	}
}

func TestSigninLinkSingleUse(t *testing.T) {
	e := newEnv(t)
	link, err := e.srv.SigninLink(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, e.ts.URL+"/signin?link=") {
		t.Fatalf("link %s", link)
	}
	// Opening the link (a link preview does the same) uses nothing up.
	for range 2 {
		resp, body := e.get(&http.Client{}, link)
		if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 0 || !strings.Contains(body, `<button type="submit">Sign in</button>`) {
			t.Fatalf("opening the link: %d %v %s", resp.StatusCode, resp.Cookies(), body)
		}
	}
	resp, _ := e.useLink(e.browser, link)
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("first use: %d %v", resp.StatusCode, resp.Cookies())
	}
	c := resp.Cookies()[0]
	if c.Name != "alterhost_session" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
		t.Fatalf("cookie %+v", c)
	}
	other := &http.Client{CheckRedirect: e.browser.CheckRedirect}
	resp, body := e.useLink(other, link)
	if resp.StatusCode != http.StatusGone || len(resp.Cookies()) != 0 {
		t.Fatalf("second use: %d %v %s", resp.StatusCode, resp.Cookies(), body)
	}
}

func TestSigninLinkExpires(t *testing.T) {
	e := newEnv(t)
	link, _ := e.srv.SigninLink(t.Context())
	e.clock.Advance(16 * time.Minute)
	if resp, _ := e.useLink(e.browser, link); resp.StatusCode != http.StatusGone || len(resp.Cookies()) != 0 {
		t.Fatalf("expired link: %d", resp.StatusCode)
	}
}

// TestConnectLinkDoesNotSignIn: Connect links live in the same table and
// are handed to whoever reads a tool's result; one must not sign in.
func TestConnectLinkDoesNotSignIn(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	err := e.store.(authStore).PutLink(t.Context(), store.Link{TokenHash: hash("connect-token"), Subject: owner,
		Provider: "github", CreatedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := e.useLink(e.browser, e.ts.URL+"/signin?link=connect-token")
	if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
		t.Fatalf("Connect link at /signin: %d %v", resp.StatusCode, resp.Cookies())
	}
}

func TestSigninNextIsNotAnOpenRedirect(t *testing.T) {
	e := newEnv(t)
	for _, next := range []string{
		"https://evil.example/authorize?x=1",
		"//evil.example/authorize?x=1",
		"/\\evil.example/authorize?x=1",
		"\\\\evil.example/authorize?",
		"/authorize@evil.example?x",
		"/authorizex?x=1",
		"/authorize/../evil?x=1",
		"/authorize?x=1\r\nSet-Cookie: a=b",
		"/signin?link=x",
		"javascript:alert(1)//authorize?",
		"",
	} {
		link, _ := e.srv.SigninLink(t.Context())
		resp, body := e.useLink(e.browser, link+"&next="+url.QueryEscape(next))
		if loc := resp.Header.Get("Location"); loc != "" || resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in") {
			t.Errorf("next %q: %d, Location %q", next, resp.StatusCode, loc)
		}
	}
	link, _ := e.srv.SigninLink(t.Context())
	resp, _ := e.useLink(e.browser, link+"&next="+url.QueryEscape("/authorize?client_id=x&state=y"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/authorize?client_id=x&state=y" {
		t.Fatalf("good next: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestHTTPSCookie: on an https issuer the session cookie is __Host- and
// Secure.
func TestHTTPSCookie(t *testing.T) {
	issuer, _ := url.Parse("https://alterhost.example")
	srv, err := New(Options{Store: testStore(t), Issuer: issuer, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	link, _ := srv.SigninLink(t.Context())
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/signin", strings.NewReader(url.Values{"link": {link}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	srv.signin(w, req)
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != "__Host-alterhost_session" || !cs[0].Secure || cs[0].Path != "/" || cs[0].Domain != "" {
		t.Fatalf("cookies %+v", cs)
	}
	md := srv.authServerMeta()
	if md.Issuer != "https://alterhost.example" || srv.opts.Resource != "https://alterhost.example/mcp" {
		t.Fatalf("issuer %s resource %s", md.Issuer, srv.opts.Resource)
	}
}

func TestNewRejects(t *testing.T) {
	st := testStore(t)
	for _, raw := range []string{"http://alterhost.example", "https://alterhost.example/sub", "ftp://x", "/relative"} {
		u, _ := url.Parse(raw)
		if _, err := New(Options{Store: st, Issuer: u, Owner: owner}); err == nil {
			t.Errorf("issuer %s accepted", raw)
		}
	}
	u, _ := url.Parse("https://alterhost.example")
	if _, err := New(Options{Store: st, Issuer: u}); err == nil {
		t.Error("no owner accepted")
	}
}

// TestSignout: the consent page's form ends the session with its CSRF
// token; without it, or from another site, nothing happens. A signed-out
// session is refused everywhere, even with its old cookie.
func TestSignout(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.signIn()
	authURL := e.authURL(id, oauth2.GenerateVerifier())
	form := e.consentForm(authURL)
	old := e.sessionCookie(e.browser)
	signout := func(fields url.Values, header http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/signout", strings.NewReader(fields.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header[k] = v
		}
		return e.do(e.browser, req)
	}
	if resp, _ := signout(url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("without CSRF: %d", resp.StatusCode)
	}
	if resp, _ := signout(url.Values{"csrf": {"wrong"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong CSRF: %d", resp.StatusCode)
	}
	cross := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
	if resp, _ := signout(url.Values{"csrf": {form.Get("csrf")}}, cross); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site: %d", resp.StatusCode)
	}
	if who, ok := e.subjectOf(e.browser); !ok || who != owner {
		t.Fatal("a refused sign-out signed out")
	}

	resp, body := signout(url.Values{"csrf": {form.Get("csrf")}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed out") {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, body)
	}
	if e.sessionCookie(e.browser) != nil {
		t.Fatal("the session cookie was not cleared")
	}
	// The old cookie, kept by someone, is worth nothing now.
	stale := newBrowser()
	u, _ := url.Parse(e.ts.URL)
	stale.Jar.SetCookies(u, []*http.Cookie{old})
	if who, ok := e.subjectOf(stale); ok {
		t.Fatalf("the old session still names %q", who)
	}
	resp, body = e.get(stale, authURL)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, `action="/authorize"`) || !strings.Contains(body, "Sign in") {
		t.Fatalf("/authorize with the old cookie: %d %s", resp.StatusCode, body)
	}
	form.Set("decision", "approve")
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := e.do(stale, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("consent with the old cookie: %d", resp.StatusCode)
	}
	// Signing out again is harmless.
	if resp, _ := signout(url.Values{"csrf": {form.Get("csrf")}}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("second sign-out: %d", resp.StatusCode)
	}
}

// TestSignoutOIDC: in OIDC mode signing out says the provider may still
// hold a session, and the next /authorize goes to the provider again.
func TestSignoutOIDC(t *testing.T) {
	e, is := newOIDCEnv(t)
	id := e.publicClient()
	authURL := e.authURL(id, oauth2.GenerateVerifier())
	resp, body := e.browse(e.browser, authURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	csrf := hiddenInput.FindAllStringSubmatch(body, -1)
	var token string
	for _, m := range csrf {
		if m[1] == "csrf" {
			token = m[2]
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/signout", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = e.do(e.browser, req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, is.URL) {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.get(e.browser, authURL); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), is.URL) {
		t.Fatalf("after sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]bool{
		"/authorize?client_id=x&state=y":       true,
		"/connect/github?link=abc":             true,
		"/connect/my-provider.v2?link=a-b_c":   true,
		"/connect/github?link=abc&next=/x":     false,
		"/connect/github?link=a&link=b":        false,
		"/connect/github?link=":                false,
		"/connect/github?other=abc":            false,
		"/connect/github":                      false,
		"/connect/github/callback?link=abc":    false,
		"/connect/github/disconnect?link=abc":  false,
		"/connect/GitHub?link=abc":             false,
		"/connect/..?link=abc":                 false,
		"/connect/%2e%2e?link=abc":             false,
		"/connect/a%2Fb?link=abc":              false,
		"/connect/github?link=abc#frag":        false,
		"/connect/github?link=a;b":             false,
		"//evil.example/connect/x?link=a":      false,
		"https://evil.example/connect/x?link=": false,
		"/\\evil.example/connect/x?link=a":     false,
		"/connect/github?link=a b":             false,
		"/authorize":                           false,
		"/signin?next=/authorize?x":            false,
		"":                                     false,
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %v, want %v", next, got, want)
		}
	}
}

// TestSigninURLOwner: in owner mode SigninURL is the sign-in page, which
// carries next through the pasted link and returns to a Connect link.
func TestSigninURLOwner(t *testing.T) {
	e := newEnv(t)
	const next = "/connect/github?link=tok"
	if got := e.srv.SigninURL("https://evil.example/"); got != e.ts.URL+"/signin" {
		t.Fatalf("SigninURL(unsafe) = %s", got)
	}
	u := e.srv.SigninURL(next)
	if u != e.ts.URL+"/signin?next="+url.QueryEscape(next) {
		t.Fatalf("SigninURL = %s", u)
	}
	resp, body := e.get(e.browser, u)
	m := hiddenInput.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || m[1] != "next" || unescape(m[2]) != next {
		t.Fatalf("sign-in page: %d %s", resp.StatusCode, body)
	}
	link, _ := e.srv.SigninLink(t.Context())
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/signin", strings.NewReader(url.Values{"link": {link}, "next": {next}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = e.do(e.browser, req)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != next {
		t.Fatalf("after sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An unsafe next on the page is dropped, not rendered.
	_, body = e.get(e.browser, e.ts.URL+"/signin?next="+url.QueryEscape("https://evil.example/"))
	if strings.Contains(body, "evil.example") {
		t.Fatalf("unsafe next rendered: %s", body)
	}
}
