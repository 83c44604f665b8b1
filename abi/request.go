package abi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Request is what a guest passes to alter_request, as one JSON object:
//
//	{"method": "GET", "url": "https://api.github.com/user/repos",
//	 "query": {"per_page": "50", "label": ["bug", "p1"]},
//	 "headers": {"Accept": "application/json"},
//	 "body": "text body" | "body_base64": "AAEC..."}
//
// The guest never names a credential: the host adds it for the tool's
// provider. Method defaults to GET. Query values are a string or a list of
// strings and are added to any query the URL already has.
type Request struct {
	Method     string            `json:"method,omitempty"`
	URL        string            `json:"url"`
	Query      map[string]Values `json:"query,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	BodyBase64 string            `json:"body_base64,omitempty"`
}

// Values is a query parameter's values: a JSON string or list of strings.
type Values []string

// UnmarshalJSON accepts "v" as well as ["v1", "v2"].
func (v *Values) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*v = Values{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("a query value must be a string or a list of strings")
	}
	*v = many
	return nil
}

// Response is what alter_request returns to the guest on success. Header
// names are lower case; repeated headers are joined with ", ". The body is in
// Body when it is valid UTF-8, otherwise base64-encoded in BodyBase64.
type Response struct {
	Status     int               `json:"status"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body,omitempty"`
	BodyBase64 string            `json:"body_base64,omitempty"`
}

// Reply is the one JSON object written back to the guest: exactly one of
// its fields is set.
type Reply struct {
	*Response
	Error *Error `json:"error,omitempty"`
}

// NewResponse fills a Response from an HTTP status, headers and body,
// choosing the body encoding.
func NewResponse(status int, h http.Header, body []byte) *Response {
	r := &Response{Status: status, Headers: make(map[string]string, len(h))}
	for k, vs := range h {
		r.Headers[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	if utf8.Valid(body) {
		r.Body = string(body)
	} else {
		r.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	return r
}

// OutboundRequest is a Request checked at the boundary: the method is a
// valid token, the URL is absolute http or https with the query merged in,
// and the body is decoded. Past the boundary the host trusts it.
type OutboundRequest struct {
	Method string
	URL    *url.URL
	Header http.Header
	Body   []byte
}

// ParseRequest decodes and validates the guest's request JSON. Every error
// it returns is an *Error with CodeBadRequest or CodeTooLarge.
func ParseRequest(raw []byte, maxBody int64) (*OutboundRequest, *Error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, Errorf(CodeBadRequest, "alter_request input is not a valid request object: %v", err)
	}
	if dec.More() {
		return nil, Errorf(CodeBadRequest, "alter_request input has data after the request object")
	}
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) {
		return nil, Errorf(CodeBadRequest, "method %q is not a valid HTTP method", r.Method)
	}
	if r.URL == "" {
		return nil, Errorf(CodeBadRequest, `"url" is required`)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return nil, Errorf(CodeBadRequest, "url is not valid: %v", err)
	}
	if !u.IsAbs() || u.Host == "" {
		return nil, Errorf(CodeBadRequest, "url %q must be absolute, with a scheme and a host", r.URL)
	}
	if u.User != nil {
		return nil, Errorf(CodeBadRequest, "url must not carry user information; the host adds credentials")
	}
	if len(r.Query) > 0 {
		q := u.Query()
		for k, vs := range r.Query {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	h := make(http.Header, len(r.Headers))
	for k, v := range r.Headers {
		if !isToken(k) {
			return nil, Errorf(CodeBadRequest, "header name %q is not valid", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, Errorf(CodeBadRequest, "header %q has a value with a line break or NUL", k)
		}
		h.Set(k, v)
	}
	if r.Body != "" && r.BodyBase64 != "" {
		return nil, Errorf(CodeBadRequest, `set "body" or "body_base64", not both`)
	}
	body := []byte(r.Body)
	if r.BodyBase64 != "" {
		if body, err = base64.StdEncoding.DecodeString(r.BodyBase64); err != nil {
			return nil, Errorf(CodeBadRequest, "body_base64 is not valid base64: %v", err)
		}
	}
	if int64(len(body)) > maxBody {
		return nil, Errorf(CodeTooLarge, "request body is %d bytes; this plugin may send at most %d", len(body), maxBody)
	}
	return &OutboundRequest{Method: method, URL: u, Header: h, Body: body}, nil
}

// isToken reports whether s is an RFC 9110 token, as method and header
// names must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c <= ' ' || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 || c == 0x7f {
			return false
		}
	}
	return true
}

// String names the request for logs and audit without its query, which may
// carry personal data.
func (r *OutboundRequest) String() string {
	return fmt.Sprintf("%s %s://%s%s", r.Method, r.URL.Scheme, r.URL.Host, r.URL.EscapedPath())
}
