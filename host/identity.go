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
// session under the authorization server, else the local owner.
//
// With an external issuer (--trust-issuer) there is no session: the browser
// that opens a Connect link cannot prove whose it is, and the link alone
// names the subject. Honouring the link would let whoever holds one connect
// their upstream account to the subject it names: an attacker calls a tool,
// passes the link to a victim, and then acts with the victim's account.
// So every Connect page is refused (errNoPerson) in that mode; people's
// upstream grants must be made another way until alterhost can sign people
// in through the external issuer itself.
func (s *Server) httpSubject(r *http.Request) (string, error) {
	switch {
	case s.Auth != nil:
		if subject, ok := s.Auth.SessionSubject(r); ok {
			return subject, nil
		}
		return "", errNoPerson
	case s.Trust != nil:
		return "", errNoPerson
	}
	return LocalOwner, nil
}
