package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/vault"
)

const (
	base     = "http://127.0.0.1:8080"
	callback = base + "/connect/callback"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	t     *testing.T
	sb    *Sandbox
	p     *provider.Provider
	clock *clock
	api   *http.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	sb := New(Options{BaseURL: base + "/", AccessTokenTTL: 30 * time.Second, Now: c.Now,
		RedirectURIs: []string{"https://alterhost.example/connect/callback"}})
	p, err := sb.Provider()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, sb: sb, p: p, clock: c, api: &http.Client{Transport: sb.Transport()}}
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// consent GETs the consent page for authURL, then POSTs the decision the
// way the page's form would, and returns the redirect's URL.
func (f *fixture) consent(authURL, decision string) *url.URL {
	f.t.Helper()
	page := f.browse(httptest.NewRequest(http.MethodGet, authURL, nil))
	if page.Code != http.StatusOK {
		f.t.Fatalf("consent page: %d %s", page.Code, page.Body)
	}
	form := url.Values{"decision": {decision}}
	for _, m := range hiddenRE.FindAllStringSubmatch(page.Body.String(), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	req := httptest.NewRequest(http.MethodPost, base+"/sandbox/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res := f.browse(req)
	if res.Code != http.StatusSeeOther {
		f.t.Fatalf("decision %s: %d %s", decision, res.Code, res.Body)
	}
	u, err := url.Parse(res.Header().Get("Location"))
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

func (f *fixture) browse(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.sb.BrowserHandler().ServeHTTP(rec, req)
	return rec
}

// connect runs the whole flow for scopes and returns the token.
func (f *fixture) connect(scopes ...string) vault.Token {
	f.t.Helper()
	verifier := oauth2.GenerateVerifier()
	authURL := f.p.AuthCodeURL("state-1", oauth2.S256ChallengeFromVerifier(verifier), callback, scopes)
	back := f.consent(authURL, "approve")
	if got := back.Scheme + "://" + back.Host + back.Path; got != callback || back.Query().Get("state") != "state-1" {
		f.t.Fatalf("redirected to %s", back)
	}
	tok, err := f.p.Exchange(context.Background(), back.Query().Get("code"), verifier, callback)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// call makes an API request to the sandbox through its transport.
func (f *fixture) call(method, path, token, body string) (*http.Response, map[string]any) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "https://"+Host+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.api.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

func TestFullFlow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	// The default scope (read) is asked for even with none given.
	if tok := f.connect(); !slices.Equal(tok.Scopes, []string{"read"}) {
		t.Fatalf("default consent granted %v; want read", tok.Scopes)
	}
	tok := f.connect(ScopeWrite)
	if !slices.Equal(tok.Scopes, []string{"read", "write"}) || tok.RefreshToken == "" ||
		time.Until(tok.Expiry) > 31*time.Second {
		t.Fatalf("token = %+v", tok)
	}

	_, who := f.call("GET", "/api/whoami", "", "")
	if who["authenticated"] != false || who["token_seen"] != false || who["account"] != "" {
		t.Errorf("whoami without token = %v", who)
	}
	_, who = f.call("GET", "/api/whoami", tok.AccessToken, "")
	if who["authenticated"] != true || who["token_seen"] != true || who["account"] != Account ||
		len(who["scopes"].([]any)) != 2 {
		t.Errorf("whoami with token = %v", who)
	}
	if !f.sb.TokenSeen(tok.AccessToken) || !slices.Contains(f.sb.SeenTokens(), tok.AccessToken) {
		t.Error("the token is not in SeenTokens")
	}

	resp, out := f.call("POST", "/api/notes", tok.AccessToken, `{"text": "buy milk"}`)
	if resp.StatusCode != http.StatusCreated || out["note"].(map[string]any)["text"] != "buy milk" {
		t.Errorf("add note: %d %v", resp.StatusCode, out)
	}
	resp, out = f.call("GET", "/api/notes", tok.AccessToken, "")
	if resp.StatusCode != http.StatusOK || len(out["notes"].([]any)) != 1 {
		t.Errorf("list notes: %d %v", resp.StatusCode, out)
	}

	// Refresh rotates the refresh token.
	tok2, err := f.p.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken || tok2.AccessToken == tok.AccessToken ||
		f.sb.RefreshCount() != 1 || f.sb.IssuedTokens() != 3 {
		t.Errorf("refreshed = %+v, count %d", tok2, f.sb.RefreshCount())
	}

	// The access token expires.
	f.clock.Advance(31 * time.Second)
	resp, _ = f.call("GET", "/api/notes", tok2.AccessToken, "")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("expired token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	_, who = f.call("GET", "/api/whoami", tok2.AccessToken, "")
	if who["authenticated"] != false || who["token_seen"] != true {
		t.Errorf("whoami with an expired token = %v", who)
	}

	tok3, err := f.p.Refresh(ctx, tok2.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// Revoking the grant kills its refresh and access tokens.
	if err := f.p.RevokeGrant(ctx, tok3); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Refresh(ctx, tok3.RefreshToken); !errors.Is(err, vault.ErrInvalidGrant) {
		t.Errorf("refresh after revoke: %v", err)
	}
	if resp, _ := f.call("GET", "/api/notes", tok3.AccessToken, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("access token after revoke: %d", resp.StatusCode)
	}
}

// TestRefreshTokenReuse: presenting a rotated-out refresh token is
// invalid_grant, and it revokes the grant, new tokens included.
func TestRefreshTokenReuse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok := f.connect("read")
	tok2, err := f.p.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.p.Refresh(ctx, tok.RefreshToken)
	if !errors.Is(err, vault.ErrInvalidGrant) {
		t.Fatalf("reused refresh token: %v", err)
	}
	if _, err := f.p.Refresh(ctx, tok2.RefreshToken); !errors.Is(err, vault.ErrInvalidGrant) {
		t.Errorf("the rotated token survived reuse of its predecessor: %v", err)
	}
	if _, who := f.call("GET", "/api/whoami", tok2.AccessToken, ""); who["authenticated"] != false {
		t.Errorf("access token survived reuse detection: %v", who)
	}
}

func TestScopes(t *testing.T) {
	f := newFixture(t)
	// A provider without default scopes, to ask for read alone.
	cfg := f.sb.Config()
	cfg.Scopes = nil
	p, err := provider.New(cfg, provider.WithClientSecret(f.sb.opts.ClientSecret),
		provider.WithHTTPClient(&http.Client{Transport: f.sb.Transport()}))
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	tok := f.connect("read")
	if !slices.Equal(tok.Scopes, []string{"read"}) {
		t.Errorf("scopes = %q", tok.Scopes)
	}
	resp, _ := f.call("POST", "/api/notes", tok.AccessToken, `{"text": "x"}`)
	if resp.StatusCode != http.StatusForbidden ||
		resp.Header.Get("WWW-Authenticate") != `Bearer realm="sandbox", error="insufficient_scope", scope="write"` {
		t.Errorf("write with read scope: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ := f.call("GET", "/api/notes", tok.AccessToken, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("read with read scope: %d", resp.StatusCode)
	}
	if resp, _ := f.call("GET", "/api/notes", "", ""); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("no token: %d", resp.StatusCode)
	}

	// Unknown scopes go back to the client as invalid_scope.
	back := f.redirectOf(f.p.AuthCodeURL("s", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()), callback, []string{"admin"}))
	if back.Query().Get("error") != "invalid_scope" || back.Query().Get("state") != "s" {
		t.Errorf("unknown scope: %s", back)
	}
}

// redirectOf GETs authURL and returns where it redirects to.
func (f *fixture) redirectOf(authURL string) *url.URL {
	f.t.Helper()
	res := f.browse(httptest.NewRequest(http.MethodGet, authURL, nil))
	if res.Code != http.StatusSeeOther {
		f.t.Fatalf("GET %s: %d, want a redirect", authURL, res.Code)
	}
	u, _ := url.Parse(res.Header().Get("Location"))
	return u
}

func TestPKCE(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	challenge := oauth2.S256ChallengeFromVerifier(verifier)

	// A wrong verifier is invalid_grant, and the code is spent.
	back := f.consent(f.p.AuthCodeURL("s", challenge, callback, nil), "approve")
	code := back.Query().Get("code")
	if _, err := f.p.Exchange(ctx, code, oauth2.GenerateVerifier(), callback); !isCode(err, "invalid_grant") {
		t.Errorf("wrong verifier: %v", err)
	}
	if _, err := f.p.Exchange(ctx, code, verifier, callback); !isCode(err, "invalid_grant") {
		t.Errorf("code reused after a failed exchange: %v", err)
	}

	// No challenge, or the plain method, is refused at the authorize step.
	authURL, _ := url.Parse(f.p.AuthCodeURL("s", challenge, callback, nil))
	for name, mutate := range map[string]func(url.Values){
		"none":  func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") },
		"plain": func(q url.Values) { q.Set("code_challenge_method", "plain") },
		"short": func(q url.Values) { q.Set("code_challenge", "abc") },
	} {
		q := authURL.Query()
		mutate(q)
		u := *authURL
		u.RawQuery = q.Encode()
		if back := f.redirectOf(u.String()); back.Query().Get("error") != "invalid_request" {
			t.Errorf("%s: redirected to %s", name, back)
		}
	}
}

func isCode(err error, code string) bool {
	var te *provider.TokenError
	return errors.As(err, &te) && te.Code == code
}

// TestReplayedCode: a code works once; replaying it revokes what the first
// exchange got.
func TestReplayedCode(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	back := f.consent(f.p.AuthCodeURL("s", oauth2.S256ChallengeFromVerifier(verifier), callback, nil), "approve")
	code := back.Query().Get("code")
	tok, err := f.p.Exchange(ctx, code, verifier, callback)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Exchange(ctx, code, verifier, callback); !isCode(err, "invalid_grant") {
		t.Errorf("replayed code: %v", err)
	}
	if _, who := f.call("GET", "/api/whoami", tok.AccessToken, ""); who["authenticated"] != false {
		t.Error("the first exchange's token survived the replay")
	}
}

func TestCodeExpires(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	back := f.consent(f.p.AuthCodeURL("s", oauth2.S256ChallengeFromVerifier(verifier), callback, nil), "approve")
	f.clock.Advance(CodeLifetime + time.Second)
	if _, err := f.p.Exchange(context.Background(), back.Query().Get("code"), verifier, callback); !isCode(err, "invalid_grant") {
		t.Errorf("expired code: %v", err)
	}
}

func TestRedirectURI(t *testing.T) {
	f := newFixture(t)
	ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	// Unregistered redirect URIs get an error page, never a redirect.
	for _, bad := range []string{"https://evil.example/cb", "http://192.168.1.10/cb", "http://127.0.0.1/cb#frag", ""} {
		res := f.browse(httptest.NewRequest(http.MethodGet, f.p.AuthCodeURL("s", ch, bad, nil), nil))
		if res.Code != http.StatusBadRequest || res.Header().Get("Location") != "" || !strings.Contains(res.Body.String(), "redirect_uri") {
			t.Errorf("redirect_uri %q: %d %s", bad, res.Code, res.Header().Get("Location"))
		}
	}
	// Registered ones and any loopback http URL are fine.
	for _, good := range []string{"https://alterhost.example/connect/callback", "http://localhost:5555/x", "http://[::1]:9/cb"} {
		res := f.browse(httptest.NewRequest(http.MethodGet, f.p.AuthCodeURL("s", ch, good, nil), nil))
		if res.Code != http.StatusOK {
			t.Errorf("redirect_uri %q: %d %s", good, res.Code, res.Body)
		}
	}
	// The code is bound to its redirect URI.
	verifier := oauth2.GenerateVerifier()
	back := f.consent(f.p.AuthCodeURL("s", oauth2.S256ChallengeFromVerifier(verifier), callback, nil), "approve")
	if _, err := f.p.Exchange(context.Background(), back.Query().Get("code"), verifier, "http://127.0.0.1:8080/other"); !isCode(err, "invalid_grant") {
		t.Errorf("exchange with another redirect_uri: %v", err)
	}
}

func TestDenyAndBadClient(t *testing.T) {
	f := newFixture(t)
	ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	back := f.consent(f.p.AuthCodeURL("st", ch, callback, nil), "deny")
	if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "st" || back.Query().Has("code") {
		t.Errorf("deny: %s", back)
	}
	u, _ := url.Parse(f.p.AuthCodeURL("st", ch, callback, nil))
	q := u.Query()
	q.Set("client_id", "someone-else")
	u.RawQuery = q.Encode()
	if res := f.browse(httptest.NewRequest(http.MethodGet, u.String(), nil)); res.Code != http.StatusBadRequest {
		t.Errorf("unknown client: %d", res.Code)
	}

	// The token endpoint wants the client's secret.
	other := f.sb.Config()
	p, _ := provider.New(other, provider.WithClientSecret("wrong"), provider.WithHTTPClient(&http.Client{Transport: f.sb.Transport()}))
	if _, err := p.Refresh(context.Background(), "x"); !isCode(err, "invalid_client") {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestCrossOriginPostRefused(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodPost, base+"/sandbox/authorize", strings.NewReader("decision=approve"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if res := f.browse(req); res.Code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d", res.Code)
	}
}

func TestHTMLEscaping(t *testing.T) {
	f := newFixture(t)
	f.sb.opts.ClientName = `<b>evil</b>`
	evil := `"><script>alert(1)</script>`
	page := f.browse(httptest.NewRequest(http.MethodGet,
		f.p.AuthCodeURL(evil, oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()), callback, nil), nil))
	body := page.Body.String()
	if page.Code != http.StatusOK || strings.Contains(body, "<script>") || strings.Contains(body, "<b>evil") ||
		!strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("page not escaped:\n%s", body)
	}
	if csp := page.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	// The state survives the round trip intact.
	back := f.consent(f.p.AuthCodeURL(evil, oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()), callback, nil), "approve")
	if back.Query().Get("state") != evil {
		t.Errorf("state = %q", back.Query().Get("state"))
	}
}

func TestTransportRouting(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from upstream")
	}))
	defer upstream.Close()
	sb := New(Options{})
	c := &http.Client{Transport: sb.Wrap(http.DefaultTransport)}
	resp, err := c.Get(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "from upstream" {
		t.Errorf("fallback answered %q", b)
	}
	// Plain http to the virtual host is served in-process too.
	resp, err = c.Get("http://" + Host + "/api/whoami")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("http://%s: %v", Host, err)
	}
	resp.Body.Close()
	// Without a fallback other hosts fail.
	if _, err := (&http.Client{Transport: sb.Transport()}).Get(upstream.URL); err == nil {
		t.Error("Transport without fallback reached another host")
	}
	// A canceled request does not run the handler.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+Host+"/api/whoami", nil)
	if _, err := c.Do(req); err == nil {
		t.Error("canceled request succeeded")
	}
	// Unknown paths and methods are plain HTTP errors.
	resp, _ = c.Get("https://" + Host + "/nope")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
}

func TestProviderConfig(t *testing.T) {
	sb := New(Options{BaseURL: "http://localhost:9000"})
	cfg := sb.Config()
	if cfg.Name != "sandbox" || cfg.AuthURL != "http://localhost:9000/sandbox/authorize" ||
		cfg.TokenURL != "https://sandbox.alterhost.test/oauth/token" || !cfg.PKCE ||
		!slices.Equal(cfg.APIHosts, []abi.HostPattern{"sandbox.alterhost.test"}) {
		t.Errorf("config = %+v", cfg)
	}
	if _, err := New(Options{BaseURL: "http://192.168.0.9:8080"}).Provider(); err == nil {
		t.Error("plain http BaseURL off loopback accepted")
	}
	r := provider.NewRegistry()
	p, _ := sb.Provider()
	r.Add(p)
	if got, ok := r.Provider("sandbox"); !ok || got.APIHosts()[0] != Host {
		t.Errorf("registry: %v %v", got, ok)
	}
}

func TestConcurrentUse(t *testing.T) {
	f := newFixture(t)
	tok := f.connect(ScopeWrite)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				f.call("POST", "/api/notes", tok.AccessToken, `{"text": "n"}`)
			} else {
				f.call("GET", "/api/whoami", tok.AccessToken, "")
			}
		}()
	}
	wg.Wait()
	if n := len(f.sb.Notes()); n != 10 {
		t.Errorf("%d notes, want 10", n)
	}
}

// TestRawTokenRequests covers what the provider package never sends: a
// refresh that narrows scopes, a bad scope, client_secret_post and a
// revocation without a token.
func TestRawTokenRequests(t *testing.T) {
	f := newFixture(t)
	tok := f.connect()
	post := func(path string, form url.Values) (int, map[string]any) {
		form.Set("client_id", f.sb.opts.ClientID)
		form.Set("client_secret", f.sb.opts.ClientSecret)
		resp, err := f.api.PostForm("https://"+Host+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "scope": {"read"}})
	if code != http.StatusOK || out["scope"] != "read" {
		t.Errorf("narrowing refresh: %d %v", code, out)
	}
	code, out = post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)}, "scope": {"admin"}})
	if code != http.StatusBadRequest || out["error"] != "invalid_scope" {
		t.Errorf("widening refresh: %d %v", code, out)
	}
	if code, out = post("/oauth/token", url.Values{"grant_type": {"password"}}); out["error"] != "unsupported_grant_type" {
		t.Errorf("password grant: %d %v", code, out)
	}
	if code, out = post("/oauth/revoke", url.Values{}); code != http.StatusBadRequest || out["error"] != "invalid_request" {
		t.Errorf("revoke without token: %d %v", code, out)
	}
	if code, _ = post("/oauth/revoke", url.Values{"token": {"unknown"}}); code != http.StatusOK {
		t.Errorf("revoke of an unknown token: %d", code)
	}
}
