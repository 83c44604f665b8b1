package server

import (
	"errors"
	"net/http"
)

// Observer hears what the authorization server does, for metrics
// (host/metrics implements it). Every argument is a word from a small
// fixed set; none names a person, a client or a token. Its methods must be
// quick and safe for concurrent use.
type Observer interface {
	// Registration reports a dynamic registration: "ok", "rate_limited",
	// an RFC 7591 error code, or "server_error".
	Registration(outcome string)
	// MetadataFetch reports a fetch of a Client ID Metadata Document:
	// "ok", "rate_limited", "unfetchable", "unacceptable" or "error".
	MetadataFetch(outcome string)
	// Authorization reports a consent decision: "approved" or "denied".
	Authorization(decision string)
	// TokenRequest reports a token request: grantType is
	// "authorization_code", "refresh_token" or "other"; outcome is "ok",
	// "rate_limited", an RFC 6749 error code, or "server_error".
	TokenRequest(grantType, outcome string)
	// TokenReuse reports a replayed "authorization_code" or a reused
	// "refresh_token", whose family was revoked for it.
	TokenReuse(kind string)
	// Revocation reports a revocation request: "revoked", "ignored" (not
	// a token of the client's), "rate_limited", an error code, or
	// "server_error".
	Revocation(outcome string)
	// Signin reports a sign-in: mode "link" or "oidc"; outcome "ok" or a
	// word for why not.
	Signin(mode, outcome string)
}

type nopObserver struct{}

func (nopObserver) Registration(string)         {}
func (nopObserver) MetadataFetch(string)        {}
func (nopObserver) Authorization(string)        {}
func (nopObserver) TokenRequest(string, string) {}
func (nopObserver) TokenReuse(string)           {}
func (nopObserver) Revocation(string)           {}
func (nopObserver) Signin(string, string)       {}

// grantTypeLabel keeps a client's grant_type to the few values worth a
// label: anything else a client sends is "other".
func grantTypeLabel(gt string) string {
	switch gt {
	case "authorization_code", "refresh_token":
		return gt
	}
	return "other"
}

// errorOutcome is the outcome word of a token or revocation request that
// returned err: "ok" for nil, its OAuth error code, or server_error when
// the server failed.
func errorOutcome(err error) string {
	if err == nil {
		return "ok"
	}
	var te *tokenError
	if errors.As(err, &te) {
		return te.code
	}
	return "server_error"
}

// observeClientRefusal reports a token or revocation request that
// clientRequest refused before its endpoint saw it. The grant type comes
// from the parsed body only (none yet when rate limited), never the query.
func (s *Server) observeClientRefusal(r *http.Request, endpoint, outcome string) {
	if endpoint == "revoke" {
		s.opts.Observer.Revocation(outcome)
		return
	}
	s.opts.Observer.TokenRequest(grantTypeLabel(r.PostForm.Get("grant_type")), outcome)
}
