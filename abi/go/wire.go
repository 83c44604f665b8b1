package alter

import (
	"encoding/base64"
	"encoding/json"
	"unicode/utf8"
)

// Request is one HTTP request the host makes on the tool's behalf.
type Request struct {
	// Method is the HTTP method; empty means GET.
	Method string
	// URL must be absolute http or https, and its host must be in the
	// manifest's allowed_hosts.
	URL string
	// Query is added to any query the URL already has.
	Query map[string][]string
	// Headers are sent as given. Leave credentials out: the host adds them
	// for the tool's provider.
	Headers map[string]string
	// Body is sent as is.
	Body []byte
}

// MarshalJSON encodes r in the alter_request wire format. The body travels
// as "body" when it is valid UTF-8 and as "body_base64" otherwise, because a
// JSON string cannot carry arbitrary bytes.
func (r Request) MarshalJSON() ([]byte, error) {
	w := struct {
		Method     string              `json:"method,omitempty"`
		URL        string              `json:"url"`
		Query      map[string][]string `json:"query,omitempty"`
		Headers    map[string]string   `json:"headers,omitempty"`
		Body       string              `json:"body,omitempty"`
		BodyBase64 string              `json:"body_base64,omitempty"`
	}{Method: r.Method, URL: r.URL, Query: r.Query, Headers: r.Headers}
	if utf8.Valid(r.Body) {
		w.Body = string(r.Body)
	} else {
		w.BodyBase64 = base64.StdEncoding.EncodeToString(r.Body)
	}
	return json.Marshal(w)
}

// Response is the upstream's answer. Any HTTP status is a Response, not an
// error: only failures to get an answer at all are an [*Error].
type Response struct {
	Status int
	// Headers has lower-case names; repeated headers are joined with ", ".
	Headers map[string]string
	Body    []byte
}

// Code names one kind of alter_request failure. Codes are stable: switch on
// them rather than on messages.
type Code string

// The codes of ABI v1, as in the host's abi package.
const (
	// CodeBadRequest: the request was malformed (bad method, relative URL,
	// bad header).
	CodeBadRequest Code = "bad_request"
	// CodeHostNotAllowed: the URL's scheme or host is outside the plugin's
	// allowed_hosts, including after a redirect.
	CodeHostNotAllowed Code = "host_not_allowed"
	// CodeTimeout: the upstream did not answer in time.
	CodeTimeout Code = "timeout"
	// CodeTooLarge: a request or response body exceeded the plugin's limits.
	CodeTooLarge Code = "too_large"
	// CodeUpstreamUnreachable: the connection to the upstream failed.
	CodeUpstreamUnreachable Code = "upstream_unreachable"
	// CodeInternal: the host failed, or its reply could not be read.
	CodeInternal Code = "internal"
	// CodeGrantNotFound: the user has not connected the tool's provider;
	// ConnectURL says where to.
	CodeGrantNotFound Code = "grant_not_found"
	// CodeScopeReauthRequired: the grant lacks MissingScopes; ConnectURL
	// asks for them.
	CodeScopeReauthRequired Code = "scope_reauth_required"
	// CodePolicyDenied: a policy forbids this method, host or path.
	CodePolicyDenied Code = "policy_denied"
	// CodeApprovalRequired: a person must approve this request first.
	CodeApprovalRequired Code = "approval_required"
)

// Error is a failed alter_request, as the host reported it. Returning it
// from a tool lets the host show the user what to do (connect an account,
// widen allowed_hosts) instead of a generic failure.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// ConnectURL is set with CodeGrantNotFound and CodeScopeReauthRequired.
	ConnectURL string `json:"connect_url,omitempty"`
	// MissingScopes is set with CodeScopeReauthRequired.
	MissingScopes []string `json:"missing_scopes,omitempty"`
}

// Error returns "code: message", as the host formats its errors.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// parseReply decodes the host's reply to alter_request: exactly one of a
// response and an error. A reply that cannot be read, or lacks what every
// reply has, is CodeInternal, so callers deal with a single error type.
func parseReply(raw []byte) (*Response, error) {
	var w struct {
		Status     *int              `json:"status"`
		Headers    map[string]string `json:"headers"`
		Body       *string           `json:"body"`
		BodyBase64 *string           `json:"body_base64"`
		Error      *Error            `json:"error"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "alter_request reply is not valid JSON: " + err.Error()}
	}
	if w.Error != nil {
		if w.Error.Code == "" {
			w.Error.Code = CodeInternal
		}
		return nil, w.Error
	}
	if w.Status == nil {
		return nil, &Error{Code: CodeInternal, Message: `alter_request reply has neither "status" nor "error"`}
	}
	if w.Body != nil && w.BodyBase64 != nil {
		return nil, &Error{Code: CodeInternal, Message: `alter_request reply has both "body" and "body_base64"`}
	}
	r := &Response{Status: *w.Status, Headers: w.Headers, Body: []byte{}}
	switch {
	case w.Body != nil:
		r.Body = []byte(*w.Body)
	case w.BodyBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*w.BodyBase64)
		if err != nil {
			return nil, &Error{Code: CodeInternal, Message: "alter_request reply has invalid body_base64: " + err.Error()}
		}
		r.Body = b
	}
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	return r, nil
}

// Content is one item of an MCP tool result's content list. Text items
// are the common case; see [Text].
type Content struct {
	// Type is "text", "image", "audio" or another MCP content type.
	Type string `json:"type"`
	// Text is a text item's text.
	Text string `json:"text,omitempty"`
	// Data is an image's or audio's bytes, base64-encoded, and MIMEType
	// their type.
	Data     string `json:"data,omitempty"`
	MIMEType string `json:"mimeType,omitempty"`
}

// Text returns a text content item.
func Text(s string) Content { return Content{Type: "text", Text: s} }

// MCPResult is a whole MCP tool result, the output of a tool whose
// manifest says "result": "mcp".
type MCPResult struct {
	Content []Content
	// StructuredContent, if not nil, is encoded as JSON; with an output
	// schema in the manifest, the host checks it against that.
	StructuredContent any
	// IsError marks a failure the model should see as such.
	IsError bool
}

// MarshalJSON encodes r as MCP's CallToolResult: content is always a
// list, and structuredContent and isError only appear when set.
func (r MCPResult) MarshalJSON() ([]byte, error) {
	w := struct {
		Content           []Content `json:"content"`
		StructuredContent any       `json:"structuredContent,omitempty"`
		IsError           bool      `json:"isError,omitempty"`
	}{r.Content, r.StructuredContent, r.IsError}
	if w.Content == nil {
		w.Content = []Content{}
	}
	return json.Marshal(w)
}
