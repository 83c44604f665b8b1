package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/alterhost/alterhost/vault/store"
)

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
func (s *Server) SigninLink(ctx context.Context) (string, error) {
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

// signin is GET /signin?link=...&next=... (the printed link, opened) and
// POST /signin (the link pasted into the sign-in page). It takes the link
// and starts a session.
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
	const again = "Run alterhost signin-link on alterhost's machine for a fresh link."
	if link == "" {
		s.message(w, http.StatusBadRequest, "No sign-in link", again)
		return
	}
	l, err := s.store.TakeLink(r.Context(), hash(link), s.now())
	if errors.Is(err, store.ErrNotFound) {
		s.message(w, http.StatusGone, "This sign-in link was already used or has expired", again)
		return
	}
	if err != nil {
		s.pageError(w, "signin", err)
		return
	}
	// A Connect link is a single-use URL too, and tool results hand them out
	// to whoever reads them; it must never sign anyone in.
	if l.Provider != "" {
		s.message(w, http.StatusBadRequest, "This is a Connect link, not a sign-in link", again)
		return
	}
	if old, err := r.Cookie(s.cookieName()); err == nil {
		// Not fatal: the old session simply expires.
		_ = s.store.DeleteSession(r.Context(), hash(old.Value))
	}
	value, now := random(32), s.now()
	err = s.store.PutSession(r.Context(), store.Session{Hash: hash(value), Subject: l.Subject,
		CSRF: random(32), CreatedAt: now, ExpiresAt: now.Add(sessionTTL)})
	if err != nil {
		s.pageError(w, "signin", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: value, Path: "/", MaxAge: int(sessionTTL.Seconds()),
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	s.opts.Logger.Info("oauth: signed in", "subject", l.Subject)
	if safeNext(next) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.message(w, http.StatusOK, "Signed in",
		"You are signed in to alterhost in this browser for 12 hours. Return to your application and connect again.")
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

// safeNext reports whether next is a path on this server's authorize
// endpoint, the only place sign-in returns to. Anything else, //host,
// /\host, a scheme, is how an open redirect is made.
func safeNext(next string) bool {
	if !strings.HasPrefix(next, "/authorize?") || strings.ContainsAny(next, "\\\r\n\t") {
		return false
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Path == "/authorize"
}
