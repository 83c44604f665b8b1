package server

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/alterhost/alterhost/vault/store"
)

// authRequest is a checked authorization request.
type authRequest struct {
	client      *client
	redirectURI string
	state       string
	challenge   string
	resource    string
	scopes      []string
}

// params are the request as the consent form carries it to the POST.
func (a *authRequest) params() []param {
	return []param{
		{"response_type", "code"},
		{"client_id", a.client.ID},
		{"redirect_uri", a.redirectURI},
		{"state", a.state},
		{"code_challenge", a.challenge},
		{"code_challenge_method", "S256"},
		{"resource", a.resource},
		{"scope", strings.Join(a.scopes, " ")},
	}
}

// checkAuthRequest validates an authorization request (the query of GET
// /authorize, or the consent form). Until the client and its redirect URI
// are known good, errors are pages: redirecting to an unchecked URI would
// make this server an open redirector, and a phishing aid. After, errors
// go back to the client (RFC 6749 §4.1.2.1). ok=false: the response is
// written.
func (s *Server) checkAuthRequest(w http.ResponseWriter, r *http.Request, q url.Values) (*authRequest, bool) {
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(q[k]) > 1 {
			s.message(w, http.StatusBadRequest, "This sign-in request is malformed", k+" appears more than once.")
			return nil, false
		}
	}
	c, err := s.loadClient(r, q.Get("client_id"))
	if s.metadataErrorPage(w, err) {
		return nil, false
	}
	if errors.Is(err, store.ErrNotFound) {
		s.message(w, http.StatusBadRequest, "Unknown client",
			"The application that sent you here is not registered with this alterhost. Start again from the application.")
		return nil, false
	}
	if err != nil {
		s.pageError(w, "authorize", err)
		return nil, false
	}
	// OAuth 2.1 lets a client with one redirect URI omit it; alterhost asks
	// for it always, so the token request's comparison is never skipped.
	redirectURI, ok := c.matchRedirect(q.Get("redirect_uri"))
	if !ok {
		s.message(w, http.StatusBadRequest, "Unregistered redirect address",
			"The application asked to send you to an address it did not register, so alterhost will not send you there.")
		return nil, false
	}
	a := &authRequest{client: c, redirectURI: redirectURI, state: q.Get("state")}
	fail := func(code, desc string) (*authRequest, bool) {
		s.redirectError(w, r, a, code, desc)
		return nil, false
	}
	for _, k := range []string{"response_type", "state", "code_challenge", "code_challenge_method", "resource", "scope"} {
		if len(q[k]) > 1 {
			if k == "resource" {
				// One token, one audience: RFC 8707 allows several resources,
				// alterhost has only one.
				return fail("invalid_target", "give exactly one resource")
			}
			return fail("invalid_request", k+" appears more than once")
		}
	}
	if rt := q.Get("response_type"); rt != "code" {
		return fail("unsupported_response_type", "response_type must be code")
	}
	// PKCE S256 is mandatory (OAuth 2.1, MCP authorization): without it a
	// stolen code is as good as a token. plain protects nothing that S256
	// does not, and every client that supports PKCE supports S256.
	if q.Get("code_challenge_method") != "S256" {
		return fail("invalid_request", "PKCE with code_challenge_method S256 is required")
	}
	a.challenge = q.Get("code_challenge")
	if !validChallenge(a.challenge) {
		return fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)")
	}
	a.resource = q.Get("resource")
	if a.resource == "" {
		return fail("invalid_target", "resource is required; use "+s.opts.Resource)
	}
	if a.resource != s.opts.Resource {
		return fail("invalid_target", "this server issues tokens only for "+s.opts.Resource)
	}
	allowed := s.opts.Scopes
	if c.meta.Scope != "" {
		allowed = strings.Fields(c.meta.Scope)
	}
	a.scopes = dedupe(strings.Fields(q.Get("scope")))
	if len(a.scopes) == 0 {
		a.scopes = slices.Clone(allowed)
	}
	for _, sc := range a.scopes {
		if !slices.Contains(allowed, sc) {
			return fail("invalid_scope", "unsupported scope "+sc)
		}
	}
	return a, true
}

// validChallenge: an S256 challenge is the base64url (unpadded) SHA-256
// of the verifier: 43 characters of the base64url alphabet.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// redirectResponse sends the browser back to the client with params, plus
// state and iss (RFC 9207: the client learns which server answered, so a
// mix-up attack cannot feed it another server's code).
func (s *Server) redirectResponse(w http.ResponseWriter, r *http.Request, a *authRequest, params url.Values) {
	if a.state != "" {
		params.Set("state", a.state)
	}
	params.Set("iss", s.issuer)
	// Appended, not merged, so the client's own query stays byte for byte.
	target := a.redirectURI
	if strings.Contains(target, "?") {
		target += "&" + params.Encode()
	} else {
		target += "?" + params.Encode()
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
}

func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, a *authRequest, code, desc string) {
	s.redirectResponse(w, r, a, url.Values{"error": {code}, "error_description": {desc}})
}

// authorize is GET /authorize: check the request, then the consent page,
// or first sign-in: the sign-in page in owner mode, the OIDC provider in
// OIDC mode, either returning here.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	a, ok := s.checkAuthRequest(w, r, r.URL.Query())
	if !ok {
		return
	}
	sess, ok, err := s.session(r)
	if err != nil {
		s.pageError(w, "authorize", err)
		return
	}
	if !ok {
		if s.oidc != nil {
			s.startOIDC(w, r, r.URL.RequestURI())
			return
		}
		s.render(w, http.StatusOK, "", "signin", signinPage{Title: "Sign in to alterhost", Next: r.URL.RequestURI()})
		return
	}
	s.render(w, http.StatusOK, formTarget(a.redirectURI), "consent", s.consentPage(r, a, sess))
}

func (s *Server) consentPage(r *http.Request, a *authRequest, sess store.Session) consentPage {
	p := consentPage{
		Title: "Allow " + a.client.name() + "?", ClientName: a.client.name(), ClientID: a.client.ID,
		Subject: sess.Subject, Name: sess.Name, Scopes: a.scopes, CSRF: sess.CSRF, Params: a.params(),
		RefreshDays: int(s.opts.RefreshTTL.Hours() / 24),
	}
	u, _ := url.Parse(a.redirectURI)
	switch {
	case u.Scheme == "http":
		p.Loopback, p.RedirectHost = true, u.Host
	case u.Scheme == "https":
		p.RedirectHost = u.Hostname()
	default:
		p.Native, p.RedirectHost = true, u.Scheme+":"
	}
	var providers []ProviderScopes
	if s.opts.Providers != nil {
		providers = s.opts.Providers()
	}
	for _, pr := range providers {
		v := providerView{DisplayName: pr.DisplayName, Scopes: pr.Scopes}
		if v.DisplayName == "" {
			v.DisplayName = pr.Name
		}
		if s.opts.Connect != nil {
			link, err := s.opts.Connect(r.Context(), sess.Subject, pr.Name, pr.Scopes)
			if err != nil {
				// The page is still useful without the button; the tool will
				// offer a Connect link when it needs one.
				s.opts.Logger.Warn("oauth: minting a Connect link for the consent page failed", "provider", pr.Name, "error", err)
			} else {
				v.ConnectURL = link
			}
		}
		p.Providers = append(p.Providers, v)
	}
	return p
}

// formTarget is the CSP source for the redirect URI the consent form's
// POST answers with: its origin, or for a private-use scheme the scheme.
// CSP host sources cannot express IPv6 literals, so [::1] gets the http:
// scheme; the page's one form has a fixed action, so this widens nothing
// an attacker can use.
func formTarget(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return ""
	}
	switch {
	case u.Scheme == "https" || u.Scheme == "http":
		if strings.HasPrefix(u.Host, "[") {
			return u.Scheme + ":"
		}
		return u.Scheme + "://" + u.Host
	default:
		return strings.ToLower(u.Scheme) + ":"
	}
}

// consent is POST /authorize: the consent form's answer.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.message(w, http.StatusBadRequest, "This form could not be read", "Start again from your application.")
		return
	}
	sess, ok, err := s.session(r)
	if err != nil {
		s.pageError(w, "consent", err)
		return
	}
	if !ok {
		s.message(w, http.StatusForbidden, "You are not signed in",
			"Your sign-in expired or this browser never signed in. Start again from your application.")
		return
	}
	// The session's CSRF token proves the form came from the consent page
	// this server rendered for this browser, not from another site posting
	// an approval in the person's name.
	if !csrfOK(r.PostForm.Get("csrf"), sess.CSRF) {
		s.message(w, http.StatusForbidden, "This approval did not come from alterhost's page",
			"Nothing was approved. Start again from your application.")
		return
	}
	a, ok := s.checkAuthRequest(w, r, r.PostForm)
	if !ok {
		return
	}
	switch r.PostForm.Get("decision") {
	case "approve":
	case "deny":
		s.opts.Observer.Authorization("denied")
		s.redirectError(w, r, a, "access_denied", "the person denied the request")
		return
	default:
		s.message(w, http.StatusBadRequest, "Approve or deny?", "Start again from your application.")
		return
	}
	code := random(32)
	now := s.now()
	err = s.store.PutAuthCode(r.Context(), store.AuthCode{
		CodeHash: hash(code), ClientID: a.client.ID, Subject: sess.Subject, RedirectURI: a.redirectURI,
		CodeChallenge: a.challenge, Resource: a.resource, Scopes: a.scopes,
		CreatedAt: now, ExpiresAt: now.Add(s.opts.CodeTTL),
	})
	if err != nil {
		s.pageError(w, "consent", err)
		return
	}
	s.opts.Logger.Info("oauth: authorization approved", "client_id", a.client.ID, "subject", sess.Subject,
		"scopes", a.scopes)
	s.opts.Observer.Authorization("approved")
	s.redirectResponse(w, r, a, url.Values{"code": {code}})
}
