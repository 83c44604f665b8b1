package host

import (
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"
)

// requireToken guards h with the go-sdk's bearer-token check and completes
// its challenges with RFC 6750 error codes: the SDK says where to sign in
// and which scope is needed, but not what was wrong with the request.
func requireToken(verify auth.TokenVerifier, resourceMetadata string, scopes []string, h http.Handler) http.Handler {
	guarded := auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{
		ResourceMetadataURL: resourceMetadata, Scopes: scopes,
	})(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		guarded.ServeHTTP(&challenge{ResponseWriter: w, presented: r.Header.Get("Authorization") != ""}, r)
	})
}

// challenge adds error="..." to the WWW-Authenticate header of a 401 or
// 403 as it is written.
type challenge struct {
	http.ResponseWriter
	presented bool // the request carried credentials
	written   bool
}

func (c *challenge) WriteHeader(code int) {
	if !c.written {
		c.written = true
		h := c.Header()
		if v := h.Get("WWW-Authenticate"); strings.HasPrefix(v, "Bearer ") {
			switch {
			case code == http.StatusForbidden:
				h.Set("WWW-Authenticate", `Bearer error="insufficient_scope", `+strings.TrimPrefix(v, "Bearer "))
			case code == http.StatusUnauthorized && c.presented:
				// A request without credentials gets no error code (RFC 6750 §3.1).
				h.Set("WWW-Authenticate", `Bearer error="invalid_token", `+strings.TrimPrefix(v, "Bearer "))
			}
		}
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *challenge) Write(b []byte) (int, error) {
	if !c.written {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(b)
}

// Flush keeps streaming responses (server-sent events) working through the
// wrapper.
func (c *challenge) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *challenge) Unwrap() http.ResponseWriter { return c.ResponseWriter }
