package jwttest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// User is the person the provider's /authorize signs in, without asking.
type User struct {
	Subject       string
	Email         string
	EmailVerified bool
}

// provider is the OpenID Connect side of an Issuer.
type provider struct {
	clients map[string]client
	user    User
	hook    func(claims map[string]any)
	codes   map[string]grant
	// logins counts authorizations, for tests that want to know whether
	// the provider was visited.
	logins atomic.Int64
}

type client struct {
	secret    string // "" for a public client
	redirects []string
}

// grant is an issued authorization code's binding.
type grant struct {
	clientID, redirect, challenge, nonce string
	user                                 User
	expires                              time.Time
}

// AddClient registers an OAuth client with id, secret ("" for a public
// client) and the redirect URIs /authorize accepts for it.
func (is *Issuer) AddClient(id, secret string, redirectURIs ...string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.op.clients == nil {
		is.op.clients = map[string]client{}
	}
	is.op.clients[id] = client{secret: secret, redirects: redirectURIs}
}

// SetUser makes u the person /authorize signs in from now on.
func (is *Issuer) SetUser(u User) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.op.user = u
}

// SetIDTokenHook makes f edit the claims of every ID token before it is
// signed, for tests of tokens that must be refused; nil removes it.
func (is *Issuer) SetIDTokenHook(f func(claims map[string]any)) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.op.hook = f
}

// Logins counts the authorizations /authorize has granted.
func (is *Issuer) Logins() int64 { return is.op.logins.Load() }

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.WriteHeader(status)
	writeJSON(w, map[string]string{"error": code, "error_description": desc})
}

// authorize is GET /authorize: it checks the request as a provider must
// and, the scripted user being always signed in and always consenting,
// redirects back with a code at once.
func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	is.mu.Lock()
	c, ok := is.op.clients[q.Get("client_id")]
	user := is.op.user
	is.mu.Unlock()
	redirect := q.Get("redirect_uri")
	if !ok || !slices.Contains(c.redirects, redirect) {
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		params.Set("state", q.Get("state"))
		http.Redirect(w, r, redirect+"?"+params.Encode(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		back(url.Values{"error": {"unsupported_response_type"}})
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		back(url.Values{"error": {"invalid_scope"}})
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		back(url.Values{"error": {"invalid_request"}, "error_description": {"PKCE S256 required"}})
		return
	case user.Subject == "":
		back(url.Values{"error": {"access_denied"}})
		return
	}
	code := randomString()
	is.mu.Lock()
	if is.op.codes == nil {
		is.op.codes = map[string]grant{}
	}
	is.op.codes[code] = grant{clientID: q.Get("client_id"), redirect: redirect, challenge: q.Get("code_challenge"),
		nonce: q.Get("nonce"), user: user, expires: time.Now().Add(time.Minute)}
	is.mu.Unlock()
	is.op.logins.Add(1)
	back(url.Values{"code": {code}})
}

// token is POST /token: the authorization-code grant, with the client's
// secret (Basic or in the body) and the PKCE verifier checked, answered
// with an ID token for the code's user.
func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	code := r.PostForm.Get("code")
	is.mu.Lock()
	c, known := is.op.clients[id]
	g, found := is.op.codes[code]
	delete(is.op.codes, code) // single use, whatever happens next
	hook := is.op.hook
	is.mu.Unlock()
	if !known || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "authorization_code only")
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !found || time.Now().After(g.expires) || g.clientID != id:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
		return
	case r.PostForm.Get("redirect_uri") != g.redirect:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verifier does not match")
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": is.URL, "sub": g.user.Subject, "aud": id, "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "email_verified": g.user.EmailVerified}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	if g.user.Email != "" {
		claims["email"] = g.user.Email
	}
	if hook != nil {
		hook(claims)
	}
	idToken, err := sign(is.Key("k1"), "JWT", claims)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, map[string]any{"access_token": randomString(), "token_type": "Bearer", "expires_in": 3600,
		"id_token": idToken, "scope": "openid email"})
}

func randomString() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
