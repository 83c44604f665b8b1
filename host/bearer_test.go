package host

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
)

func TestChallenges(t *testing.T) {
	verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		switch token {
		case "good":
			return &auth.TokenInfo{Scopes: []string{"mcp"}, Expiration: time.Now().Add(time.Hour), UserID: "alice"}, nil
		case "narrow":
			return &auth.TokenInfo{Scopes: []string{"other"}, Expiration: time.Now().Add(time.Hour), UserID: "alice"}, nil
		}
		return nil, fmt.Errorf("%w: unknown", auth.ErrInvalidToken)
	}
	h := requireToken(verify, "http://as.test/.well-known/oauth-protected-resource/mcp", []string{"mcp"},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, auth.TokenInfoFromContext(r.Context()).UserID)
		}))
	for _, tc := range []struct {
		auth, want string
		status     int
	}{
		{"", `Bearer resource_metadata="http://as.test/.well-known/oauth-protected-resource/mcp", scope="mcp"`, 401},
		{"Bearer bogus", `Bearer error="invalid_token", resource_metadata=`, 401},
		{"Bearer narrow", `Bearer error="insufficient_scope", resource_metadata=`, 403},
		{"Bearer good", "", 200},
	} {
		req := httptest.NewRequest("POST", "/mcp", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get("WWW-Authenticate")
		if rec.Code != tc.status || !strings.HasPrefix(got, tc.want) || tc.want == "" && got != "" {
			t.Errorf("%q: %d %q; want %d %q", tc.auth, rec.Code, got, tc.status, tc.want)
		}
	}
	// A token in the query string is not a token.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/mcp?access_token=good", nil))
	if rec.Code != 401 {
		t.Errorf("token in the query string: %d; want 401", rec.Code)
	}
}
