package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/alterhost/alterhost/vault/store"
)

// ErrOIDCMode is SigninLink's answer in OIDC mode, where people sign in
// through the OpenID Connect provider and sign-in links do not exist.
var ErrOIDCMode = errors.New("sign-in links are off: this alterhost signs people in through OpenID Connect")

// cookieName is the session cookie's name. On https it has the __Host-
// prefix, which makes browsers refuse it unless it is Secure, host-only
// and for Path=/, so no sibling subdomain can plant or shadow it. On http
// (loopback development) that prefix would make browsers drop the cookie,
// and Secure cookies are not sent over http at all.
func (s *Server) cookieName() string {
	if s.secure {
		return "__Host-alterhost_session"
	}
	return "alterhost_session"
}

// SigninLink mints a single-use link through which the owner signs in to
// this server in a browser, valid for 15 minutes. Only its hash is stored.
// In OIDC mode it returns ErrOIDCMode.
func (s *Server) SigninLink(ctx context.Context) (string, error) {
	if s.oidc != nil {
		return "", ErrOIDCMode
	}
	token := random(32)
	now := s.now()
	// Provider "" marks a sign-in link; Connect links name their provider,
	// and /signin refuses them.
	err := s.store.PutLink(ctx, store.Link{TokenHash: hash(token), Subject: s.opts.Owner,
		CreatedAt: now, ExpiresAt: now.Add(signinLinkTTL)})
	if err != nil {
		return "", err
	}
	return s.endpoint("/signin") + "?" + url.Values{"link": {token}}.Encode(), nil
}

// session returns the browser's session, if it is signed in.
func (s *Server) session(r *http.Request) (store.Session, bool, error) {
	c, err := r.Cookie(s.cookieName())
	if err != nil || c.Value == "" {
		return store.Session{}, false, nil
	}
	sess, err := s.store.GetSession(r.Context(), hash(c.Value), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return store.Session{}, false, nil
	}
	if err != nil {
		return store.Session{}, false, err
	}
	return sess, true, nil
}

// signin is GET /signin?link=...&next=... (the printed link, opened: a
// page with a button that posts it) and POST /signin (that button, or the
// link pasted into the sign-in page), which takes the link and starts a
// session. GET /signin without a link is the sign-in page.
// In OIDC mode it sends the browser to the OIDC start instead, and
// refuses links without taking them.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	var link, next string
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			s.message(w, http.StatusBadRequest, "This form could not be read", "")
			return
		}
		link, next = linkToken(r.PostForm.Get("link")), r.PostForm.Get("next")
	} else {
		q := r.URL.Query()
		link, next = q.Get("link"), q.Get("next")
	}
	if s.oidc != nil {
		if link != "" || r.Method == http.MethodPost {
			s.message(w, http.StatusForbidden, "Sign-in links are off",
				"This alterhost signs people in through "+s.oidc.cfg.Issuer+". Start again from your application.")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, s.SigninURL(next), http.StatusSeeOther)
		return
	}
	const again = "Run alterhost signin-link on alterhost's machine for a fresh link."
	if r.Method == http.MethodGet && link != "" {
		// Opening the link only asks: chat apps and mail scanners fetch
		// links to preview them, and a GET that signed in would spend the
		// link on them. The POST is what uses it.
		page := signinPage{Title: "Sign in to alterhost", Link: link}
		if safeNext(next) {
			page.Next = next
		}
		s.render(w, http.StatusOK, "", "signin-confirm", page)
		return
	}
	if link == "" {
		if r.Method == http.MethodGet {
			page := signinPage{Title: "Sign in to alterhost"}
			if safeNext(next) {
				page.Next = next
			}
			s.render(w, http.StatusOK, "", "signin", page)
			return
		}
		s.message(w, http.StatusBadRequest, "No sign-in link", again)
		return
	}
	l, err := s.store.TakeLink(r.Context(), hash(link), s.now())
	if errors.Is(err, store.ErrNotFound) {
		s.opts.Observer.Signin("link", "link_invalid")
		s.message(w, http.StatusGone, "This sign-in link was already used or has expired", again)
		return
	}
	if err != nil {
		s.opts.Observer.Signin("link", "error")
		s.pageError(w, "signin", err)
		return
	}
	// A Connect link is a single-use URL too, and tool results hand them out
	// to whoever reads them; it must never sign anyone in.
	if l.Provider != "" {
		s.opts.Observer.Signin("link", "wrong_link")
		s.message(w, http.StatusBadRequest, "This is a Connect link, not a sign-in link", again)
		return
	}
	if err := s.startSession(w, r, l.Subject, ""); err != nil {
		s.opts.Observer.Signin("link", "error")
		s.pageError(w, "signin", err)
		return
	}
	s.opts.Logger.Info("oauth: signed in", "subject", l.Subject)
	s.opts.Observer.Signin("link", "ok")
	s.signedIn(w, r, next)
}

// startSession signs the browser in as subject: a fresh session (the old
// one, if any, is ended, so a planted cookie is never promoted) and its
// cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, subject, name string) error {
	if old, err := r.Cookie(s.cookieName()); err == nil {
		// Not fatal: the old session simply expires.
		_ = s.store.DeleteSession(r.Context(), hash(old.Value))
	}
	value, now := random(32), s.now()
	err := s.store.PutSession(r.Context(), store.Session{Hash: hash(value), Subject: subject, Name: name,
		CSRF: random(32), CreatedAt: now, ExpiresAt: now.Add(sessionTTL)})
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: value, Path: "/", MaxAge: int(sessionTTL.Seconds()),
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// signedIn answers a successful sign-in: back to next if it is a place
// sign-in may return to, else a page saying so.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request, next string) {
	if safeNext(next) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.message(w, http.StatusOK, "Signed in",
		"You are signed in to alterhost in this browser for 12 hours. Return to your application and connect again.")
}

// signout is POST /signout, the consent page's "Not you?" form. It ends
// the browser's session if the form carries that session's CSRF token, so
// no other site can sign a person out (and then in as someone else).
func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.message(w, http.StatusBadRequest, "This form could not be read", "")
		return
	}
	sess, ok, err := s.session(r)
	if err != nil {
		s.pageError(w, "signout", err)
		return
	}
	if !ok {
		s.clearSessionCookie(w)
		s.message(w, http.StatusOK, "You are not signed in", "This browser has no alterhost session to end.")
		return
	}
	if !csrfOK(r.PostForm.Get("csrf"), sess.CSRF) {
		s.message(w, http.StatusForbidden, "This sign-out did not come from alterhost's page",
			"You are still signed in.")
		return
	}
	if err := s.store.DeleteSession(r.Context(), sess.Hash); err != nil {
		s.pageError(w, "signout", err)
		return
	}
	s.clearSessionCookie(w)
	s.opts.Logger.Info("oauth: signed out", "subject", sess.Subject)
	detail := "Start again from your application to sign in as someone else."
	if s.oidc != nil {
		detail = "You may still be signed in at " + s.oidc.cfg.Issuer +
			"; sign out there too before signing in as someone else."
	}
	s.message(w, http.StatusOK, "Signed out", detail)
}

func (s *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Path: "/", MaxAge: -1,
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// csrfOK compares a form's CSRF token with the session's in constant
// time; an empty session token matches nothing.
func csrfOK(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// SigninURL is where a browser that is not signed in goes to sign in and
// then come back to next (a path on this server that safeNext accepts;
// anything else is dropped): in owner mode the sign-in page, in OIDC mode
// the start of the OIDC sign-in. The Connect pages send people there.
func (s *Server) SigninURL(next string) string {
	path := "/signin"
	if s.oidc != nil {
		path = oidcStartPath
	}
	u := s.endpoint(path)
	if safeNext(next) {
		u += "?" + url.Values{"next": {next}}.Encode()
	}
	return u
}

// linkToken accepts a pasted sign-in link whole, or just its token.
func linkToken(v string) string {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "link=") {
		if u, err := url.Parse(v); err == nil {
			return u.Query().Get("link")
		}
	}
	return v
}

// connectPath is the path of a Connect link: /connect/ and a provider
// name, as oauth/provider allows them.
var connectPath = regexp.MustCompile(`^/connect/[a-z0-9][a-z0-9_.-]{0,63}$`)

// safeNext reports whether next is a place sign-in may return to: a path
// on this server's authorize endpoint, or a Connect link
// (/connect/PROVIDER?link=..., nothing else in its query). Anything else,
// //host, /\host, a scheme, is how an open redirect is made.
func safeNext(next string) bool {
	if strings.ContainsAny(next, "\\\r\n\t ") || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return false
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Fragment != "" || u.RawPath != "" {
		return false
	}
	switch {
	case u.Path == "/authorize":
		return strings.HasPrefix(next, "/authorize?")
	case connectPath.MatchString(u.Path):
		q, err := url.ParseQuery(u.RawQuery)
		return err == nil && len(q) == 1 && len(q["link"]) == 1 && q.Get("link") != ""
	}
	return false
}
