package host

import (
	"context"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// LocalOwner is the subject alterhost acts for in stdio mode and with
// --no-auth: the one person who runs it. The OAuth server will replace
// this with the signed-in person.
const LocalOwner = "owner"

// subject is the single source of identity for MCP calls and for the
// Connect pages. Today every request is the local owner's.
func (s *Server) subject(context.Context) (string, error) { return LocalOwner, nil }

func (s *Server) toolSubject(ctx context.Context, _ *mcp.CallToolRequest) (string, error) {
	return s.subject(ctx)
}

func (s *Server) httpSubject(r *http.Request) (string, error) { return s.subject(r.Context()) }
