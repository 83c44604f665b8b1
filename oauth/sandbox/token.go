package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// verifierRE is a PKCE code verifier (RFC 7636 §4.1).
var verifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

func (s *Sandbox) serverHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", s.token)
	mux.HandleFunc("POST /oauth/revoke", s.revoke)
	mux.HandleFunc("GET /api/whoami", s.whoami)
	mux.HandleFunc("GET /api/notes", s.listNotes)
	mux.HandleFunc("POST /api/notes", s.addNote)
	return mux
}

// oauthError writes an RFC 6749 §5.2 error answer.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readForm parses a bounded form body.
func readForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return false
	}
	return true
}

// authenticateClient checks client_secret_basic (form-encoded per RFC 6749
// §2.3.1) or client_secret_post, one of them, in constant time.
func (s *Sandbox) authenticateClient(w http.ResponseWriter, r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	_, postedSecret := r.PostForm["client_secret"]
	switch {
	case basic && postedSecret:
		oauthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method")
		return false
	case basic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			id, secret = "", ""
		}
	default:
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == s.opts.ClientID && subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) == 1 {
		return true
	}
	if basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
	}
	oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
	return false
}

// token is the token endpoint: authorization_code and refresh_token.
func (s *Sandbox) token(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) || !s.authenticateClient(w, r) {
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		s.exchangeCode(w, r.PostForm)
	case "refresh_token":
		s.refreshToken(w, r.PostForm)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "use authorization_code or refresh_token")
	}
}

func (s *Sandbox) exchangeCode(w http.ResponseWriter, form url.Values) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	c, ok := s.codes[form.Get("code")]
	switch {
	case !ok:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown authorization code")
		return
	case c.used:
		// A replayed code may be a stolen one: end what it started.
		if g := s.grants[c.grantID]; g != nil {
			g.revoked = true
		}
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the authorization code was already used; its grant is revoked")
		return
	}
	c.used = true // single use, whatever happens next
	verifier := form.Get("code_verifier")
	switch {
	case now.After(c.expires):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the authorization code expired")
	case c.clientID != s.opts.ClientID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code was issued to another client")
	case form.Get("redirect_uri") != c.redirectURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request's")
	case !verifierRE.MatchString(verifier) || !challengeMatches(verifier, c.challenge):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the PKCE code_verifier does not match the code_challenge")
	default:
		c.grantID = newToken("sbx_grant_")
		s.grants[c.grantID] = &grant{scopes: c.scopes}
		s.issueLocked(w, c.grantID, c.scopes)
	}
}

func challengeMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

func (s *Sandbox) refreshToken(w http.ResponseWriter, form url.Values) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[form.Get("refresh_token")]
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown refresh token")
		return
	}
	g := s.grants[rt.grantID]
	switch {
	case g == nil || g.revoked:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the grant was revoked")
		return
	case rt.used:
		// Rotated out and presented again: someone holds a copy.
		g.revoked = true
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was already used; its grant is revoked")
		return
	}
	scopes := g.scopes
	if asked := form.Get("scope"); asked != "" {
		scopes = parseScopes(asked)
		for _, sc := range scopes {
			if !slices.Contains(g.scopes, sc) {
				scopes = nil
			}
		}
		if scopes == nil {
			oauthError(w, http.StatusBadRequest, "invalid_scope", "a refresh may only narrow the granted scopes")
			return
		}
	}
	rt.used = true
	s.refreshes.Add(1)
	s.issueLocked(w, rt.grantID, scopes)
}

// issueLocked issues an access token and a fresh refresh token for a grant
// and writes the token answer.
func (s *Sandbox) issueLocked(w http.ResponseWriter, grantID string, scopes []string) {
	now := s.opts.Now()
	s.pruneLocked(now)
	at, rt := newToken("sbx_at_"), newToken("sbx_rt_")
	s.access[at] = &accessToken{grantID: grantID, scopes: scopes, expires: now.Add(s.opts.AccessTokenTTL)}
	s.refresh[rt] = &refreshToken{grantID: grantID}
	s.issued.Add(1)
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  at,
		"token_type":    "Bearer",
		"expires_in":    int64(s.opts.AccessTokenTTL.Seconds()),
		"refresh_token": rt,
		"scope":         strings.Join(scopes, " "),
	})
}

// revoke is the RFC 7009 revocation endpoint: either token of a grant
// revokes the whole grant. Unknown tokens are not an error (§2.2).
func (s *Sandbox) revoke(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) || !s.authenticateClient(w, r) {
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is missing")
		return
	}
	s.mu.Lock()
	grantID := ""
	if at, ok := s.access[tok]; ok {
		grantID = at.grantID
	} else if rt, ok := s.refresh[tok]; ok {
		grantID = rt.grantID
	}
	if g := s.grants[grantID]; g != nil {
		g.revoked = true
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
