// Package connect runs the flow through which a person connects an upstream
// account: a single-use Connect URL, an OAuth authorization-code flow with
// PKCE and a state bound to that person and browser, the code exchange, and
// the grant stored in the vault. It also disconnects accounts.
package connect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/store"
)

// Provider is what the flow needs of an upstream beyond what the vault
// needs; oauth/provider implements it.
type Provider interface {
	vault.Provider
	DisplayName() string
	// AuthCodeURL is the upstream consent page for this flow.
	AuthCodeURL(state, codeChallenge, redirectURL string, scopes []string) string
	// Exchange trades the authorization code for a token.
	Exchange(ctx context.Context, code, codeVerifier, redirectURL string) (vault.Token, error)
}

// defaultScoper is implemented by providers with scopes asked for at every
// consent (oauth/provider's Provider is one): they belong in the state, so
// the grant records them when the token response does not list scopes.
type defaultScoper interface{ Scopes() []string }

// Service serves the Connect routes and mints Connect URLs (it is the
// vault's Linker).
type Service struct {
	Store     store.Store
	Vault     *vault.Vault
	Providers vault.Providers
	// BaseURL is alterhost's external URL, e.g. http://127.0.0.1:8080.
	BaseURL *url.URL
	// Subject names the person an HTTP request comes from. It is the one
	// place identity enters.
	Subject func(r *http.Request) (string, error)
	// SigninURL is where a browser that is not signed in goes to sign in
	// and come back to next. Nil, or "" from it: such a browser is refused.
	SigninURL func(next string) string
	Logger    *slog.Logger
	// LinkTTL and FlowTTL bound how long a Connect URL and a started flow
	// stay usable.
	LinkTTL, FlowTTL time.Duration
	// Connected, if set, hears that subject just connected provider, so a
	// client waiting on that (a URL elicitation) can go on.
	Connected func(ctx context.Context, subject, provider string)
	Now       func() time.Time
	// Observer, if set, hears of flows started, completed and failed.
	Observer Observer
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// random returns n random bytes, base64url-encoded.
func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// ConnectURL mints a fresh single-use URL through which subject grants
// scopes at provider. Only its hash is stored.
func (s *Service) ConnectURL(ctx context.Context, subject, provider string, scopes []string) (string, error) {
	token := random(32)
	now := s.now()
	ttl := s.LinkTTL
	if ttl == 0 {
		ttl = 15 * time.Minute
	}
	err := s.Store.PutLink(ctx, store.Link{TokenHash: hash(token), Subject: subject, Provider: provider,
		Scopes: slices.Clone(scopes), CreatedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return "", err
	}
	u := s.BaseURL.JoinPath("connect", provider)
	u.RawQuery = url.Values{"link": {token}}.Encode()
	return u.String(), nil
}

// Routes mounts the flow on r:
//
//	GET  /connect/{provider}?link=...     start (from a Connect URL)
//	GET  /connect/{provider}/callback     the upstream's redirect back
//	POST /connect/{provider}/disconnect   revoke and delete the grant
func (s *Service) Routes(r chi.Router) {
	r.Get("/connect/{provider}", s.start)
	r.Get("/connect/{provider}/callback", s.callback)
	r.Post("/connect/{provider}/disconnect", s.disconnect)
}

func (s *Service) provider(name string) (Provider, bool) {
	p, ok := s.Providers.Provider(name)
	if !ok {
		return nil, false
	}
	cp, ok := p.(Provider)
	return cp, ok
}

func (s *Service) redirectURL(provider string) string {
	return s.BaseURL.JoinPath("connect", provider, "callback").String()
}

// flowCookie names the cookie binding one flow to its browser. Each flow
// has its own, so two flows in one browser do not clobber each other.
func flowCookie(state string) string {
	return fmt.Sprintf("alterhost_flow_%x", hash(state)[:8])
}

func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "provider")
	// Sign in first, then come back: the link stays unspent until a
	// signed-in browser opens it, and is then checked against its person.
	if s.Subject != nil && s.SigninURL != nil {
		if _, err := s.Subject(r); err != nil {
			if u := s.SigninURL(r.URL.RequestURI()); u != "" {
				w.Header().Set("Cache-Control", "no-store")
				w.Header().Set("Referrer-Policy", "no-referrer")
				http.Redirect(w, r, u, http.StatusSeeOther)
				return
			}
		}
	}
	link, err := s.Store.TakeLink(r.Context(), hash(r.URL.Query().Get("link")), s.now())
	if errors.Is(err, store.ErrNotFound) {
		s.failed(name, "link_invalid")
		s.page(w, http.StatusGone, "This Connect link was already used or has expired",
			"Call the tool again to get a fresh link.")
		return
	}
	if err != nil {
		s.failed(name, "error")
		s.fail(w, "start", err)
		return
	}
	if link.Provider != name {
		s.failed(name, "link_invalid")
		s.page(w, http.StatusBadRequest, "This Connect link is for another provider", "Call the tool again to get a fresh link.")
		return
	}
	// The browser that connects an account must be the person's who asked:
	// otherwise a link passed on would connect someone else's account to
	// them.
	if s.Subject != nil {
		if who, err := s.Subject(r); err != nil || who != link.Subject {
			s.failed(name, "wrong_person")
			s.page(w, http.StatusForbidden, "This Connect link belongs to another person",
				"This browser is signed in to alterhost as someone else, or cannot sign in here. "+
					"Sign out, sign in as the person who called the tool, and call it again for a fresh link.")
			return
		}
	}
	p, ok := s.provider(name)
	if !ok {
		s.failed(name, "not_configured")
		s.page(w, http.StatusNotFound, "This provider is not configured", "Ask the operator of this alterhost to configure "+name+".")
		return
	}
	scopes := slices.Clone(link.Scopes)
	if d, ok := p.(defaultScoper); ok {
		for _, sc := range d.Scopes() {
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	state, browser, verifier := random(32), random(32), oauth2.GenerateVerifier()
	now := s.now()
	ttl := s.FlowTTL
	if ttl == 0 {
		ttl = 10 * time.Minute
	}
	err = s.Store.PutConnectState(r.Context(), store.ConnectState{
		StateHash: hash(state), BrowserHash: hash(browser), Subject: link.Subject, Provider: name,
		Scopes: scopes, Verifier: verifier, CreatedAt: now, ExpiresAt: now.Add(ttl),
	})
	if err != nil {
		s.failed(name, "error")
		s.fail(w, "start", err)
		return
	}
	s.started(name)
	http.SetCookie(w, &http.Cookie{
		Name: flowCookie(state), Value: browser, Path: "/connect/" + name, MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: s.BaseURL.Scheme == "https", SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, p.AuthCodeURL(state, oauth2.S256ChallengeFromVerifier(verifier), s.redirectURL(name), scopes), http.StatusFound)
}

func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "provider")
	q := r.URL.Query()
	state := q.Get("state")
	st, err := s.Store.TakeConnectState(r.Context(), hash(state), s.now())
	if errors.Is(err, store.ErrNotFound) {
		s.failed(name, "state_invalid")
		s.page(w, http.StatusBadRequest, "This sign-in was already completed or has expired",
			"Call the tool again to get a fresh Connect link.")
		return
	}
	if err != nil {
		s.failed(name, "error")
		s.fail(w, "callback", err)
		return
	}
	cookie, err := r.Cookie(flowCookie(state))
	if err != nil || subtle.ConstantTimeCompare(hash(cookie.Value), st.BrowserHash) != 1 {
		s.failed(name, "wrong_browser")
		s.page(w, http.StatusForbidden, "This sign-in was started in another browser",
			"Open the Connect link in the browser you will finish in.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookie.Name, Path: "/connect/" + name, MaxAge: -1})
	if st.Provider != name {
		s.failed(name, "state_invalid")
		s.page(w, http.StatusBadRequest, "The provider does not match this sign-in", "Call the tool again to get a fresh Connect link.")
		return
	}
	if e := q.Get("error"); e != "" {
		s.failed(name, "denied")
		s.page(w, http.StatusOK, "Nothing was connected", "The provider reported: "+e+". Call the tool again to retry.")
		return
	}
	p, ok := s.provider(name)
	if !ok {
		s.failed(name, "not_configured")
		s.page(w, http.StatusNotFound, "This provider is not configured", "")
		return
	}
	tok, err := p.Exchange(r.Context(), q.Get("code"), st.Verifier, s.redirectURL(name))
	if err != nil {
		s.logger().Warn("connect: code exchange failed", "provider", name, "error", err)
		s.failed(name, "exchange_failed")
		s.page(w, http.StatusBadGateway, "The provider did not accept the sign-in", "Call the tool again to get a fresh Connect link.")
		return
	}
	if len(tok.Scopes) == 0 {
		tok.Scopes = st.Scopes
	}
	if _, err := s.Vault.Save(r.Context(), st.Subject, name, tok); err != nil {
		s.failed(name, "error")
		s.fail(w, "callback", err)
		return
	}
	s.completed(name)
	if s.Connected != nil {
		s.Connected(r.Context(), st.Subject, name)
	}
	who := ""
	if tok.AccountID != "" {
		who = " as " + tok.AccountID
	}
	s.page(w, http.StatusOK, "Connected "+p.DisplayName()+who,
		"Granted: "+strings.Join(tok.Scopes, ", ")+". You can close this page and return to your client.")
}

func (s *Service) disconnect(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "provider")
	subject, err := s.Subject(r)
	if err != nil {
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	err = s.Vault.Disconnect(r.Context(), subject, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.page(w, http.StatusNotFound, "No "+name+" account is connected", "")
	case err != nil:
		s.fail(w, "disconnect", err)
	default:
		s.page(w, http.StatusOK, "Disconnected "+name, "Tools will ask you to connect again before they use it.")
	}
}

// fail logs err and shows a page that reveals nothing of it.
func (s *Service) fail(w http.ResponseWriter, step string, err error) {
	s.logger().Error("connect: "+step+" failed", "error", err)
	s.page(w, http.StatusInternalServerError, "Something went wrong", "Try again; if it keeps failing, ask the operator to check alterhost's log.")
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}} · alterhost</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}</style>
</head><body><h1>{{.Title}}</h1>{{if .Detail}}<p>{{.Detail}}</p>{{end}}</body></html>
`))

func (s *Service) page(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	pageTemplate.Execute(w, struct{ Title, Detail string }{title, detail})
}
