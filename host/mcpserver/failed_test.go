package mcpserver

import (
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/plugin"
)

func TestFailedSaysWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		f     plugin.Failure
		wants []string
		meta  map[string]any
	}{
		{"grant", plugin.Failure{Kind: "guest_error", Message: "grant_not_found: no github account is connected",
			Request: &abi.Error{Code: abi.CodeGrantNotFound, Message: "no github account is connected", ConnectURL: "http://h/connect/github?link=x"}},
			[]string{"needs an account that is not connected", "open http://h/connect/github?link=x", "call the tool again"},
			map[string]any{"code": abi.CodeGrantNotFound, "connect_url": "http://h/connect/github?link=x"}},
		{"scope", plugin.Failure{Kind: "guest_error", Message: "x",
			Request: &abi.Error{Code: abi.CodeScopeReauthRequired, Message: "lacks repo", ConnectURL: "http://h/c", MissingScopes: []string{"repo"}}},
			[]string{"needs more access", "lacks repo", "open http://h/c"},
			map[string]any{"code": abi.CodeScopeReauthRequired, "missing_scopes": []string{"repo"}}},
		{"own words", plugin.Failure{Kind: "guest_error", Message: "could not list issues",
			Request: &abi.Error{Code: abi.CodeTimeout, Message: "api.github.com did not answer"}},
			[]string{"Tool t failed: could not list issues (alter_request: timeout: api.github.com did not answer)"},
			map[string]any{"code": abi.CodeTimeout}},
		{"repeated words", plugin.Failure{Kind: "guest_error", Message: "timeout: api.github.com did not answer",
			Request: &abi.Error{Code: abi.CodeTimeout, Message: "api.github.com did not answer"}},
			[]string{"Tool t failed: timeout: api.github.com did not answer"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := failed("t", &tc.f)
			text := res.Content[0].(*mcp.TextContent).Text
			for _, w := range tc.wants {
				if !strings.Contains(text, w) {
					t.Errorf("text %q lacks %q", text, w)
				}
			}
			if strings.Count(text, "api.github.com did not answer") > 1 {
				t.Errorf("text repeats itself: %q", text)
			}
			meta := res.Meta[ErrorMetaKey].(map[string]any)
			for k, v := range tc.meta {
				if got := meta[k]; strings.Join(strings.Fields(fmtAny(got)), " ") != fmtAny(v) {
					t.Errorf("meta[%s] = %v; want %v", k, got, v)
				}
			}
		})
	}
}

func fmtAny(v any) string {
	switch v := v.(type) {
	case []string:
		return strings.Join(v, " ")
	case abi.Code:
		return string(v)
	case string:
		return v
	}
	return ""
}
