package host

import (
	"context"
	"errors"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// LocalOwner is the subject alterhost acts for in stdio mode and with
// --no-auth, and the person who signs in in owner mode: the one person who
// runs it.
const LocalOwner = "owner"

// errNoPerson is returned when a request names no signed-in person.
var errNoPerson = errors.New("no signed-in person: sign in to alterhost first")

// toolSubject names the person a tool call acts for: the subject of its
// bearer token, whether alterhost or an external issuer (--trust-issuer)
// signed it, else the local owner.
func (s *Server) toolSubject(_ context.Context, req *mcp.CallToolRequest) (string, error) {
	if s.verify == nil {
		return LocalOwner, nil
	}
	if req.Extra != nil && req.Extra.TokenInfo != nil && req.Extra.TokenInfo.UserID != "" {
		return req.Extra.TokenInfo.UserID, nil
	}
	return "", errNoPerson
}

// httpSubject names the person a browser request comes from: the signed-in
// session, else the local owner when there is no sign-in at all.
//
// With an external issuer (--trust-issuer) alterhost has a session only if
// it signs browsers in through that same issuer (Config.OIDC): the
// session's subject is then the subject the issuer's tokens carry. Without
// it, the browser that opens a Connect link cannot prove whose it is, and
// the link alone names the subject. Honouring the link would let whoever
// holds one connect their upstream account to the subject it names: an
// attacker calls a tool, passes the link to a victim, and then acts with
// the victim's account. So every Connect page is refused (errNoPerson) in
// that mode.
func (s *Server) httpSubject(r *http.Request) (string, error) {
	switch {
	case s.Signin != nil:
		if subject, ok := s.Signin.SessionSubject(r); ok {
			return subject, nil
		}
		return "", errNoPerson
	case s.Auth != nil || s.Trust != nil:
		return "", errNoPerson
	}
	return LocalOwner, nil
}

// signinURL is where a page sends a browser that is not signed in, to
// come back to next (a path on this server) afterwards; "" when alterhost
// signs no browser in (stdio, --no-auth, an external issuer without OIDC).
func (s *Server) signinURL(next string) string {
	if s.Signin == nil {
		return ""
	}
	return s.Signin.SigninURL(next)
}
