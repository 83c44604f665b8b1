package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/oauth/jwtverify/jwttest"
	"github.com/alterhost/alterhost/vault/store"
)

const (
	oidcClientID = "alterhost-test"
	oidcSecret   = "oidc-secret-value"
)

var alice = jwttest.User{Subject: "sub-alice", Email: "alice@a.example", EmailVerified: true}

// newOIDCEnv is newEnv in OIDC mode, signing in at a test provider whose
// scripted user is alice.
func newOIDCEnv(t *testing.T, configure ...func(*OIDCConfig)) (*env, *jwttest.Issuer) {
	t.Helper()
	is := jwttest.New(t)
	e := newEnv(t, func(o *Options) {
		o.Owner = ""
		o.OIDC = &OIDCConfig{Issuer: is.URL, ClientID: oidcClientID, ClientSecret: oidcSecret}
		for _, c := range configure {
			c(o.OIDC)
		}
	})
	is.AddClient(oidcClientID, oidcSecret, e.srv.OIDCRedirectURL())
	is.SetUser(alice)
	return e, is
}

func newBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// browse opens u in c and follows redirects, across hosts, until a page
// or a redirect to the MCP client's redirect URI.
func (e *env) browse(c *http.Client, u string) (*http.Response, string) {
	e.t.Helper()
	for range 10 {
		resp, body := e.get(c, u)
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || loc == "" || strings.HasPrefix(loc, redirect) {
			return resp, body
		}
		next, err := resp.Request.URL.Parse(loc)
		if err != nil {
			e.t.Fatal(err)
		}
		u = next.String()
	}
	e.t.Fatalf("too many redirects from %s", u)
	return nil, ""
}

// callbackURL opens u in c and follows redirects until the provider sends
// the browser back to alterhost's callback, and returns that URL unvisited.
func (e *env) callbackURL(c *http.Client, u string) string {
	e.t.Helper()
	for range 10 {
		resp, body := e.get(c, u)
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || loc == "" {
			e.t.Fatalf("no redirect to the callback: %d %s", resp.StatusCode, body)
		}
		next, err := resp.Request.URL.Parse(loc)
		if err != nil {
			e.t.Fatal(err)
		}
		u = next.String()
		if strings.HasPrefix(u, e.srv.OIDCRedirectURL()+"?") {
			return u
		}
	}
	e.t.Fatalf("too many redirects")
	return ""
}

// sessionCookie is the browser's alterhost session cookie, if any.
func (e *env) sessionCookie(c *http.Client) *http.Cookie {
	u, _ := url.Parse(e.ts.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "alterhost_session" {
			return ck
		}
	}
	return nil
}

// subjectOf is who alterhost thinks the browser is.
func (e *env) subjectOf(c *http.Client) (string, bool) {
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/", nil)
	if ck := e.sessionCookie(c); ck != nil {
		req.AddCookie(ck)
	}
	return e.srv.SessionSubject(req)
}

// TestOIDCFullFlow: a browser with no session is sent to the provider by
// /authorize, comes back signed in as the ID token's sub, consents, and
// the client's token acts for that sub.
func TestOIDCFullFlow(t *testing.T) {
	e, is := newOIDCEnv(t)
	id := e.publicClient()
	v := oauth2.GenerateVerifier()
	authURL := e.authURL(id, v)

	resp, _ := e.get(e.browser, authURL)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), is.URL+"/authorize?") {
		t.Fatalf("/authorize without a session: %d %s", resp.StatusCode, loc)
	}
	q := loc.Query()
	if q.Get("client_id") != oidcClientID || q.Get("redirect_uri") != e.ts.URL+"/signin/oidc/callback" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
		len(q.Get("state")) < 40 || !strings.Contains(q.Get("scope"), "openid") || !strings.Contains(q.Get("scope"), "email") {
		t.Fatalf("authorization request to the provider: %v", q)
	}
	if strings.Contains(loc.String(), oidcSecret) {
		t.Fatal("the client secret is in the browser's URL")
	}

	resp, body := e.browse(e.browser, authURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/authorize"`) || !strings.Contains(body, alice.Subject) ||
		!strings.Contains(body, alice.Email) {
		t.Fatalf("after signing in: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `action="/signout"`) || !strings.Contains(body, "Not you?") {
		t.Fatalf("the consent page has no sign-out form: %s", body)
	}
	if who, ok := e.subjectOf(e.browser); !ok || who != alice.Subject {
		t.Fatalf("session subject %q %v; want the sub, not the e-mail", who, ok)
	}
	at, _ := e.tokens(id, e.code(id, v), v)
	info, err := e.srv.Verify(t.Context(), at, nil)
	if err != nil || info.UserID != alice.Subject {
		t.Fatalf("token: %+v %v", info, err)
	}
	if is.Logins() != 1 {
		t.Fatalf("%d logins at the provider; want 1 (consent reused the session)", is.Logins())
	}
}

// TestOIDCRefusedTokens: ID tokens that are not for this flow, this client
// or from this issuer sign nobody in.
func TestOIDCRefusedTokens(t *testing.T) {
	for name, hook := range map[string]func(map[string]any){
		"wrong nonce":                  func(c map[string]any) { c["nonce"] = "another-flows-nonce" },
		"no nonce":                     func(c map[string]any) { delete(c, "nonce") },
		"wrong audience":               func(c map[string]any) { c["aud"] = "another-client" },
		"wrong issuer":                 func(c map[string]any) { c["iss"] = "http://127.0.0.1:1" },
		"expired":                      func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() },
		"no subject":                   func(c map[string]any) { delete(c, "sub") },
		"two audiences, no azp":        func(c map[string]any) { c["aud"] = []string{oidcClientID, "another-client"} },
		"two audiences, azp elsewhere": func(c map[string]any) { c["aud"] = []string{oidcClientID, "x"}; c["azp"] = "x" },
	} {
		t.Run(name, func(t *testing.T) {
			e, is := newOIDCEnv(t)
			is.SetIDTokenHook(hook)
			resp, body := e.browse(e.browser, e.srv.SigninURL(""))
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "could not verify who you are") {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if _, ok := e.subjectOf(e.browser); ok {
				t.Fatal("signed in")
			}
		})
	}
	// Still signed with the provider's key, as the refusals above are: with
	// no hook, the same flow signs in.
	e, _ := newOIDCEnv(t)
	if resp, body := e.browse(e.browser, e.srv.SigninURL("")); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("untampered: %d %s", resp.StatusCode, body)
	}
}

// TestOIDCWrongClientSecret: a provider that refuses the code exchange
// signs nobody in, and the secret shows nowhere on the page.
func TestOIDCWrongClientSecret(t *testing.T) {
	e, is := newOIDCEnv(t)
	is.AddClient(oidcClientID, "the-real-secret", e.srv.OIDCRedirectURL())
	resp, body := e.browse(e.browser, e.srv.SigninURL(""))
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, oidcSecret) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, ok := e.subjectOf(e.browser); ok {
		t.Fatal("signed in")
	}
}

// TestOIDCReplayedState: the provider's redirect back works once.
func TestOIDCReplayedState(t *testing.T) {
	e, _ := newOIDCEnv(t)
	cb := e.callbackURL(e.browser, e.srv.SigninURL(""))
	if resp, body := e.get(e.browser, cb); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("first: %d %s", resp.StatusCode, body)
	}
	other := newBrowser()
	for _, c := range []*http.Client{e.browser, other} {
		resp, body := e.get(c, cb)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already completed or has expired") {
			t.Fatalf("replay: %d %s", resp.StatusCode, body)
		}
	}
	if _, ok := e.subjectOf(other); ok {
		t.Fatal("the replay signed another browser in")
	}
}

// TestOIDCStateFromAnotherBrowser: an attacker's own sign-in, finished in
// the victim's browser, does not sign the victim in as the attacker.
func TestOIDCStateFromAnotherBrowser(t *testing.T) {
	e, is := newOIDCEnv(t)
	is.SetUser(jwttest.User{Subject: "sub-mallory", Email: "mallory@a.example", EmailVerified: true})
	attacker := newBrowser()
	cb := e.callbackURL(attacker, e.srv.SigninURL(""))
	resp, body := e.get(e.browser, cb)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "started in another browser") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, ok := e.subjectOf(e.browser); ok {
		t.Fatal("the victim's browser is signed in")
	}
	// A cookie of the right name with another value does no better.
	state, _ := url.Parse(cb)
	victim := newBrowser()
	u, _ := url.Parse(e.ts.URL + oidcStartPath)
	victim.Jar.SetCookies(u, []*http.Cookie{{Name: e.srv.flowCookieName(state.Query().Get("state")), Value: "guess", Path: oidcStartPath}})
	if resp, _ := e.get(victim, cb); resp.StatusCode == http.StatusOK {
		t.Fatal("a guessed flow cookie was accepted")
	}
}

// TestOIDCStateExpires: a flow lasts 10 minutes.
func TestOIDCStateExpires(t *testing.T) {
	e, _ := newOIDCEnv(t)
	cb := e.callbackURL(e.browser, e.srv.SigninURL(""))
	e.clock.Advance(11 * time.Minute)
	if resp, body := e.get(e.browser, cb); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// TestOIDCAdmission: who the allowed domains and people admit.
func TestOIDCAdmission(t *testing.T) {
	domains := func(d ...string) func(*OIDCConfig) { return func(c *OIDCConfig) { c.AllowedDomains = d } }
	people := func(p ...string) func(*OIDCConfig) { return func(c *OIDCConfig) { c.AllowedPeople = p } }
	for _, tc := range []struct {
		name   string
		config func(*OIDCConfig)
		user   jwttest.User
		admit  bool
	}{
		{"no lists: anyone", func(*OIDCConfig) {}, jwttest.User{Subject: "s1"}, true},
		{"domain", domains("a.example"), jwttest.User{Subject: "s1", Email: "x@a.example", EmailVerified: true}, true},
		{"domain, any case", domains("@A.Example"), jwttest.User{Subject: "s1", Email: "X@A.EXAMPLE", EmailVerified: true}, true},
		{"domain, unverified e-mail", domains("a.example"), jwttest.User{Subject: "s1", Email: "x@a.example"}, false},
		{"domain not allowed", domains("a.example"), jwttest.User{Subject: "s1", Email: "x@b.example", EmailVerified: true}, false},
		{"subdomain not allowed", domains("a.example"), jwttest.User{Subject: "s1", Email: "x@sub.a.example", EmailVerified: true}, false},
		{"domain only in the local part", domains("a.example"), jwttest.User{Subject: "s1", Email: `"x@a.example"@b.example`, EmailVerified: true}, false},
		{"domain, no e-mail", domains("a.example"), jwttest.User{Subject: "s1"}, false},
		{"person by e-mail", people("x@a.example"), jwttest.User{Subject: "s1", Email: "x@a.example", EmailVerified: true}, true},
		{"person by e-mail, unverified", people("x@a.example"), jwttest.User{Subject: "s1", Email: "x@a.example"}, false},
		{"person not in the list", people("x@a.example"), jwttest.User{Subject: "s1", Email: "y@a.example", EmailVerified: true}, false},
		{"person by subject", people("x@a.example", "s1"), jwttest.User{Subject: "s1"}, true},
		{"e-mail equal to a listed subject", people("s1"), jwttest.User{Subject: "s2", Email: "s1", EmailVerified: true}, false},
		{"domain or person", func(c *OIDCConfig) { domains("a.example")(c); people("z@c.example")(c) },
			jwttest.User{Subject: "s1", Email: "z@c.example", EmailVerified: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, is := newOIDCEnv(t, tc.config)
			is.SetUser(tc.user)
			resp, body := e.browse(e.browser, e.srv.SigninURL(""))
			who, signedIn := e.subjectOf(e.browser)
			if tc.admit {
				if resp.StatusCode != http.StatusOK || !signedIn || who != tc.user.Subject {
					t.Fatalf("not admitted: %d %q %s", resp.StatusCode, who, body)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden || signedIn || e.sessionCookie(e.browser) != nil {
				t.Fatalf("admitted: %d %q", resp.StatusCode, who)
			}
			if !strings.Contains(body, "does not admit") || !strings.Contains(body, tc.user.Subject) ||
				(tc.user.Email != "" && !strings.Contains(body, strings.ReplaceAll(tc.user.Email, `"`, "&#34;"))) {
				t.Fatalf("the refusal does not say who signed in: %s", body)
			}
			if tc.user.Email != "" && !tc.user.EmailVerified && !strings.Contains(body, "not verified") {
				t.Fatalf("the refusal does not say the address is unverified: %s", body)
			}
		})
	}
}

// TestOIDCProviderRefuses: an error from the provider signs nobody in.
func TestOIDCProviderRefuses(t *testing.T) {
	e, is := newOIDCEnv(t)
	is.SetUser(jwttest.User{}) // the provider answers access_denied
	resp, body := e.browse(e.browser, e.srv.SigninURL(""))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "access_denied") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, ok := e.subjectOf(e.browser); ok {
		t.Fatal("signed in")
	}
}

// TestOIDCNoSigninLinks: in OIDC mode no sign-in link is minted, and one
// minted before (in owner mode) is refused without being spent.
func TestOIDCNoSigninLinks(t *testing.T) {
	e, _ := newOIDCEnv(t)
	if _, err := e.srv.SigninLink(t.Context()); !errors.Is(err, ErrOIDCMode) {
		t.Fatalf("SigninLink: %v", err)
	}
	now := e.clock.Now()
	err := e.store.(authStore).PutLink(t.Context(), store.Link{TokenHash: hash("old-link"), Subject: "owner",
		CreatedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.get(e.browser, e.ts.URL+"/signin?link=old-link"); resp.StatusCode != http.StatusForbidden || e.sessionCookie(e.browser) != nil {
		t.Fatalf("an old link: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/signin", strings.NewReader("link=old-link"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := e.do(e.browser, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a pasted link: %d", resp.StatusCode)
	}
	if _, err := e.store.(authStore).TakeLink(t.Context(), hash("old-link"), now); err != nil {
		t.Fatalf("the refused link was spent: %v", err)
	}
	// /signin itself leads to the OIDC start, keeping where to return.
	resp, _ := e.get(e.browser, e.ts.URL+"/signin?next="+url.QueryEscape("/authorize?a=b"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != e.srv.SigninURL("/authorize?a=b") {
		t.Fatalf("/signin: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestOIDCReturnsToConnect: sign-in started for a Connect link returns to
// it, and the link is not stored readable while the flow waits.
func TestOIDCReturnsToConnect(t *testing.T) {
	e, _ := newOIDCEnv(t)
	const next = "/connect/github?link=the-connect-link-token"
	start := e.srv.SigninURL(next)
	if start != e.ts.URL+"/signin/oidc?next="+url.QueryEscape(next) {
		t.Fatalf("SigninURL = %s", start)
	}
	cb := e.callbackURL(e.browser, start)
	resp, body := e.get(e.browser, cb)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != next {
		t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}

	// The flow row: the return address only sealed.
	resp, _ = e.get(newBrowser(), start)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	st, err := e.store.TakeConnectState(t.Context(), hash(loc.Query().Get("state")), e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Provider != signinFlowProvider || len(st.Scopes) != 1 || strings.Contains(st.Scopes[0], "the-connect-link-token") ||
		st.Subject != "" || st.Verifier == "" {
		t.Fatalf("flow row %+v", st)
	}
}

// TestSigninRoutesOnly: the sign-in routes alone, as alterhost serves them
// beside an external issuer, sign people in and serve nothing of the
// authorization server.
func TestSigninRoutesOnly(t *testing.T) {
	is := jwttest.New(t)
	r := chi.NewRouter()
	e := &env{t: t, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, store: testStore(t), router: r}
	e.ts = httptest.NewServer(r)
	t.Cleanup(e.ts.Close)
	issuer, _ := url.Parse(e.ts.URL)
	srv, err := New(Options{Store: e.store, Issuer: issuer, Now: e.clock.Now,
		OIDC: &OIDCConfig{Issuer: is.URL, ClientID: oidcClientID, ClientSecret: oidcSecret}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	srv.SigninRoutes(r)
	e.browser = newBrowser()
	is.AddClient(oidcClientID, oidcSecret, srv.OIDCRedirectURL())
	is.SetUser(alice)
	if err := srv.DiscoverOIDC(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/authorize", "/token", "/register", "/revoke", "/.well-known/oauth-authorization-server",
		"/.well-known/oauth-protected-resource"} {
		if resp, _ := e.get(http.DefaultClient, e.ts.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	resp, body := e.browse(e.browser, srv.SigninURL(""))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if who, ok := e.subjectOf(e.browser); !ok || who != alice.Subject {
		t.Fatalf("subject %q %v", who, ok)
	}
}

func TestDiscoverOIDCFails(t *testing.T) {
	issuer, _ := url.Parse("http://127.0.0.1:8080")
	srv, err := New(Options{Store: testStore(t), Issuer: issuer,
		OIDC: &OIDCConfig{Issuer: "http://127.0.0.1:1", ClientID: "x", HTTPClient: &http.Client{Timeout: 2 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DiscoverOIDC(context.Background()); err == nil {
		t.Fatal("an unreachable provider was discovered")
	}
}

func TestNewRejectsOIDC(t *testing.T) {
	st := testStore(t)
	issuer, _ := url.Parse("https://alterhost.example")
	good := OIDCConfig{Issuer: "https://id.example", ClientID: "c"}
	for name, edit := range map[string]func(*OIDCConfig){
		"http issuer":       func(c *OIDCConfig) { c.Issuer = "http://id.example" },
		"relative issuer":   func(c *OIDCConfig) { c.Issuer = "/id" },
		"issuer with query": func(c *OIDCConfig) { c.Issuer = "https://id.example/?a=b" },
		"no client id":      func(c *OIDCConfig) { c.ClientID = "" },
		"bad scope":         func(c *OIDCConfig) { c.Scopes = []string{"a b"} },
		"bad domain":        func(c *OIDCConfig) { c.AllowedDomains = []string{"x@a.example"} },
		"empty domain":      func(c *OIDCConfig) { c.AllowedDomains = []string{" "} },
		"bad person":        func(c *OIDCConfig) { c.AllowedPeople = []string{"two words"} },
	} {
		c := good
		edit(&c)
		if _, err := New(Options{Store: st, Issuer: issuer, OIDC: &c}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Options{Store: st, Issuer: issuer, OIDC: &good}); err != nil {
		t.Errorf("good config without an owner: %v", err)
	}
}

func TestOIDCConfigHidesSecret(t *testing.T) {
	c := OIDCConfig{Issuer: "https://id.example", ClientID: "c", ClientSecret: "hunter2-secret"}
	for _, s := range []string{c.String(), errors.New("x " + c.String()).Error()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("secret shown: %s", s)
		}
	}
}

// TestOIDCCookies: on https the flow cookie is __Secure- and Secure.
func TestOIDCCookies(t *testing.T) {
	is := jwttest.New(t)
	issuer, _ := url.Parse("https://alterhost.example")
	srv, err := New(Options{Store: testStore(t), Issuer: issuer,
		OIDC: &OIDCConfig{Issuer: is.URL, ClientID: oidcClientID}})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	srv.SigninRoutes(r)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://alterhost.example/signin/oidc", nil))
	cs := w.Result().Cookies()
	if w.Code != http.StatusFound || len(cs) != 1 || !strings.HasPrefix(cs[0].Name, "__Secure-alterhost_signin_") ||
		!cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteLaxMode || cs[0].Path != "/signin/oidc" {
		t.Fatalf("%d %+v", w.Code, cs)
	}
}
