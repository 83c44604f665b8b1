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
// bearer token under the authorization server, else the local owner.
func (s *Server) toolSubject(_ context.Context, req *mcp.CallToolRequest) (string, error) {
	if s.Auth == nil {
		return LocalOwner, nil
	}
	if req.Extra != nil && req.Extra.TokenInfo != nil && req.Extra.TokenInfo.UserID != "" {
		return req.Extra.TokenInfo.UserID, nil
	}
	return "", errNoPerson
}

// httpSubject names the person a browser request comes from: the signed-in
// session under the authorization server, else the local owner.
func (s *Server) httpSubject(r *http.Request) (string, error) {
	if s.Auth == nil {
		return LocalOwner, nil
	}
	if subject, ok := s.Auth.SessionSubject(r); ok {
		return subject, nil
	}
	return "", errNoPerson
}
