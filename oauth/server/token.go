package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/alterhost/alterhost/vault/store"
)

// Token prefixes tell alterhost's tokens apart in logs and secret
// scanners, and let Verify turn away anything else without a lookup.
const (
	accessPrefix  = "ah_at_"
	refreshPrefix = "ah_rt_"
)

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

// tokenError is an RFC 6749 §5.2 error with its HTTP status.
type tokenError struct {
	status      int
	code, desc  string
	basicFailed bool // answer 401 with a Basic challenge (RFC 6749 §5.2)
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func grantErr(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

func reqErr(code, desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: code, desc: desc}
}

func (s *Server) writeTokenError(w http.ResponseWriter, step string, err error) {
	var te *tokenError
	if !errors.As(err, &te) {
		s.serverError(w, step, err)
		return
	}
	if te.basicFailed {
		w.Header().Set("WWW-Authenticate", `Basic realm="alterhost"`)
	}
	writeJSON(w, te.status, oauthError{te.code, te.desc})
}

// readForm parses a form-encoded POST body; parameters in the query
// string are ignored, so no secret is taken from a URL that ends up in
// logs.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		return nil, &tokenError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "use POST"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, reqErr("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 && k != "resource" {
			return nil, reqErr("invalid_request", k+" appears more than once")
		}
	}
	return r.PostForm, nil
}

// authenticateClient identifies the client of a token or revocation
// request (RFC 6749 §2.3): a public client by client_id alone, a
// confidential one by its secret, in the Authorization header or the body.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (*client, error) {
	id, secret := form.Get("client_id"), form.Get("client_secret")
	basicID, basicSecret, basic := r.BasicAuth()
	if basic {
		if secret != "" {
			return nil, reqErr("invalid_request", "use one client authentication method")
		}
		// RFC 6749 §2.3.1: both parts are form-encoded inside Basic.
		var err1, err2 error
		basicID, err1 = url.QueryUnescape(basicID)
		basicSecret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil || (id != "" && id != basicID) {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed client credentials", basicFailed: true}
		}
		id, secret = basicID, basicSecret
	}
	fail := &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "unknown client or wrong credentials", basicFailed: basic}
	c, err := s.loadClient(r, id)
	if te, ok := metadataTokenError(err, basic); ok {
		return nil, te
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail
	}
	if err != nil {
		return nil, err
	}
	if c.public() {
		// A public client has no secret; one that sends one is confused
		// about what it registered as.
		if secret != "" || basic {
			return nil, fail
		}
		return c, nil
	}
	// Either method is accepted for a confidential client: both carry the
	// same secret, and clients that auto-detect try one, then the other.
	if secret == "" || c.SecretHash == nil || subtle.ConstantTimeCompare(hash(secret), c.SecretHash) != 1 {
		return nil, fail
	}
	return c, nil
}

// clientRequest begins a token or revocation request: the per-address
// rate limit, the form, and the client's authentication. ok is false when
// it has already answered.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request, endpoint string) (c *client, form url.Values, ok bool) {
	if !s.tokenIPLimit.allow(remoteIP(r)) {
		s.observeClientRefusal(r, endpoint, "rate_limited")
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusTooManyRequests, oauthError{"invalid_request", "too many requests; slow down"})
		return c, nil, false
	}
	form, err := readForm(w, r)
	if err == nil {
		c, err = s.authenticateClient(r, form)
	}
	if err != nil {
		s.observeClientRefusal(r, endpoint, errorOutcome(err))
		s.writeTokenError(w, endpoint, err)
		return c, nil, false
	}
	return c, form, true
}

// token is POST /token.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	c, form, ok := s.clientRequest(w, r, "token")
	if !ok {
		return
	}
	if !s.tokenLimit.allow(c.ID) {
		s.opts.Observer.TokenRequest(grantTypeLabel(form.Get("grant_type")), "rate_limited")
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusTooManyRequests, oauthError{"invalid_request", "too many requests for this client; slow down"})
		return
	}
	gt := form.Get("grant_type")
	var (
		resp tokenResponse
		err  error
	)
	switch gt {
	case "authorization_code":
		resp, err = s.redeemCode(r.Context(), c, form)
	case "refresh_token":
		if !slices.Contains(c.meta.GrantTypes, gt) {
			err = reqErr("unauthorized_client", "this client did not register the refresh_token grant")
			break
		}
		resp, err = s.refresh(r.Context(), c, form)
	case "":
		err = reqErr("invalid_request", "grant_type is required")
	default:
		err = reqErr("unsupported_grant_type", "use authorization_code or refresh_token")
	}
	s.opts.Observer.TokenRequest(grantTypeLabel(gt), errorOutcome(err))
	if err != nil {
		var te *tokenError
		if errors.As(err, &te) {
			s.opts.Logger.Info("oauth: token request refused", "client_id", c.ID, "grant_type", gt, "error", te.code, "reason", te.desc)
		}
		s.writeTokenError(w, "token", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// resourceParam reads the optional RFC 8707 resource of a token request.
// Given, it must be exactly the audience the grant was for: a token
// request cannot widen or move a grant to another resource.
func resourceParam(form url.Values, granted string) error {
	rs := form["resource"]
	if len(rs) > 1 {
		return reqErr("invalid_target", "give at most one resource")
	}
	if len(rs) == 1 && rs[0] != granted {
		return reqErr("invalid_target", "the resource differs from the one authorized")
	}
	return nil
}

func (s *Server) redeemCode(ctx context.Context, c *client, form url.Values) (tokenResponse, error) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	if code == "" {
		return tokenResponse{}, reqErr("invalid_request", "code is required")
	}
	if !validVerifier(verifier) {
		return tokenResponse{}, reqErr("invalid_request", "code_verifier is required: 43 to 128 unreserved characters")
	}
	// The checks and the minting run inside the redemption, so the tokens
	// are stored with the code's use: a replay, however early, finds and
	// revokes them. A check that fails still spends the code (see
	// store.AuthStore.RedeemAuthCode): a code presented with the wrong
	// client, redirect or verifier is no longer good for anyone.
	family := random(18)
	var resp tokenResponse
	ac, err := s.store.RedeemAuthCode(ctx, hash(code), family, s.now(), func(ac store.AuthCode) ([]store.Token, error) {
		if ac.ClientID != c.ID {
			return nil, grantErr("the code was issued to another client")
		}
		if form.Get("redirect_uri") != ac.RedirectURI {
			return nil, grantErr("redirect_uri differs from the authorization request's")
		}
		sum := sha256.Sum256([]byte(verifier))
		if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(ac.CodeChallenge)) != 1 {
			return nil, grantErr("code_verifier does not match the code_challenge")
		}
		if err := resourceParam(form, ac.Resource); err != nil {
			return nil, err
		}
		var ts []store.Token
		ts, resp = s.mint(c, store.Token{FamilyID: family, ClientID: c.ID, Subject: ac.Subject,
			Resource: ac.Resource, Scopes: ac.Scopes}, ac.Scopes)
		return ts, nil
	})
	switch {
	case errors.Is(err, store.ErrReused):
		// The store revoked what the first redemption issued: whoever holds
		// those tokens may be the thief.
		s.opts.Logger.Warn("oauth: authorization code replayed; its tokens are revoked", "client_id", c.ID, "family", ac.FamilyID)
		s.opts.Observer.TokenReuse("authorization_code")
		return tokenResponse{}, grantErr("the code was already used")
	case errors.Is(err, store.ErrNotFound):
		return tokenResponse{}, grantErr("unknown or expired code")
	case err != nil:
		return tokenResponse{}, err
	}
	return resp, nil
}

// validVerifier: RFC 7636 §4.1.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)) {
			return false
		}
	}
	return true
}

// mint makes an access token with accessScopes and, if the client may
// refresh, a refresh token with the grant's full scopes (RFC 6749 §6: a
// narrowed request narrows the access token, not the grant), from base. It
// returns them to be stored and the response that hands them out.
func (s *Server) mint(c *client, base store.Token, accessScopes []string) ([]store.Token, tokenResponse) {
	now := s.now()
	access, refresh := accessPrefix+random(32), ""
	at := base
	at.Hash, at.Kind, at.Scopes, at.CreatedAt, at.ExpiresAt = hash(access), store.AccessToken, accessScopes, now, now.Add(s.opts.AccessTTL)
	ts := []store.Token{at}
	if slices.Contains(c.meta.GrantTypes, "refresh_token") {
		refresh = refreshPrefix + random(32)
		rt := base
		rt.Hash, rt.Kind, rt.CreatedAt, rt.ExpiresAt = hash(refresh), store.RefreshToken, now, now.Add(s.opts.RefreshTTL)
		ts = append(ts, rt)
	}
	return ts, tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(s.opts.AccessTTL.Seconds()),
		RefreshToken: refresh, Scope: strings.Join(accessScopes, " ")}
}

func (s *Server) refresh(ctx context.Context, c *client, form url.Values) (tokenResponse, error) {
	raw := form.Get("refresh_token")
	if !strings.HasPrefix(raw, refreshPrefix) {
		return tokenResponse{}, grantErr("unknown refresh token")
	}
	h := hash(raw)
	// Looked up before rotating, so another client presenting this token
	// (stolen, or mixed up) cannot spend it.
	old, err := s.store.GetToken(ctx, h, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return tokenResponse{}, grantErr("unknown, expired or revoked refresh token")
	}
	if err != nil {
		return tokenResponse{}, err
	}
	if old.Kind != store.RefreshToken || old.ClientID != c.ID {
		return tokenResponse{}, grantErr("unknown, expired or revoked refresh token")
	}
	if err := resourceParam(form, old.Resource); err != nil {
		return tokenResponse{}, err
	}
	scopes := old.Scopes
	if req := form.Get("scope"); req != "" {
		scopes = dedupe(strings.Fields(req))
		for _, sc := range scopes {
			if !slices.Contains(old.Scopes, sc) {
				return tokenResponse{}, reqErr("invalid_scope", "a refresh cannot add scope "+sc)
			}
		}
	}
	base := store.Token{FamilyID: old.FamilyID, ClientID: c.ID, Subject: old.Subject, Resource: old.Resource, Scopes: old.Scopes}
	ts, resp := s.mint(c, base, scopes)
	_, err = s.store.RotateRefresh(ctx, h, s.now(), s.opts.RefreshGrace, ts)
	switch {
	case errors.Is(err, store.ErrReused):
		s.opts.Logger.Warn("oauth: refresh token reused after rotation; its family is revoked", "client_id", c.ID, "family", old.FamilyID)
		s.opts.Observer.TokenReuse("refresh_token")
		return tokenResponse{}, grantErr("the refresh token was already used")
	case errors.Is(err, store.ErrNotFound):
		return tokenResponse{}, grantErr("unknown, expired or revoked refresh token")
	case err != nil:
		return tokenResponse{}, err
	}
	return resp, nil
}

// revoke is POST /revoke (RFC 7009). It revokes the family of the token
// if the authenticated client owns it. Otherwise it answers 200 all the
// same: the RFC asks for that, and it tells a prober nothing about
// whether a token exists.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	c, form, ok := s.clientRequest(w, r, "revoke")
	if !ok {
		return
	}
	raw := form.Get("token")
	if raw == "" {
		s.opts.Observer.Revocation("invalid_request")
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "token is required"})
		return
	}
	outcome := "ignored"
	if strings.HasPrefix(raw, accessPrefix) || strings.HasPrefix(raw, refreshPrefix) {
		now := s.now()
		t, err := s.store.GetToken(r.Context(), hash(raw), now)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			s.opts.Observer.Revocation("server_error")
			s.serverError(w, "revoke", err)
			return
		case t.ClientID == c.ID:
			if err := s.store.RevokeFamily(r.Context(), t.FamilyID, now); err != nil {
				s.opts.Observer.Revocation("server_error")
				s.serverError(w, "revoke", err)
				return
			}
			outcome = "revoked"
			s.opts.Logger.Info("oauth: tokens revoked", "client_id", c.ID, "family", t.FamilyID)
		default:
			s.opts.Logger.Warn("oauth: a client tried to revoke another client's token", "client_id", c.ID)
		}
	}
	s.opts.Observer.Revocation(outcome)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// Verify checks an access token presented to /mcp. It is a go-sdk
// auth.TokenVerifier: use it with auth.RequireBearerToken, which takes the
// token from the Authorization header only. The token must be one this
// server issued, unexpired, unrevoked, and for this server's resource: a
// token minted for another audience is not accepted here even if it is
// otherwise valid. Failures wrap auth.ErrInvalidToken; a failing store
// does not, so an outage is a 500, not a 401 that sends every client back
// through authorization.
func (s *Server) Verify(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
	if !strings.HasPrefix(token, accessPrefix) {
		return nil, fmt.Errorf("%w: not an alterhost access token", auth.ErrInvalidToken)
	}
	t, err := s.store.GetToken(ctx, hash(token), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown, expired or revoked", auth.ErrInvalidToken)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth server: verifying a token: %w", err)
	}
	if t.Kind != store.AccessToken {
		return nil, fmt.Errorf("%w: not an access token", auth.ErrInvalidToken)
	}
	if t.Resource != s.opts.Resource {
		return nil, fmt.Errorf("%w: the token is for another resource", auth.ErrInvalidToken)
	}
	return &auth.TokenInfo{
		Scopes:     slices.Clone(t.Scopes),
		Expiration: t.ExpiresAt,
		UserID:     t.Subject,
		Extra:      map[string]any{"client_id": t.ClientID},
	}, nil
}
