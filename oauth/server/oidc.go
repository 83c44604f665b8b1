package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/vault/store"
)

// OIDCConfig configures sign-in through an OpenID Connect provider: the
// team's identity provider signs people in, and each acts in alterhost as
// the subject ("sub") the provider names.
type OIDCConfig struct {
	// Issuer is the provider's issuer identifier, e.g.
	// https://accounts.example.com. Its discovery document is read from
	// Issuer/.well-known/openid-configuration, and ID tokens must name it
	// exactly.
	Issuer string
	// ClientID and ClientSecret are alterhost's client at the provider,
	// registered with the redirect URI BASE/signin/oidc/callback. An empty
	// secret makes alterhost a public client, which PKCE protects.
	ClientID, ClientSecret string
	// Scopes are asked for beyond "openid" and "email".
	Scopes []string
	// AllowedDomains admits people whose verified e-mail address is in one
	// of these domains, exactly (not their subdomains).
	AllowedDomains []string
	// AllowedPeople admits people by verified e-mail address (an entry
	// with "@") or by subject (any other entry). With neither list set,
	// everyone the provider signs in is admitted.
	AllowedPeople []string
	// HTTPClient reaches the provider: discovery, keys, code exchange.
	// Default: a client with a 10 s timeout.
	HTTPClient *http.Client
}

// String describes c without its secret, so that a config that ends up in
// a log or an error does not carry it.
func (c OIDCConfig) String() string {
	secret := "none"
	if c.ClientSecret != "" {
		secret = "set"
	}
	return fmt.Sprintf("OIDC{issuer %s, client %s, secret %s, domains %v, people %v}",
		c.Issuer, c.ClientID, secret, c.AllowedDomains, c.AllowedPeople)
}

// Paths and lifetimes of the OIDC sign-in.
const (
	oidcStartPath    = "/signin/oidc"
	oidcCallbackPath = "/signin/oidc/callback"
	oidcFlowTTL      = 10 * time.Minute
	// signinFlowProvider marks a ConnectState row as a sign-in flow (see
	// startOIDC). Provider names start with a letter or digit, so no
	// Connect flow has this one: Connect's callback never accepts a
	// sign-in state, nor the sign-in callback a Connect state.
	signinFlowProvider = "@signin"
)

// oidcSignin is the OIDC mode of a Server.
type oidcSignin struct {
	cfg      OIDCConfig
	redirect string // alterhost's callback, BASE/signin/oidc/callback
	now      func() time.Time
	domains  []string // lower case
	emails   []string // lower case
	subjects []string

	// The provider's endpoints and keys, discovered once it is first
	// reached; a failed discovery is tried again at the next sign-in.
	mu       sync.Mutex
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newOIDCSignin(cfg OIDCConfig, redirect string, now func() time.Time) (*oidcSignin, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("oauth server: OIDC issuer %q is not an absolute http(s) URL without query", cfg.Issuer)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("oauth server: OIDC issuer %s: http is only allowed on loopback; use https", cfg.Issuer)
	}
	if cfg.ClientID == "" || strings.ContainsFunc(cfg.ClientID, unicode.IsControl) {
		return nil, errors.New("oauth server: OIDC needs a client id")
	}
	o := &oidcSignin{redirect: redirect, now: now}
	var scopes []string
	for _, sc := range cfg.Scopes {
		if !validScopeToken(sc) {
			return nil, fmt.Errorf("oauth server: bad OIDC scope %q", sc)
		}
		if sc != oidc.ScopeOpenID && sc != oidc.ScopeEmail && !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	cfg.Scopes = scopes
	for _, d := range cfg.AllowedDomains {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
		if d == "" || strings.ContainsAny(d, "@/:") || strings.ContainsFunc(d, unicode.IsSpace) {
			return nil, fmt.Errorf("oauth server: %q is not an e-mail domain", d)
		}
		o.domains = append(o.domains, d)
	}
	for _, p := range cfg.AllowedPeople {
		p = strings.TrimSpace(p)
		switch {
		case p == "" || strings.ContainsFunc(p, unicode.IsSpace):
			return nil, fmt.Errorf("oauth server: %q is neither an e-mail address nor a subject", p)
		case strings.Contains(p, "@"):
			o.emails = append(o.emails, strings.ToLower(p))
		default:
			o.subjects = append(o.subjects, p)
		}
	}
	cfg.AllowedDomains, cfg.AllowedPeople = slices.Clone(o.domains), slices.Clone(cfg.AllowedPeople)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	o.cfg = cfg
	return o, nil
}

func (o *oidcSignin) admitsAnyone() bool {
	return len(o.domains) == 0 && len(o.emails) == 0 && len(o.subjects) == 0
}

// clientContext makes go-oidc and x/oauth2 use the configured client.
func (o *oidcSignin) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, o.cfg.HTTPClient)
}

// discover returns the provider's OAuth endpoints and ID token verifier,
// reading its discovery document the first time.
func (o *oidcSignin) discover(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.oauth != nil {
		return o.oauth, o.verifier, nil
	}
	p, err := oidc.NewProvider(o.clientContext(ctx), o.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("OIDC discovery at %s: %w", o.cfg.Issuer, err)
	}
	ep := p.Endpoint()
	if o.cfg.ClientSecret == "" {
		// A public client names itself in the body; Basic with an empty
		// password is refused by some providers.
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	// go-oidc checks the signature (with the algorithms discovery lists,
	// never "none" or HMAC), iss, aud and exp; the nonce is checked here.
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.now})
	o.oauth = &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: o.redirect, Scopes: append([]string{oidc.ScopeOpenID, oidc.ScopeEmail}, o.cfg.Scopes...)}
	return o.oauth, o.verifier, nil
}

// oidcPerson is who an ID token names.
type oidcPerson struct {
	Subject       string
	Email         string
	EmailVerified bool
}

// person reads the claims admission needs from a verified ID token.
func (o *oidcSignin) person(idt *oidc.IDToken) (oidcPerson, error) {
	var c struct {
		Email    string `json:"email"`
		Verified any    `json:"email_verified"`
		AZP      string `json:"azp"`
	}
	if err := idt.Claims(&c); err != nil {
		return oidcPerson{}, err
	}
	if idt.Subject == "" || len(idt.Subject) > 255 || strings.ContainsFunc(idt.Subject, unicode.IsControl) {
		return oidcPerson{}, errors.New("the ID token has no usable sub")
	}
	// OpenID Connect Core §3.1.3.7: with several audiences, azp names the
	// party the token was issued to, and that must be this client.
	if len(idt.Audience) > 1 && c.AZP != o.cfg.ClientID {
		return oidcPerson{}, fmt.Errorf("the ID token has several audiences and azp %q", c.AZP)
	}
	// Some providers send the boolean as a string.
	verified := c.Verified == true || c.Verified == "true"
	return oidcPerson{Subject: idt.Subject, Email: c.Email, EmailVerified: verified}, nil
}

// admits reports whether p may use this alterhost. An e-mail address
// counts only if the provider verified it: an unverified address is
// whatever the person typed.
func (o *oidcSignin) admits(p oidcPerson) bool {
	if o.admitsAnyone() || slices.Contains(o.subjects, p.Subject) {
		return true
	}
	if p.Email == "" || !p.EmailVerified {
		return false
	}
	email := strings.ToLower(p.Email)
	if slices.Contains(o.emails, email) {
		return true
	}
	at := strings.LastIndexByte(email, '@')
	return at > 0 && slices.Contains(o.domains, email[at+1:])
}

// DiscoverOIDC reads the OIDC provider's discovery document now, so that
// a wrong issuer or an unreachable provider fails at start rather than at
// the first sign-in. In owner mode it does nothing.
func (s *Server) DiscoverOIDC(ctx context.Context) error {
	if s.oidc == nil {
		return nil
	}
	_, _, err := s.oidc.discover(ctx)
	return err
}

// OIDCIssuer is the issuer people sign in at, or "" in owner mode.
func (s *Server) OIDCIssuer() string {
	if s.oidc == nil {
		return ""
	}
	return s.oidc.cfg.Issuer
}

// OIDCRedirectURL is the redirect URI to register at the OIDC provider,
// or "" in owner mode.
func (s *Server) OIDCRedirectURL() string {
	if s.oidc == nil {
		return ""
	}
	return s.oidc.redirect
}

// flowCookieName names the cookie binding one sign-in flow to its browser.
// Each flow has its own, so two tabs signing in do not clobber each other.
// On https the __Secure- prefix keeps an http page from setting it.
func (s *Server) flowCookieName(state string) string {
	name := fmt.Sprintf("alterhost_signin_%x", hash(state)[:8])
	if s.secure {
		return "__Secure-" + name
	}
	return name
}

// nonceFor is the OIDC nonce of the flow whose browser holds the cookie
// value browser. Derived rather than stored: the ID token then proves it
// was issued for the browser that started the flow, and the store holds
// one secret less.
func nonceFor(browser string) string {
	h := sha256.Sum256([]byte("alterhost oidc nonce\x00" + browser))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// flowAEAD seals what a flow keeps about where to return. The key comes
// from the browser's cookie, which the store never sees: next can hold a
// Connect link, a credential, and the store keeps credentials only hashed
// or sealed.
func flowAEAD(browser string) cipher.AEAD {
	k := sha256.Sum256([]byte("alterhost sign-in flow key\x00" + browser))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic(err)
	}
	return aead
}

func sealNext(browser string, stateHash []byte, next string) string {
	return base64.RawURLEncoding.EncodeToString(flowAEAD(browser).Seal(nil, nil, []byte(next), stateHash))
}

func openNext(browser string, stateHash []byte, sealed string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return "", err
	}
	next, err := flowAEAD(browser).Open(nil, nil, b, stateHash)
	return string(next), err
}

// oidcStart is GET /signin/oidc?next=...: SigninURL's target in OIDC mode.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	s.startOIDC(w, r, r.URL.Query().Get("next"))
}

// startOIDC sends the browser to the provider: authorization code with
// PKCE S256, a state bound to this browser by a cookie, and a nonce.
//
// The flow rides in a ConnectState row: StateHash and BrowserHash as for
// Connect, Provider signinFlowProvider, Verifier the PKCE verifier, and
// Scopes, if there is somewhere to return to, one element: next, sealed
// (sealNext). The row is single-use and expires in 10 minutes.
func (s *Server) startOIDC(w http.ResponseWriter, r *http.Request, next string) {
	if !s.signinLimit.allow(remoteIP(r)) {
		w.Header().Set("Retry-After", "60")
		s.message(w, http.StatusTooManyRequests, "Too many sign-ins from this address", "Wait a minute and try again.")
		return
	}
	cfg, _, err := s.oidc.discover(r.Context())
	if err != nil {
		s.opts.Logger.Warn("oauth: the OIDC provider cannot be reached", "error", err)
		s.message(w, http.StatusBadGateway, "The sign-in service cannot be reached",
			"Try again later; if it keeps failing, ask the operator to check alterhost's log.")
		return
	}
	state, browser, verifier := random(32), random(32), oauth2.GenerateVerifier()
	now := s.now()
	st := store.ConnectState{StateHash: hash(state), BrowserHash: hash(browser), Provider: signinFlowProvider,
		Verifier: verifier, CreatedAt: now, ExpiresAt: now.Add(oidcFlowTTL)}
	if safeNext(next) {
		st.Scopes = []string{sealNext(browser, st.StateHash, next)}
	}
	if err := s.store.PutConnectState(r.Context(), st); err != nil {
		s.pageError(w, "OIDC sign-in", err)
		return
	}
	// SameSite=Lax: the provider's redirect back is a top-level GET
	// navigation from another site, on which Lax cookies are sent.
	http.SetCookie(w, &http.Cookie{Name: s.flowCookieName(state), Value: browser, Path: oidcStartPath,
		MaxAge: int(oidcFlowTTL.Seconds()), Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonceFor(browser))),
		http.StatusFound)
}

// oidcCallback is GET /signin/oidc/callback: the provider's redirect back.
// It takes the flow, checks the browser, exchanges the code, verifies the
// ID token and its nonce, and admits the person or says why not.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	const again = "Start again from your application."
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		s.opts.Observer.Signin("oidc", "invalid")
		s.message(w, http.StatusBadRequest, "This sign-in answer is incomplete", again)
		return
	}
	st, err := s.store.TakeConnectState(r.Context(), hash(state), s.now())
	if errors.Is(err, store.ErrNotFound) {
		s.opts.Observer.Signin("oidc", "invalid")
		s.message(w, http.StatusBadRequest, "This sign-in was already completed or has expired", again)
		return
	}
	if err != nil {
		s.opts.Observer.Signin("oidc", "error")
		s.pageError(w, "OIDC callback", err)
		return
	}
	if st.Provider != signinFlowProvider {
		s.opts.Observer.Signin("oidc", "invalid")
		s.message(w, http.StatusBadRequest, "This is not a sign-in to alterhost", again)
		return
	}
	// The browser that finishes must be the one that started: otherwise an
	// attacker could hand a victim the callback URL of the attacker's own
	// sign-in and have the victim act, unknowingly, as the attacker.
	cookie, err := r.Cookie(s.flowCookieName(state))
	if err != nil || subtle.ConstantTimeCompare(hash(cookie.Value), st.BrowserHash) != 1 {
		s.opts.Observer.Signin("oidc", "wrong_browser")
		s.message(w, http.StatusForbidden, "This sign-in was started in another browser",
			"Sign in from the browser you started in. "+again)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookie.Name, Path: oidcStartPath, MaxAge: -1, Secure: s.secure,
		HttpOnly: true, SameSite: http.SameSiteLaxMode})
	next := ""
	if len(st.Scopes) == 1 {
		if next, err = openNext(cookie.Value, st.StateHash, st.Scopes[0]); err != nil {
			// Not fatal: the person is signed in and returns by hand.
			s.opts.Logger.Warn("oauth: a sign-in flow's return address did not open", "error", err)
			next = ""
		}
	}
	if e := q.Get("error"); e != "" {
		s.opts.Observer.Signin("oidc", "denied")
		s.message(w, http.StatusForbidden, "You were not signed in",
			"The sign-in service answered: "+truncate(e, 100)+". "+again)
		return
	}
	cfg, verifier, err := s.oidc.discover(r.Context())
	if err != nil {
		s.opts.Logger.Warn("oauth: the OIDC provider cannot be reached", "error", err)
		s.opts.Observer.Signin("oidc", "provider_error")
		s.message(w, http.StatusBadGateway, "The sign-in service cannot be reached", again)
		return
	}
	ctx := s.oidc.clientContext(r.Context())
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		s.opts.Logger.Warn("oauth: OIDC code exchange failed", "issuer", s.oidc.cfg.Issuer, "error", err)
		s.opts.Observer.Signin("oidc", "provider_error")
		s.message(w, http.StatusBadGateway, "The sign-in service did not accept the sign-in", again)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		s.opts.Logger.Warn("oauth: the OIDC token response has no id_token", "issuer", s.oidc.cfg.Issuer)
		s.opts.Observer.Signin("oidc", "provider_error")
		s.message(w, http.StatusBadGateway, "The sign-in service did not say who you are", again)
		return
	}
	idt, err := verifier.Verify(ctx, raw)
	if err == nil && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonceFor(cookie.Value))) != 1 {
		err = errors.New("the ID token's nonce is not this flow's")
	}
	var p oidcPerson
	if err == nil {
		p, err = s.oidc.person(idt)
	}
	if err != nil {
		s.opts.Logger.Warn("oauth: OIDC ID token refused", "issuer", s.oidc.cfg.Issuer, "error", err)
		s.opts.Observer.Signin("oidc", "refused")
		s.message(w, http.StatusForbidden, "alterhost could not verify who you are",
			"The sign-in service's answer did not pass alterhost's checks. "+again)
		return
	}
	if !s.oidc.admits(p) {
		s.opts.Logger.Info("oauth: OIDC sign-in refused: not admitted", "subject", p.Subject, "email", p.Email,
			"email_verified", p.EmailVerified)
		s.opts.Observer.Signin("oidc", "not_admitted")
		s.render(w, http.StatusForbidden, "", "refused", refusedPage{Title: "This alterhost does not admit you",
			Issuer: s.oidc.cfg.Issuer, Subject: p.Subject, Email: p.Email,
			Unverified: p.Email != "" && !p.EmailVerified})
		return
	}
	// Only a verified address names the person to themselves.
	name := ""
	if p.EmailVerified {
		name = p.Email
	}
	if err := s.startSession(w, r, p.Subject, name); err != nil {
		s.opts.Observer.Signin("oidc", "error")
		s.pageError(w, "OIDC sign-in", err)
		return
	}
	// The subject is who the person is to alterhost; the e-mail, only
	// beside it, so an operator can tell who that is.
	s.opts.Logger.Info("oauth: signed in", "subject", p.Subject, "email", p.Email, "via", "oidc")
	s.opts.Observer.Signin("oidc", "ok")
	s.signedIn(w, r, next)
}

// truncate cuts s to at most n bytes, for echoing a value from a URL.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
