package alter

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
)

// The guest types mirror abi's by hand; these tests hold them to the host's
// own encoder and decoder.

func TestRequestIsWhatTheHostParses(t *testing.T) {
	for _, body := range [][]byte{nil, []byte(`{"q":"héllo"}`), {0xff, 0x00, 0x80, 'x'}} {
		in := Request{
			Method:  "post",
			URL:     "https://api.example.com/v1/items?a=1",
			Query:   map[string][]string{"label": {"bug", "p1"}},
			Headers: map[string]string{"Accept": "application/json"},
			Body:    body,
		}
		raw, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		out, aerr := abi.ParseRequest(raw, 1<<20)
		if aerr != nil {
			t.Fatalf("host refused %s: %v", raw, aerr)
		}
		if out.Method != "POST" || out.URL.String() != "https://api.example.com/v1/items?a=1&label=bug&label=p1" ||
			out.Header.Get("Accept") != "application/json" || !bytes.Equal(out.Body, body) {
			t.Errorf("%s parsed as %s %s %v %q", raw, out.Method, out.URL, out.Header, out.Body)
		}
	}
}

func TestDefaultMethodIsGET(t *testing.T) {
	raw, _ := json.Marshal(Request{URL: "https://example.com/"})
	if string(raw) != `{"url":"https://example.com/"}` {
		t.Errorf("got %s", raw)
	}
	out, aerr := abi.ParseRequest(raw, 0)
	if aerr != nil || out.Method != "GET" {
		t.Errorf("got %v, %v", out, aerr)
	}
}

func TestParseResponseReply(t *testing.T) {
	h := http.Header{"Content-Type": {"text/plain"}, "X-Two": {"a", "b"}}
	for _, body := range [][]byte{[]byte("héllo"), {0xff, 0xfe, 0}, nil} {
		raw, _ := json.Marshal(abi.Reply{Response: abi.NewResponse(201, h, body)})
		r, err := parseReply(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if r.Status != 201 || r.Headers["content-type"] != "text/plain" || r.Headers["x-two"] != "a, b" || !bytes.Equal(r.Body, body) {
			t.Errorf("%s decoded as %+v", raw, r)
		}
	}
}

func TestParseErrorReply(t *testing.T) {
	want := &abi.Error{Code: abi.CodeScopeReauthRequired, Message: "needs repo", ConnectURL: "https://alter.example/connect/github", MissingScopes: []string{"repo"}}
	raw, _ := json.Marshal(abi.Reply{Error: want})
	_, err := parseReply(raw)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s decoded as %v", raw, err)
	}
	if string(e.Code) != string(want.Code) || e.Message != want.Message || e.ConnectURL != want.ConnectURL ||
		len(e.MissingScopes) != 1 || e.MissingScopes[0] != "repo" || e.Error() != want.Error() {
		t.Errorf("%s decoded as %+v", raw, e)
	}
}

func TestUnreadableReplyIsInternal(t *testing.T) {
	for _, raw := range []string{``, `{`, `{"status":200,"body_base64":"!!"}`} {
		_, err := parseReply([]byte(raw))
		if e, ok := err.(*Error); !ok || e.Code != CodeInternal {
			t.Errorf("%q: got %v", raw, err)
		}
	}
}

func TestCodesMatchHost(t *testing.T) {
	pairs := map[Code]abi.Code{
		CodeBadRequest: abi.CodeBadRequest, CodeHostNotAllowed: abi.CodeHostNotAllowed,
		CodeTimeout: abi.CodeTimeout, CodeTooLarge: abi.CodeTooLarge,
		CodeUpstreamUnreachable: abi.CodeUpstreamUnreachable, CodeInternal: abi.CodeInternal,
		CodeGrantNotFound: abi.CodeGrantNotFound, CodeScopeReauthRequired: abi.CodeScopeReauthRequired,
		CodePolicyDenied: abi.CodePolicyDenied, CodeApprovalRequired: abi.CodeApprovalRequired,
	}
	for g, h := range pairs {
		if string(g) != string(h) {
			t.Errorf("guest code %q, host code %q", g, h)
		}
	}
}

func TestMalformedRepliesAreInternal(t *testing.T) {
	for raw, want := range map[string]string{
		`{"headers":{}}`:                             `alter_request reply has neither "status" nor "error"`,
		`{"status":"200"}`:                           "alter_request reply is not valid JSON",
		`{"status":200,"headers":[]}`:                "alter_request reply is not valid JSON",
		`{"status":200,"body":"a","body_base64":""}`: `alter_request reply has both "body" and "body_base64"`,
		`{"error":"boom"}`:                           "alter_request reply is not valid JSON",
	} {
		_, err := parseReply([]byte(raw))
		if e, ok := err.(*Error); !ok || e.Code != CodeInternal || !strings.HasPrefix(e.Message, want) {
			t.Errorf("%s: got %v", raw, err)
		}
	}
}

func TestMCPResultIsWhatTheHostReads(t *testing.T) {
	for _, tc := range []struct {
		in   MCPResult
		want string
	}{
		{MCPResult{}, `{"content":[]}`},
		{MCPResult{Content: []Content{Text("3 <notes>")}, StructuredContent: map[string]int{"n": 3}},
			`{"content":[{"type":"text","text":"3 \u003cnotes\u003e"}],"structuredContent":{"n":3}}`},
		{MCPResult{Content: []Content{Text("no")}, IsError: true}, `{"content":[{"type":"text","text":"no"}],"isError":true}`},
	} {
		b, err := json.Marshal(tc.in)
		if err != nil || string(b) != tc.want {
			t.Errorf("got %s %v, want %s", b, err, tc.want)
		}
		var back mcp.CallToolResult
		if err := json.Unmarshal(b, &back); err != nil || back.IsError != tc.in.IsError || len(back.Content) != len(tc.in.Content) {
			t.Errorf("%s read back as %+v: %v", b, back, err)
		}
	}
}
