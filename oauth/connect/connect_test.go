package connect_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/oauth/connect"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store"
)

const (
	clientID     = "client-1"
	clientSecret = "client-secret-never-shown"
	subjectHdr   = "X-Test-Subject"
)

// upstream is a fake OAuth provider on 127.0.0.1: an authorization
// endpoint that consents at once and redirects back with a code (or with
// error=access_denied when deny is set), a token endpoint that checks the
// client, the redirect URI and PKCE, and a revocation endpoint.
type upstream struct {
	*httptest.Server
	t *testing.T

	deny         atomic.Bool
	failExchange atomic.Bool // answer invalid_grant, echoing the code and verifier
	// onExchange, if set, runs in the token endpoint before it answers a
	// code exchange.
	onExchange func(r *http.Request)
	// revokeFail makes the revocation endpoint answer 500, repeating the
	// token; revokeHold, if set, holds each revocation until it closes or
	// the client goes away.
	revokeFail atomic.Bool
	revokeHold chan struct{}

	mu        sync.Mutex
	scope     string            // scope reported in token answers; "" reports none
	codes     map[string]issued // live codes
	states    []string          // states seen at the authorization endpoint
	scopes    []string          // and the scope asked for there
	allCodes  []string
	verifiers []string // code verifiers received
	tokens    []string // access and refresh tokens issued
	exchanges int
	revoked   []string
	echoed    []string // secrets repeated in an error_description
}

type issued struct{ challenge, redirect string }

func newUpstream(t *testing.T) *upstream {
	u := &upstream{t: t, codes: map[string]issued{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", u.authorize)
	mux.HandleFunc("POST /token", u.token)
	mux.HandleFunc("POST /revoke", u.revoke)
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != clientID || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" ||
		redirect.Hostname() != "127.0.0.1" {
		u.t.Errorf("authorize: bad request %s", r.URL.RawQuery)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	back := url.Values{"state": {q.Get("state")}}
	u.mu.Lock()
	u.states = append(u.states, q.Get("state"))
	u.scopes = append(u.scopes, q.Get("scope"))
	if u.deny.Load() {
		back.Set("error", "access_denied")
	} else {
		code := "code-" + rand.Text()
		u.codes[code] = issued{challenge: q.Get("code_challenge"), redirect: redirect.String()}
		u.allCodes = append(u.allCodes, code)
		back.Set("code", code)
	}
	u.mu.Unlock()
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (u *upstream) clientOK(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	return ok && id == clientID && secret == clientSecret
}

func oauthError(w http.ResponseWriter, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

func (u *upstream) token(w http.ResponseWriter, r *http.Request) {
	if r.ParseForm() != nil || !u.clientOK(r) || r.PostForm.Get("grant_type") != "authorization_code" {
		u.t.Errorf("token: bad request %v", r.PostForm)
		oauthError(w, "invalid_request", "")
		return
	}
	code, verifier := r.PostForm.Get("code"), r.PostForm.Get("code_verifier")
	u.mu.Lock()
	u.exchanges++
	u.verifiers = append(u.verifiers, verifier)
	is, ok := u.codes[code]
	delete(u.codes, code) // single use
	u.mu.Unlock()
	if u.onExchange != nil {
		u.onExchange(r)
	}
	if !ok || r.PostForm.Get("redirect_uri") != is.redirect || oauth2.S256ChallengeFromVerifier(verifier) != is.challenge {
		u.t.Errorf("token: code, redirect_uri or PKCE verifier do not match")
		oauthError(w, "invalid_grant", "")
		return
	}
	if u.failExchange.Load() {
		// A careless provider that repeats what it was sent.
		u.mu.Lock()
		u.echoed = append(u.echoed, code, verifier)
		u.mu.Unlock()
		oauthError(w, "invalid_grant", "code "+code+" with verifier "+verifier+" was refused")
		return
	}
	u.mu.Lock()
	n := len(u.tokens)/2 + 1
	at, rt := fmt.Sprintf("at-%d-%s", n, rand.Text()), fmt.Sprintf("rt-%d-%s", n, rand.Text())
	u.tokens = append(u.tokens, at, rt)
	answer := map[string]any{"access_token": at, "refresh_token": rt, "token_type": "Bearer", "expires_in": 3600,
		"user": map[string]any{"id": "u-42"}}
	if u.scope != "" {
		answer["scope"] = u.scope
	}
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

func (u *upstream) revoke(w http.ResponseWriter, r *http.Request) {
	if r.ParseForm() != nil || !u.clientOK(r) {
		u.t.Errorf("revoke: bad request")
		oauthError(w, "invalid_client", "")
		return
	}
	u.mu.Lock()
	u.revoked = append(u.revoked, r.PostForm.Get("token"))
	u.mu.Unlock()
	if u.revokeHold != nil {
		select {
		case <-u.revokeHold:
		case <-r.Context().Done():
			return
		}
	}
	if u.revokeFail.Load() {
		http.Error(w, "cannot revoke "+r.PostForm.Get("token"), http.StatusInternalServerError)
	}
}

// revokedTokens returns the tokens sent to the revocation endpoint.
func (u *upstream) revokedTokens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.revoked)
}

// lastState returns the state of the latest authorization request.
func (u *upstream) lastState() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.states) == 0 {
		return ""
	}
	return u.states[len(u.states)-1]
}

func (u *upstream) exchangeCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.exchanges
}

// secrets is everything the upstream handed out or was sent that no
// alterhost page may show.
func (u *upstream) secrets() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Concat(u.states, u.allCodes, u.verifiers, u.tokens, []string{clientSecret})
}

// newProvider is a real provider.Provider at u.
func newProvider(t *testing.T, upstreamURL, name string, mutate ...func(*provider.Config)) *provider.Provider {
	t.Helper()
	cfg := provider.Config{
		Name: name, DisplayName: strings.ToUpper(name[:1]) + name[1:],
		AuthURL: upstreamURL + "/authorize", TokenURL: upstreamURL + "/token", RevokeURL: upstreamURL + "/revoke",
		RevokeReplaced: true, // the fake revokes the token sent alone
		ClientID:       clientID, PKCE: true, AccountIDField: "user.id",
		APIHosts: []abi.HostPattern{abi.HostPattern("api." + name + ".test")},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := provider.New(cfg, provider.WithClientSecret(clientSecret))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// spyStore records the PKCE verifiers the flow stores.
type spyStore struct {
	store.Store
	mu        sync.Mutex
	verifiers []string
}

func (s *spyStore) PutConnectState(ctx context.Context, cs store.ConnectState) error {
	s.mu.Lock()
	s.verifiers = append(s.verifiers, cs.Verifier)
	s.mu.Unlock()
	return s.Store.PutConnectState(ctx, cs)
}

// flow is a connect.Service on 127.0.0.1 with a real vault on an SQLite
// store, providers "acme" and "other" at one fake upstream, and a clock.
type flow struct {
	t     *testing.T
	up    *upstream
	st    *spyStore
	v     *vault.Vault
	svc   *connect.Service
	srv   *httptest.Server
	skew  atomic.Int64 // added to the Service's clock
	logs  proctest.Buffer
	links []string
}

func newFlow(t *testing.T, mutate ...func(*provider.Config)) *flow {
	t.Helper()
	f := &flow{t: t, up: newUpstream(t)}
	sq, err := vault.OpenStore(t.Context(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	f.st = &spyStore{Store: sq}
	keys, err := seal.New(map[string][]byte{"k": bytes.Repeat([]byte{7}, 32)}, "k")
	if err != nil {
		t.Fatal(err)
	}
	reg := provider.NewRegistry(newProvider(t, f.up.URL, "acme", mutate...), newProvider(t, f.up.URL, "other"))
	logger := slog.New(slog.NewTextHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.v = vault.New(f.st, keys, reg, logger)
	r := chi.NewRouter()
	f.srv = httptest.NewServer(r)
	t.Cleanup(f.srv.Close)
	base, _ := url.Parse(f.srv.URL)
	f.svc = &connect.Service{Store: f.st, Vault: f.v, Providers: reg, BaseURL: base, Logger: logger,
		LinkTTL: 15 * time.Minute, FlowTTL: 10 * time.Minute,
		Now: func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) },
		Subject: func(r *http.Request) (string, error) {
			if s := r.Header.Get(subjectHdr); s != "" {
				return s, nil
			}
			return "", errors.New("no subject")
		}}
	f.v.Linker = f.svc
	f.svc.Routes(r)
	t.Cleanup(func() { f.checkLogs() })
	return f
}

// callbackURL is provider's callback, for cookie jars. (BaseURL.JoinPath
// would do for a string, but its Path lacks the leading slash when
// BaseURL's path is empty, and cookie jars match on Path.)
func (f *flow) callbackURL(provider string) *url.URL {
	return mustParse(f.t, f.srv.URL+"/connect/"+provider+"/callback")
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// connectURL mints a Connect URL.
func (f *flow) connectURL(subject, provider string, scopes ...string) string {
	f.t.Helper()
	u, err := f.svc.ConnectURL(f.t.Context(), subject, provider, scopes)
	if err != nil {
		f.t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host != f.srv.Listener.Addr().String() || pu.Path != "/connect/"+provider || pu.Query().Get("link") == "" {
		f.t.Fatalf("Connect URL %q: want %s/connect/%s?link=...", u, f.srv.URL, provider)
	}
	f.links = append(f.links, pu.Query().Get("link"))
	return u
}

func (f *flow) secrets() []string {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	return slices.Concat(f.up.secrets(), f.st.verifiers, f.links)
}

// browser is a new browser signed in as alice: a client with its own
// cookie jar that follows redirects.
func browser(t *testing.T) *http.Client { return browserAs(t, "alice") }

// browserAs is a new browser signed in as subject: its page loads (GET)
// carry the test's subject header, as a session cookie would.
func browserAs(t *testing.T, subject string) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: proctest.Timeout, Transport: signedIn{subject}}
}

type signedIn struct{ subject string }

func (s signedIn) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && r.Header.Get(subjectHdr) == "" {
		r = r.Clone(r.Context())
		r.Header.Set(subjectHdr, s.subject)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestLinkOfAnotherPerson: a Connect link opened in another person's
// browser starts nothing.
func TestLinkOfAnotherPerson(t *testing.T) {
	f := newFlow(t)
	p := f.get(browserAs(t, "mallory"), f.connectURL("alice", "acme", "read"))
	wantPage(t, p, http.StatusForbidden, "This Connect link belongs to another person")
	f.noGrant("alice", "acme")
	f.noGrant("mallory", "acme")
}

// TestSigninFirst: a browser that is not signed in is sent to sign in and
// back, and the link is not spent on the way; without a sign-in page it is
// refused.
func TestSigninFirst(t *testing.T) {
	f := newFlow(t)
	link := f.connectURL("alice", "acme", "read")
	anonymous := noFollow(&http.Client{Timeout: proctest.Timeout})
	// No sign-in page (an external issuer without OIDC): refused.
	wantPage(t, f.get(anonymous, link), http.StatusForbidden, "This Connect link belongs to another person")
	f.noGrant("alice", "acme")

	link = f.connectURL("alice", "acme", "read")
	f.svc.SigninURL = func(next string) string { return "/signin?next=" + url.QueryEscape(next) }
	resp, err := anonymous.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := resp.Location()
	if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != "/signin" ||
		loc.Query().Get("next") != strings.TrimPrefix(link, f.srv.URL) || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("not signed in: %d %v %v", resp.StatusCode, loc, resp.Header)
	}
	// The link was not spent: alice, signed in, uses it.
	alice := browser(t)
	wantPage(t, f.get(alice, f.consent(alice, link)), http.StatusOK, "Connected Acme")
	if _, ok := f.grant("alice", "acme"); !ok {
		t.Fatal("no grant")
	}
}

// noFollow is c, same cookie jar, stopping at redirects.
func noFollow(c *http.Client) *http.Client {
	n := *c
	n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &n
}

type page struct {
	status int
	body   string
	header http.Header
	url    *url.URL
}

// do sends req with c and checks what alterhost answers: no secret in the
// page, and the page headers.
func (f *flow) do(c *http.Client, req *http.Request) page {
	f.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	p := page{status: resp.StatusCode, body: string(body), header: resp.Header, url: resp.Request.URL}
	if p.url.Host == f.srv.Listener.Addr().String() && p.status/100 != 3 {
		f.checkPage(p)
	}
	return p
}

func (f *flow) get(c *http.Client, u string) page {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(c, req)
}

// checkPage: an alterhost page shows no token, code, verifier, state or
// link, and is not cached, nor leaked in a Referer.
func (f *flow) checkPage(p page) {
	f.t.Helper()
	for _, s := range f.secrets() {
		if s != "" && strings.Contains(p.body, s) {
			f.t.Errorf("the %d page at %s shows the secret %q:\n%s", p.status, p.url.Path, s, p.body)
		}
	}
	if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		return // http.Error's plain answers
	}
	if got := p.header.Get("Referrer-Policy"); got != "no-referrer" {
		f.t.Errorf("the %d page at %s has Referrer-Policy %q, want no-referrer", p.status, p.url.Path, got)
	}
	if got := p.header.Get("Cache-Control"); got != "no-store" {
		f.t.Errorf("the %d page at %s has Cache-Control %q, want no-store", p.status, p.url.Path, got)
	}
	if !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || p.header.Get("X-Frame-Options") != "DENY" {
		f.t.Errorf("the %d page at %s may be framed", p.status, p.url.Path)
	}
}

// checkLogs: the logs hold no token and no verifier, except those the
// upstream itself repeated in an error description (which the log of a
// failed exchange carries as the provider wrote it).
func (f *flow) checkLogs() {
	logs := f.logs.String()
	f.up.mu.Lock()
	secrets := slices.Concat(f.up.tokens, f.up.verifiers, []string{clientSecret})
	echoed := slices.Clone(f.up.echoed)
	f.up.mu.Unlock()
	f.st.mu.Lock()
	secrets = append(secrets, f.st.verifiers...)
	f.st.mu.Unlock()
	for _, s := range secrets {
		if s != "" && !slices.Contains(echoed, s) && strings.Contains(logs, s) {
			f.t.Errorf("the log shows the secret %q:\n%s", s, logs)
		}
	}
}

// consent opens link in c and lets the upstream consent, stopping before
// the callback: it returns the callback URL the upstream sent the browser
// to.
func (f *flow) consent(c *http.Client, link string) string {
	f.t.Helper()
	start := f.get(noFollow(c), link)
	if start.status != http.StatusFound || !strings.HasPrefix(start.header.Get("Location"), f.up.URL+"/authorize?") {
		f.t.Fatalf("start: %d to %q; want a redirect to the upstream\n%s", start.status, start.header.Get("Location"), start.body)
	}
	auth := f.get(noFollow(c), start.header.Get("Location"))
	cb := auth.header.Get("Location")
	if auth.status != http.StatusFound || !strings.Contains(cb, "/callback?") {
		f.t.Fatalf("authorize: %d to %q", auth.status, cb)
	}
	return cb
}

func (f *flow) grant(subject, provider string) (store.Grant, bool) {
	f.t.Helper()
	g, err := f.st.GetGrant(f.t.Context(), subject, provider)
	if errors.Is(err, store.ErrNotFound) {
		return g, false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return g, true
}

func (f *flow) noGrant(subject, provider string) {
	f.t.Helper()
	if g, ok := f.grant(subject, provider); ok {
		f.t.Errorf("a grant of %s at %s was stored: %+v", subject, provider, g)
	}
}

func wantPage(t *testing.T, p page, status int, title string) {
	t.Helper()
	if p.status != status || !strings.Contains(p.body, title) {
		t.Errorf("%s: %d %q; want %d %q", p.url.Path, p.status, p.body, status, title)
	}
}

const (
	titleConnected  = "Connected Acme as u-42"
	titleLinkGone   = "This Connect link was already used or has expired"
	titleStateGone  = "This sign-in was already completed or has expired"
	titleOtherBrows = "This sign-in was started in another browser"
	titleMismatch   = "The provider does not match this sign-in"
	titleNothing    = "Nothing was connected"
	titleRefused    = "The provider did not accept the sign-in"
)

func TestConnectFlow(t *testing.T) {
	f := newFlow(t)
	b := browser(t)
	p := f.get(b, f.connectURL("alice", "acme", "read", "write"))
	wantPage(t, p, http.StatusOK, titleConnected)
	if !strings.HasSuffix(p.url.Path, "/connect/acme/callback") {
		t.Errorf("the flow ended at %s", p.url)
	}
	if !strings.Contains(p.body, "Granted: read, write") {
		t.Errorf("the page does not say what was granted:\n%s", p.body)
	}
	g, ok := f.grant("alice", "acme")
	if !ok {
		t.Fatal("no grant stored")
	}
	if !slices.Equal(g.Scopes, []string{"read", "write"}) || g.AccountID != "u-42" || g.Status != store.GrantActive {
		t.Errorf("grant %+v; want scopes [read write] of account u-42, active", g)
	}
	if tok, aerr := f.v.Credential(t.Context(), "alice", "acme", []string{"write"}); aerr != nil || tok != f.up.tokens[0] {
		t.Errorf("credential after connecting: %q, %v; want %q", tok, aerr, f.up.tokens[0])
	}
	// The flow's cookie is gone from the browser.
	for _, c := range b.Jar.Cookies(f.callbackURL("acme")) {
		t.Errorf("cookie %s is left in the browser", c.Name)
	}
	f.noGrant("alice", "other")
}

// When the provider reports the scopes it granted, those are stored.
func TestConnectFlowReportedScopes(t *testing.T) {
	f := newFlow(t)
	f.up.scope = "read admin"
	wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read", "write")), http.StatusOK, "Granted: read, admin")
	if g, _ := f.grant("alice", "acme"); !slices.Equal(g.Scopes, []string{"read", "admin"}) {
		t.Errorf("scopes %q; want what the provider reported, [read admin]", g.Scopes)
	}
}

// A provider's default scopes are asked for at every consent; when the
// token answer does not list scopes, the provider granted what was asked
// (RFC 6749 §5.1), defaults included, and the grant should say so.
func TestConnectFlowRecordsDefaultScopes(t *testing.T) {
	f := newFlow(t, func(c *provider.Config) { c.Scopes = []string{"base"} })
	b := browser(t)
	cb := f.consent(b, f.connectURL("alice", "acme", "read"))
	f.up.mu.Lock()
	asked := f.up.scopes[0]
	f.up.mu.Unlock()
	if asked != "base read" {
		t.Fatalf("the consent asked for scope %q, want \"base read\"", asked)
	}
	wantPage(t, f.get(b, cb), http.StatusOK, titleConnected)
	g, _ := f.grant("alice", "acme")
	if !slices.Contains(g.Scopes, "base") || !slices.Contains(g.Scopes, "read") {
		t.Errorf("known bug: the consent asked for [base read] and the provider granted it, but the grant records %q: "+
			"connect.defaultScoper wants DefaultScopes(), which provider.Provider does not have (it has Scopes())", g.Scopes)
	}
	// What it costs: a tool that needs the default scope sends the person
	// through consent again.
	if _, aerr := f.v.Credential(t.Context(), "alice", "acme", []string{"base"}); aerr != nil {
		t.Errorf("a tool needing the default scope base, just granted, gets %s", aerr.Code)
	}
}

func TestConnectURLSingleUse(t *testing.T) {
	f := newFlow(t)
	link := f.connectURL("alice", "acme", "read")
	if p := f.get(noFollow(browser(t)), link); p.status != http.StatusFound {
		t.Fatalf("first use: %d, want a redirect to the provider", p.status)
	}
	wantPage(t, f.get(browser(t), link), http.StatusGone, titleLinkGone)
	wantPage(t, f.get(browser(t), link), http.StatusGone, titleLinkGone)
	// A made-up or missing link is refused alike.
	wantPage(t, f.get(browser(t), f.srv.URL+"/connect/acme?link=made-up"), http.StatusGone, titleLinkGone)
	wantPage(t, f.get(browser(t), f.srv.URL+"/connect/acme"), http.StatusGone, titleLinkGone)
	// Concurrent uses of one link: one starts a flow.
	link = f.connectURL("alice", "acme", "read")
	var started atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp, err := noFollow(browser(t)).Get(link)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusFound {
				started.Add(1)
			}
		})
	}
	wg.Wait()
	if n := started.Load(); n != 1 {
		t.Errorf("one link started %d flows, want 1", n)
	}
}

func TestConnectURLExpires(t *testing.T) {
	f := newFlow(t)
	early, late := f.connectURL("alice", "acme", "read"), f.connectURL("alice", "acme", "read")
	f.skew.Store(int64(f.svc.LinkTTL - time.Minute))
	if p := f.get(noFollow(browser(t)), early); p.status != http.StatusFound {
		t.Errorf("a link used a minute before it expires: %d, want a redirect", p.status)
	}
	f.skew.Store(int64(f.svc.LinkTTL + time.Second))
	wantPage(t, f.get(browser(t), late), http.StatusGone, titleLinkGone)
	f.noGrant("alice", "acme")
}

func TestConnectFlowExpires(t *testing.T) {
	f := newFlow(t)
	b := browser(t)
	cb := f.consent(b, f.connectURL("alice", "acme", "read"))
	f.skew.Store(int64(f.svc.FlowTTL + time.Second))
	wantPage(t, f.get(b, cb), http.StatusBadRequest, titleStateGone)
	if n := f.up.exchangeCount(); n != 0 {
		t.Errorf("an expired flow exchanged its code (%d exchanges)", n)
	}
	f.noGrant("alice", "acme")
}

func TestCallbackFromAnotherBrowser(t *testing.T) {
	f := newFlow(t)
	cb := f.consent(browser(t), f.connectURL("alice", "acme", "read"))
	// Another browser, without the flow's cookie.
	wantPage(t, f.get(browser(t), cb), http.StatusForbidden, titleOtherBrows)

	// Another browser with a cookie of the right name but its own value.
	b := browser(t)
	cb = f.consent(b, f.connectURL("alice", "acme", "read"))
	cookies := b.Jar.Cookies(f.callbackURL("acme"))
	if len(cookies) != 1 || !strings.HasPrefix(cookies[0].Name, "alterhost_flow_") {
		t.Fatalf("the flow set cookies %v; want one alterhost_flow_ cookie", cookies)
	}
	req, _ := http.NewRequest(http.MethodGet, cb, nil)
	req.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: "forged-" + rand.Text()})
	wantPage(t, f.do(browser(t), req), http.StatusForbidden, titleOtherBrows)

	if n := f.up.exchangeCount(); n != 0 {
		t.Errorf("a callback from another browser exchanged the code (%d exchanges)", n)
	}
	f.noGrant("alice", "acme")
}

func TestCallbackReplay(t *testing.T) {
	f := newFlow(t)
	b := browser(t)
	cb := f.consent(b, f.connectURL("alice", "acme", "read"))
	// The browser also keeps a copy of the cookie, to replay with after
	// the callback clears it.
	cookies := b.Jar.Cookies(f.callbackURL("acme"))

	// The same callback, many times at once: one completes.
	var (
		mu       sync.Mutex
		statuses []int
		wg       sync.WaitGroup
	)
	for range 6 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, cb, nil)
			for _, c := range cookies {
				req.AddCookie(c)
			}
			resp, err := noFollow(browser(t)).Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode != http.StatusOK && !strings.Contains(string(body), titleStateGone) {
				t.Errorf("a replay got %d: %s", resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	if n := f.up.exchangeCount(); n != 1 || slices.Index(statuses, http.StatusOK) < 0 {
		t.Errorf("6 concurrent callbacks: statuses %v, %d code exchanges; want one 200 and one exchange", statuses, n)
	}
	g, _ := f.grant("alice", "acme")

	// Later, again, with the original browser.
	req, _ := http.NewRequest(http.MethodGet, cb, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	wantPage(t, f.do(noFollow(browser(t)), req), http.StatusBadRequest, titleStateGone)
	if n := f.up.exchangeCount(); n != 1 {
		t.Errorf("a replayed state exchanged its code again (%d exchanges)", n)
	}
	if again, _ := f.grant("alice", "acme"); again.ID != g.ID {
		t.Errorf("a replay replaced the grant")
	}
}

func TestCallbackOtherProvider(t *testing.T) {
	f := newFlow(t)
	// A browser follows a callback for acme's state to other's callback:
	// its flow cookie is scoped to /connect/acme, so it is not even sent.
	b := browser(t)
	cb := f.consent(b, f.connectURL("alice", "acme", "read"))
	moved := strings.Replace(cb, "/connect/acme/callback", "/connect/other/callback", 1)
	p := f.get(b, moved)
	if p.status < 400 || strings.Contains(p.body, "Connected") {
		t.Errorf("acme's state at other's callback: %d %s; want it refused", p.status, p.body)
	}

	// And with the cookie sent along.
	b = browser(t)
	cb = f.consent(b, f.connectURL("alice", "acme", "read"))
	cookies := b.Jar.Cookies(f.callbackURL("acme"))
	req, _ := http.NewRequest(http.MethodGet, strings.Replace(cb, "/connect/acme/callback", "/connect/other/callback", 1), nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	wantPage(t, f.do(noFollow(b), req), http.StatusBadRequest, titleMismatch)

	if n := f.up.exchangeCount(); n != 0 {
		t.Errorf("a state of acme exchanged a code at other (%d exchanges)", n)
	}
	f.noGrant("alice", "acme")
	f.noGrant("alice", "other")

	// A link for acme does not start a flow at other.
	wantPage(t, f.get(browser(t), strings.Replace(f.connectURL("alice", "acme"), "/connect/acme", "/connect/other", 1)),
		http.StatusBadRequest, "This Connect link is for another provider")
}

func TestCallbackAccessDenied(t *testing.T) {
	f := newFlow(t)
	// alice already has a grant; she declines a new consent.
	old, err := f.v.Save(t.Context(), "alice", "acme", vault.Token{AccessToken: "at-old", RefreshToken: "rt-old",
		Scopes: []string{"read"}, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	f.up.deny.Store(true)
	p := f.get(browser(t), f.connectURL("alice", "acme", "read", "write"))
	wantPage(t, p, http.StatusOK, titleNothing)
	if !strings.Contains(p.body, "access_denied") {
		t.Errorf("the page does not say what the provider reported:\n%s", p.body)
	}
	if n := f.up.exchangeCount(); n != 0 {
		t.Errorf("%d code exchanges after access_denied", n)
	}
	if g, _ := f.grant("alice", "acme"); g.ID != old.ID || !bytes.Equal(g.Secret, old.Secret) {
		t.Errorf("declining a consent changed the grant: %+v", g)
	}
	// Without an earlier grant, nothing is stored.
	p = f.get(browserAs(t, "bob"), f.connectURL("bob", "acme", "read"))
	wantPage(t, p, http.StatusOK, titleNothing)
	f.noGrant("bob", "acme")
}

func TestCallbackExchangeRefused(t *testing.T) {
	f := newFlow(t)
	f.up.failExchange.Store(true)
	p := f.get(browser(t), f.connectURL("alice", "acme", "read"))
	wantPage(t, p, http.StatusBadGateway, titleRefused)
	if strings.Contains(p.body, "was refused") || strings.Contains(p.body, "invalid_grant") {
		t.Errorf("the page repeats the provider's error:\n%s", p.body)
	}
	f.noGrant("alice", "acme")
	// An unknown state, and none at all.
	wantPage(t, f.get(browser(t), f.srv.URL+"/connect/acme/callback?state=made-up&code=x"), http.StatusBadRequest, titleStateGone)
	wantPage(t, f.get(browser(t), f.srv.URL+"/connect/acme/callback"), http.StatusBadRequest, titleStateGone)
}

func TestDisconnect(t *testing.T) {
	f := newFlow(t)
	wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read")), http.StatusOK, titleConnected)
	post := func(subject, provider string) page {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/connect/"+provider+"/disconnect", nil)
		if subject != "" {
			req.Header.Set(subjectHdr, subject)
		}
		return f.do(browser(t), req)
	}
	if p := post("", "acme"); p.status != http.StatusUnauthorized {
		t.Errorf("disconnect without a subject: %d", p.status)
	}
	wantPage(t, post("bob", "acme"), http.StatusNotFound, "No acme account is connected")
	if _, ok := f.grant("alice", "acme"); !ok {
		t.Fatal("someone else's disconnect deleted alice's grant")
	}
	wantPage(t, post("alice", "acme"), http.StatusOK, "Disconnected acme")
	f.noGrant("alice", "acme")
	f.up.mu.Lock()
	revoked, rt := slices.Clone(f.up.revoked), f.up.tokens[1]
	f.up.mu.Unlock()
	if !slices.Equal(revoked, []string{rt}) {
		t.Errorf("revoked %q upstream; want the grant's refresh token %q", revoked, rt)
	}
	wantPage(t, post("alice", "acme"), http.StatusNotFound, "No acme account is connected")
	if _, aerr := f.v.Credential(t.Context(), "alice", "acme", []string{"read"}); aerr == nil || aerr.Code != abi.CodeGrantNotFound {
		t.Errorf("credential after disconnect: %v", aerr)
	}
}

func TestUnknownProvider(t *testing.T) {
	f := newFlow(t)
	wantPage(t, f.get(browser(t), f.connectURL("alice", "nope", "read")), http.StatusNotFound, "This provider is not configured")
}

// --- a process killed during the callback's code exchange ---

// Environment of the connect-serve child, besides seal.KeyEnv.
const (
	childDBEnv       = "ALTERHOST_PROCTEST_DB"
	childUpstreamEnv = "ALTERHOST_PROCTEST_UPSTREAM"
)

// TestHelperProcess is the entry point of the child processes. In the
// parent test run it does nothing.
func TestHelperProcess(t *testing.T) {
	switch role := proctest.Role(); role {
	case "":
		return
	case "connect-serve":
		serveChild(t)
	default:
		t.Fatalf("unknown role %q", role)
	}
}

// serveChild serves the Connect routes on 127.0.0.1 over the parent's
// database and says "url BASEURL"; it stops when its stdin closes.
func serveChild(t *testing.T) {
	ctx := context.Background()
	if os.Getenv(seal.KeyEnv) == "" {
		t.Fatalf("the parent did not set %s", seal.KeyEnv)
	}
	keys, err := seal.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := vault.OpenStore(ctx, os.Getenv(childDBEnv), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := provider.NewRegistry(newProvider(t, os.Getenv(childUpstreamEnv), "acme"))
	v := vault.New(st, keys, reg, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &connect.Service{Store: st, Vault: v, Providers: reg, BaseURL: &url.URL{Scheme: "http", Host: ln.Addr().String()},
		Subject: func(*http.Request) (string, error) { return "alice", nil }} // the one person of this child
	v.Linker = svc
	r := chi.NewRouter()
	svc.Routes(r)
	srv := &http.Server{Handler: r, ReadHeaderTimeout: proctest.Timeout}
	go srv.Serve(ln)
	proctest.Printf("url %s", svc.BaseURL)
	proctest.WaitStdinClosed()
	sctx, cancel := context.WithTimeout(ctx, proctest.Timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Error(err)
	}
}

// TestProcessKilledDuringCallback: alterhost is killed while the callback
// of a re-consent waits for the code exchange. The person's earlier grant
// is intact and usable, the database is sound, and the state the dead
// process took cannot be used again by the next one.
func TestProcessKilledDuringCallback(t *testing.T) {
	proctest.ForEachDB(t, func(t *testing.T, db proctest.DB) {
		arrived, release := make(chan struct{}, 4), make(chan struct{})
		up := newUpstream(t)
		up.onExchange = func(r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-r.Context().Done(): // the process died
			case <-release:
			case <-time.After(proctest.Timeout):
				t.Errorf("a code exchange was never abandoned")
			}
		}
		t.Cleanup(func() { close(release) })

		key := make([]byte, 32)
		rand.Read(key)
		keys, err := seal.New(map[string][]byte{"proc": key}, "proc")
		if err != nil {
			t.Fatal(err)
		}
		env := []string{seal.KeyEnv + "=proc:" + base64.StdEncoding.EncodeToString(key),
			childDBEnv + "=" + db.URL, childUpstreamEnv + "=" + up.URL}
		st, err := vault.OpenStore(t.Context(), db.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		reg := provider.NewRegistry(newProvider(t, up.URL, "acme"))
		v := vault.New(st, keys, reg, nil)
		old, err := v.Save(t.Context(), "alice", "acme", vault.Token{AccessToken: "at-old", RefreshToken: "rt-old",
			Scopes: []string{"read"}, Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}

		child := proctest.Start(t, "connect-serve", env...)
		base, err := url.Parse(child.Expect(t, "url"))
		if err != nil {
			t.Fatal(err)
		}
		// Mint the re-consent link here, on the shared database.
		link, err := (&connect.Service{Store: st, BaseURL: base}).ConnectURL(t.Context(), "alice", "acme", []string{"read", "write"})
		if err != nil {
			t.Fatal(err)
		}
		b := browser(t)
		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := b.Get(link)
			if err == nil {
				resp.Body.Close()
			}
			done <- result{resp, err}
		}()
		select {
		case <-arrived:
		case r := <-done:
			t.Fatalf("the flow ended (%v, %v) before the code exchange:\n%s", r.resp, r.err, child.Output())
		case <-child.Done():
			t.Fatalf("the child exited before the code exchange:\n%s", child.Output())
		case <-time.After(proctest.Timeout):
			t.Fatalf("no code exchange within %v:\n%s", proctest.Timeout, child.Output())
		}
		child.Kill(t)
		select {
		case r := <-done:
			if r.err == nil {
				t.Errorf("the browser got %d from a killed process", r.resp.StatusCode)
			}
		case <-time.After(proctest.Timeout):
			t.Fatal("the browser's request outlived the process")
		}

		if db.File != "" {
			proctest.IntegrityCheck(t, db.File)
		}
		// A fresh store and vault, as after a restart.
		st2, err := vault.OpenStore(t.Context(), db.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st2.Close() })
		g, err := st2.GetGrant(t.Context(), "alice", "acme")
		if err != nil {
			t.Fatalf("alice's grant is gone: %v", err)
		}
		if g.ID != old.ID || g.Status != store.GrantActive || !bytes.Equal(g.Secret, old.Secret) {
			t.Errorf("alice's grant changed: %+v", g)
		}
		v2 := vault.New(st2, keys, reg, nil)
		if tok, aerr := v2.Credential(t.Context(), "alice", "acme", []string{"read"}); aerr != nil || tok != "at-old" {
			t.Errorf("alice's grant after the crash: %q, %v; want at-old", tok, aerr)
		}

		// The next process refuses the state the dead one took, with the
		// same browser, state and code.
		up.mu.Lock()
		state, code := up.states[0], up.allCodes[0]
		up.mu.Unlock()
		next := proctest.Start(t, "connect-serve", env...)
		cb := next.Expect(t, "url") + "/connect/acme/callback?" + url.Values{"state": {state}, "code": {code}}.Encode()
		if len(b.Jar.Cookies(mustParse(t, base.String()+"/connect/acme/callback"))) != 1 {
			t.Errorf("the browser lacks the flow's cookie; the replay would be refused for that alone")
		}
		resp, err := b.Get(cb)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), titleStateGone) {
			t.Errorf("replayed callback: %d %s; want 400 %q", resp.StatusCode, body, titleStateGone)
		}
		if resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("replayed callback: Referrer-Policy %q", resp.Header.Get("Referrer-Policy"))
		}
		next.CloseStdin()
		if err := next.Wait(t); err != nil {
			t.Errorf("the second child: %v\n%s", err, next.Output())
		}
		if n := up.exchangeCount(); n != 1 {
			t.Errorf("%d code exchanges; want only the killed one", n)
		}
		if g, _ := st2.GetGrant(t.Context(), "alice", "acme"); g.ID != old.ID {
			t.Errorf("the replay replaced alice's grant")
		}
		if db.File != "" {
			proctest.IntegrityCheck(t, db.File)
		}
	})
}

// The flow reads a provider's default scopes through Scopes(); this fails
// to compile if the provider package renames it.
var _ interface{ Scopes() []string } = (*provider.Provider)(nil)

// waitRevocations waits for the vault's background revocations.
func (f *flow) waitRevocations() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), proctest.Timeout)
	defer cancel()
	if err := f.v.WaitRevocations(ctx); err != nil {
		f.t.Fatalf("revocations still running: %v", err)
	}
}

// TestReconsentRevokesReplaced: connecting again with more scopes
// replaces the grant, and the replaced grant's refresh token is revoked at
// the provider (RFC 7009); the new grant is left alone.
func TestReconsentRevokesReplaced(t *testing.T) {
	f := newFlow(t)
	wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read")), http.StatusOK, titleConnected)
	f.waitRevocations()
	if got := f.up.revokedTokens(); len(got) != 0 {
		t.Errorf("the first connection revoked %q", got)
	}
	wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read", "write")), http.StatusOK, titleConnected)
	f.waitRevocations()
	f.up.mu.Lock()
	oldRT, newAT, newRT := f.up.tokens[1], f.up.tokens[2], f.up.tokens[3]
	f.up.mu.Unlock()
	if got := f.up.revokedTokens(); !slices.Equal(got, []string{oldRT}) {
		t.Errorf("revoked %q upstream after the re-consent; want the replaced grant's refresh token %q", got, oldRT)
	}
	if tok, aerr := f.v.Credential(t.Context(), "alice", "acme", []string{"write"}); aerr != nil || tok != newAT {
		t.Errorf("credential after the re-consent: %q, %v; want %q", tok, aerr, newAT)
	}
	if !strings.Contains(f.logs.String(), "replaced grant revoked upstream") {
		t.Errorf("the revocation is not logged:\n%s", f.logs.String())
	}
	// Disconnecting now revokes the new grant, not the old one again.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/connect/acme/disconnect", nil)
	req.Header.Set(subjectHdr, "alice")
	wantPage(t, f.do(browser(t), req), http.StatusOK, "Disconnected acme")
	if got := f.up.revokedTokens(); !slices.Equal(got, []string{oldRT, newRT}) {
		t.Errorf("revoked %q; want %q then %q", got, oldRT, newRT)
	}
}

// TestReconsentKeepsReplaced: at a provider not known to revoke one token
// alone (no revoke_replaced), a re-consent of the same account revokes
// nothing, so the new grant cannot end with the old.
func TestReconsentKeepsReplaced(t *testing.T) {
	f := newFlow(t, func(c *provider.Config) { c.RevokeReplaced = false })
	wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read")), http.StatusOK, titleConnected)
	wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read", "write")), http.StatusOK, titleConnected)
	f.waitRevocations()
	if got := f.up.revokedTokens(); len(got) != 0 {
		t.Errorf("revoked %q upstream; want nothing", got)
	}
	if !strings.Contains(f.logs.String(), "not known to revoke one token alone") {
		t.Errorf("the log does not say why nothing was revoked:\n%s", f.logs.String())
	}
}

// TestReconsentRevokeFails: a provider that refuses the revocation (and
// repeats the token), or does not answer, neither fails nor delays the
// connection; the failure is logged without the token.
func TestReconsentRevokeFails(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		f := newFlow(t)
		f.up.revokeFail.Store(true)
		wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read")), http.StatusOK, titleConnected)
		wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read", "write")), http.StatusOK, titleConnected)
		f.waitRevocations()
		if len(f.up.revokedTokens()) != 1 || !strings.Contains(f.logs.String(), "upstream revocation of the replaced grant failed") {
			t.Errorf("revoked %q; the failure is not logged:\n%s", f.up.revokedTokens(), f.logs.String())
		}
		if g, ok := f.grant("alice", "acme"); !ok || !slices.Equal(g.Scopes, []string{"read", "write"}) {
			t.Errorf("after a refused revocation the grant is %+v, %v; want the new one", g, ok)
		}
		// checkLogs, at cleanup, looks for the tokens in the log.
	})
	t.Run("unanswered", func(t *testing.T) {
		f := newFlow(t)
		f.up.revokeHold = make(chan struct{})
		wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read")), http.StatusOK, titleConnected)
		start := time.Now()
		wantPage(t, f.get(browser(t), f.connectURL("alice", "acme", "read", "write")), http.StatusOK, titleConnected)
		took := time.Since(start)
		f.up.mu.Lock()
		newAT := f.up.tokens[2]
		f.up.mu.Unlock()
		if tok, aerr := f.v.Credential(t.Context(), "alice", "acme", []string{"write"}); aerr != nil || tok != newAT {
			t.Errorf("credential while the revocation hangs: %q, %v; want %q", tok, aerr, newAT)
		}
		// The revocation is still at the provider: the page did not wait.
		deadline := time.Now().Add(proctest.Timeout)
		for len(f.up.revokedTokens()) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if err := f.v.WaitRevocations(short); err == nil {
			t.Errorf("the revocation had ended; the re-consent (%v) may have waited for it", took)
		}
		close(f.up.revokeHold)
		f.waitRevocations()
		if len(f.up.revokedTokens()) != 1 {
			t.Errorf("revoked %q; want the replaced refresh token once", f.up.revokedTokens())
		}
	})
}
