package server

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/vault/store"
)

const (
	owner    = "owner@example"
	redirect = "http://127.0.0.1:5555/callback"
)

// clock is a settable Options.Now. It starts at the wall clock, to the
// second: the go-sdk's bearer middleware checks expiry against time.Now,
// and the store keeps times to the microsecond.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a server behind httptest, a browser with a cookie jar that does
// not follow redirects, and the store.
type env struct {
	t       *testing.T
	srv     *Server
	ts      *httptest.Server
	clock   *clock
	store   store.Store
	browser *http.Client
	router  chi.Router
}

func newEnv(t *testing.T, configure ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, store: testStore(t)}
	r := chi.NewRouter()
	e.router = r
	e.ts = httptest.NewServer(r)
	t.Cleanup(e.ts.Close)
	issuer, _ := url.Parse(e.ts.URL)
	opts := Options{Store: e.store, Issuer: issuer, Owner: owner, Now: e.clock.Now}
	for _, c := range configure {
		c(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	srv.Routes(r)
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func (e *env) resource() string { return e.ts.URL + "/mcp" }

// do sends req and returns the response with its body read.
func (e *env) do(c *http.Client, req *http.Request) (*http.Response, string) {
	e.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) get(c *http.Client, u string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return e.do(c, req)
}

// postJSON posts a JSON body and decodes a JSON answer.
func (e *env) postJSON(path string, body []byte) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, b := e.do(http.DefaultClient, req)
	var m map[string]any
	json.Unmarshal([]byte(b), &m)
	return resp.StatusCode, m
}

// postForm posts a form, with Basic credentials if user is not empty.
func (e *env) postForm(path string, form url.Values, user, pass string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, b := e.do(http.DefaultClient, req)
	if resp.Header.Get("Cache-Control") != "no-store" && path == "/token" {
		e.t.Errorf("token endpoint answered without Cache-Control: no-store")
	}
	var m map[string]any
	json.Unmarshal([]byte(b), &m)
	return resp.StatusCode, m
}

// register registers a client with meta and returns the answer.
func (e *env) register(meta map[string]any) (int, map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(meta)
	return e.postJSON("/register", b)
}

// publicClient registers a public client with redirect URIs uris
// (default: redirect) and returns its id.
func (e *env) publicClient(uris ...string) string {
	e.t.Helper()
	if len(uris) == 0 {
		uris = []string{redirect}
	}
	status, m := e.register(map[string]any{"redirect_uris": uris, "client_name": "Test Client",
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"}})
	if status != http.StatusCreated {
		e.e(status, m)
	}
	return m["client_id"].(string)
}

func (e *env) e(status int, m map[string]any) {
	e.t.Helper()
	e.t.Fatalf("status %d: %v", status, m)
}

// useLink opens a sign-in link in c, which shows a button, and presses
// it: it posts the page's form and returns the answer.
func (e *env) useLink(c *http.Client, link string) (*http.Response, string) {
	e.t.Helper()
	resp, body := e.get(c, link)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/signin"`) {
		return resp, body // an error page: the caller checks it
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(c, req)
}

// signIn signs the browser in with a fresh sign-in link.
func (e *env) signIn() {
	e.t.Helper()
	link, err := e.srv.SigninLink(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	resp, body := e.useLink(e.browser, link)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in") {
		e.t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
}

// authURL is an authorization request for clientID with PKCE verifier.
func (e *env) authURL(clientID, verifier string, extra ...oauth2.AuthCodeOption) string {
	cfg := e.config(clientID, redirect)
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("resource", e.resource())}, extra...)
	return cfg.AuthCodeURL("state-123", opts...)
}

func (e *env) config(clientID, redirectURL string) *oauth2.Config {
	return &oauth2.Config{ClientID: clientID, RedirectURL: redirectURL, Scopes: []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: e.ts.URL + "/authorize", TokenURL: e.ts.URL + "/token",
			AuthStyle: oauth2.AuthStyleInParams}}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// consentForm opens authURL in the signed-in browser and returns the
// consent form's fields.
func (e *env) consentForm(authURL string) url.Values {
	e.t.Helper()
	resp, body := e.get(e.browser, authURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/authorize"`) {
		e.t.Fatalf("consent page: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	return form
}

// submit posts the consent form and returns the response.
func (e *env) submit(form url.Values) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(e.browser, req)
}

// approve runs consent for authURL and returns the redirect's query.
func (e *env) approve(authURL string) url.Values {
	e.t.Helper()
	form := e.consentForm(authURL)
	form.Set("decision", "approve")
	resp, body := e.submit(form)
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("approve: %d %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	return loc.Query()
}

// code signs in and returns a code for clientID with verifier.
func (e *env) code(clientID, verifier string) string {
	e.t.Helper()
	q := e.approve(e.authURL(clientID, verifier))
	if q.Get("code") == "" {
		e.t.Fatalf("no code: %v", q)
	}
	return q.Get("code")
}

// exchange redeems code at the token endpoint with a raw form.
func (e *env) exchange(clientID, code, verifier string, extra url.Values) (int, map[string]any) {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {redirect}, "resource": {e.resource()}}
	for k, v := range extra {
		form[k] = v
	}
	return e.postForm("/token", form, "", "")
}

// tokens redeems code and fails the test unless it gets tokens.
func (e *env) tokens(clientID, code, verifier string) (access, refresh string) {
	e.t.Helper()
	status, m := e.exchange(clientID, code, verifier, nil)
	if status != http.StatusOK {
		e.e(status, m)
	}
	return m["access_token"].(string), m["refresh_token"].(string)
}

// refresh posts a refresh grant.
func (e *env) refresh(clientID, rt string, extra url.Values) (int, map[string]any) {
	e.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	return e.postForm("/token", form, "", "")
}

// valid reports whether Verify accepts an access token.
func (e *env) valid(at string) bool {
	_, err := e.srv.Verify(context.Background(), at, nil)
	return err == nil
}

// noRedirect fails unless resp is an error page: a 4xx HTML answer with
// no Location header.
func noRedirect(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Fatalf("redirected to %s", loc)
	}
	if resp.StatusCode < 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("want an error page, got %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// redirectError returns the error of an error redirect to redirect,
// checking state and iss came along.
func (e *env) redirectError(resp *http.Response) string {
	e.t.Helper()
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("want a redirect, got %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), redirect+"?") {
		e.t.Fatalf("redirect to %s", resp.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("code") != "" {
		e.t.Fatalf("an error redirect carries a code: %v", q)
	}
	if q.Get("state") != "state-123" || q.Get("iss") != e.ts.URL {
		e.t.Fatalf("state or iss missing: %v", q)
	}
	return q.Get("error")
}
