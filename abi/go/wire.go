package alter

import (
	"encoding/base64"
	"encoding/json"
	"unicode/utf16"
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
// JSON string cannot carry arbitrary bytes. See appendRequest.
func (r Request) MarshalJSON() ([]byte, error) { return appendRequest(nil, &r), nil }

// appendRequest appends r's wire encoding to dst. It is written by hand
// because encoding/json's reflection dominated a request's cost in Wasm; it
// writes, byte for byte, what json.Marshal wrote of the wire struct it
// replaces (field order, omitempty, sorted map keys, HTML-safe escaping),
// which the tests hold it to.
func appendRequest(dst []byte, r *Request) []byte {
	if dst == nil {
		dst = make([]byte, 0, requestSizeHint(r))
	}
	dst = append(dst, '{')
	if r.Method != "" {
		dst = append(dst, `"method":`...)
		dst = appendString(dst, r.Method)
		dst = append(dst, ',')
	}
	dst = append(dst, `"url":`...)
	dst = appendString(dst, r.URL)
	if len(r.Query) > 0 {
		dst = append(dst, `,"query":{`...)
		for i, k := range sortedKeys(r.Query) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			vs := r.Query[k]
			if vs == nil {
				dst = append(dst, "null"...) // as encoding/json renders a nil slice
				continue
			}
			dst = append(dst, '[')
			for j, v := range vs {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = appendString(dst, v)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	if len(r.Headers) > 0 {
		dst = append(dst, `,"headers":{`...)
		for i, k := range sortedKeys(r.Headers) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, r.Headers[k])
		}
		dst = append(dst, '}')
	}
	switch {
	case len(r.Body) == 0:
	case utf8.Valid(r.Body):
		dst = append(dst, `,"body":`...)
		dst = appendString(dst, r.Body)
	default:
		dst = append(dst, `,"body_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, r.Body)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// requestSizeHint guesses r's encoded size, so that appendRequest rarely
// grows its buffer.
func requestSizeHint(r *Request) int {
	n := 64 + len(r.Method) + len(r.URL) + base64.StdEncoding.EncodedLen(len(r.Body))
	for k, vs := range r.Query {
		n += 8 + len(k)
		for _, v := range vs {
			n += 3 + len(v)
		}
	}
	for k, v := range r.Headers {
		n += 6 + len(k) + len(v)
	}
	return n
}

// sortedKeys returns m's keys in the byte order encoding/json sorts them in.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

// sortStrings sorts a in byte order. It is a heap sort rather than
// slices.Sort, whose generic pdqsort would add some 20 KB to every Go
// plugin for maps of a few keys.
func sortStrings(a []string) {
	for i := len(a)/2 - 1; i >= 0; i-- {
		siftDown(a, i, len(a))
	}
	for end := len(a) - 1; end > 0; end-- {
		a[0], a[end] = a[end], a[0]
		siftDown(a, 0, end)
	}
}

// siftDown restores the max-heap order of a[:n] below root.
func siftDown(a []string, root, n int) {
	for {
		child := 2*root + 1
		if child >= n {
			return
		}
		if child+1 < n && a[child] < a[child+1] {
			child++
		}
		if a[root] >= a[child] {
			return
		}
		a[root], a[child] = a[child], a[root]
		root = child
	}
}

// plainASCII marks the ASCII bytes encoding/json copies into a string
// unescaped: printable ones other than '"', '\\' and the HTML-sensitive '<',
// '>' and '&'. DEL is copied as is.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json's
// Marshal escapes it: short escapes for '"', '\\', \b, \f, \n, \r and \t;
// \u00XX for other control characters and for '<', '>' and '&'; \u2028
// and \u2029, which break JavaScript; and \ufffd for each invalid UTF-8
// byte.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is still to be copied
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// decodeRune is utf8.DecodeRune for either kind of byte string, without
// converting (and so copying) the whole of s.
func decodeRune[S string | []byte](s S) (rune, int) {
	var buf [utf8.UTFMax]byte
	n := copy(buf[:], s)
	return utf8.DecodeRune(buf[:n])
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
	var f fastReply
	if !f.decode(raw) {
		// Whatever the fast path does not fully understand, encoding/json
		// decides, with its own leniency and its own error messages.
		return parseReplyJSON(raw)
	}
	// As parseReplyJSON, on what the fast path read.
	if f.err != nil {
		if f.err.Code == "" {
			f.err.Code = CodeInternal
		}
		return nil, f.err
	}
	if !f.has[replyStatus] {
		return nil, &Error{Code: CodeInternal, Message: `alter_request reply has neither "status" nor "error"`}
	}
	if f.has[replyBody] && f.has[replyBodyBase64] {
		return nil, &Error{Code: CodeInternal, Message: `alter_request reply has both "body" and "body_base64"`}
	}
	r := &Response{Status: f.status, Headers: f.headers, Body: f.body}
	if f.has[replyBodyBase64] {
		b := make([]byte, base64.StdEncoding.DecodedLen(len(f.bodyBase64)))
		n, err := base64.StdEncoding.Decode(b, f.bodyBase64)
		if err != nil {
			return nil, &Error{Code: CodeInternal, Message: "alter_request reply has invalid body_base64: " + err.Error()}
		}
		r.Body = b[:n]
	}
	if r.Body == nil {
		r.Body = []byte{}
	}
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	return r, nil
}

// parseReplyJSON is parseReply with encoding/json, for any reply.
func parseReplyJSON(raw []byte) (*Response, error) {
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

// The reply's keys, indexing fastReply.has.
const (
	replyStatus = iota
	replyHeaders
	replyBody
	replyBodyBase64
	replyError
)

// fastReply is a reply as the fast path reads it.
type fastReply struct {
	has     [5]bool // which keys were present
	status  int
	headers map[string]string
	body    []byte
	// bodyBase64 may alias the input: it is only read, to decode it.
	bodyBase64 []byte
	err        *Error
}

// decode fills f from raw, which json.Unmarshal would decode the same,
// for the replies the host writes (json.Marshal of abi.Reply: compact,
// keys exactly as named, each once), and reports whether it could. It
// gives up on anything else, leaving f partly filled: whitespace, other
// keys or other cases of these, repeated keys, nulls, numbers other than
// plain integers, surrogate escapes, invalid UTF-8 or JSON. encoding/json,
// slow in Wasm for its reflection, then decides.
func (f *fastReply) decode(raw []byte) bool {
	d := fastDecoder{b: raw}
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return d.i == len(raw)
	}
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		var field int
		switch string(key) {
		case "status":
			field = replyStatus
			f.status, ok = d.integer()
		case "headers":
			field = replyHeaders
			f.headers, ok = d.stringMap()
		case "body":
			field = replyBody
			var owned bool
			f.body, owned, ok = d.strBytes()
			if ok && !owned {
				f.body = append(make([]byte, 0, len(f.body)), f.body...)
			}
		case "body_base64":
			field = replyBodyBase64
			f.bodyBase64, _, ok = d.strBytes()
		case "error":
			field = replyError
			f.err, ok = d.errorObject()
		default:
			return false
		}
		if !ok || f.has[field] {
			return false
		}
		f.has[field] = true
		if d.next('}') {
			return d.i == len(raw)
		}
		if !d.next(',') {
			return false
		}
	}
}

// fastDecoder reads the JSON subset fastReply.decode accepts; every method
// reports false where it gives up.
type fastDecoder struct {
	b []byte
	i int
}

// next consumes c if it comes next.
func (d *fastDecoder) next(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// key reads an object key without escapes, and the colon after it.
func (d *fastDecoder) key() ([]byte, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			k := d.b[start:d.i]
			d.i++
			return k, d.next(':')
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// integer reads an integer as encoding/json reads one into an int:
// -?(0|[1-9][0-9]*), here with at most 18 digits so it cannot overflow.
// Whatever follows (a fraction or an exponent) is the caller's to refuse.
func (d *fastDecoder) integer() (int, bool) {
	neg := d.next('-')
	start := d.i
	n := 0
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		n = n*10 + int(d.b[d.i]-'0')
		d.i++
	}
	if digits := d.i - start; digits == 0 || digits > 18 || (digits > 1 && d.b[start] == '0') {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// str reads a string.
func (d *fastDecoder) str() (string, bool) {
	b, _, ok := d.strBytes()
	return string(b), ok
}

// strBytes reads a string's bytes, which alias the input unless owned.
// Unescaped runs are taken as they are once checked to be valid UTF-8;
// escapes are those of JSON except surrogates, which encoding/json pairs
// or replaces.
func (d *fastDecoder) strBytes() (b []byte, owned, ok bool) {
	if !d.next('"') {
		return nil, false, false
	}
	start := d.i
	ascii := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return s, false, ascii || utf8.Valid(s)
		case c == '\\':
			b, ok := d.strEscaped(start)
			return b, true, ok
		case c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return nil, false, false
}

// strEscaped finishes strBytes from its first backslash, at d.i; the
// string began at start.
func (d *fastDecoder) strEscaped(start int) ([]byte, bool) {
	buf := make([]byte, 0, len(d.b)-start)
	run := start // d.b[run:d.i] is still to be copied
	ascii := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"' || c == '\\':
			s := d.b[run:d.i]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			buf = append(buf, s...)
			ascii = true
			if c == '"' {
				d.i++
				return buf, true
			}
			if d.i+1 >= len(d.b) {
				return nil, false
			}
			e := d.b[d.i+1]
			d.i += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok || utf16.IsSurrogate(r) {
					return nil, false
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return nil, false
			}
			run = d.i
			continue
		case c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return nil, false
}

// hex4 reads the four hex digits of a \u escape.
func (d *fastDecoder) hex4() (rune, bool) {
	if len(d.b)-d.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.i += 4
	return r, true
}

// stringMap reads an object of strings. A repeated key keeps its last
// value, as encoding/json keeps it.
func (d *fastDecoder) stringMap() (map[string]string, bool) {
	if !d.next('{') {
		return nil, false
	}
	m := map[string]string{}
	if d.next('}') {
		return m, true
	}
	for {
		k, ok := d.str()
		if !ok || !d.next(':') {
			return nil, false
		}
		v, ok := d.str()
		if !ok {
			return nil, false
		}
		m[k] = v
		if d.next('}') {
			return m, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}

// errorObject reads the reply's "error" value.
func (d *fastDecoder) errorObject() (*Error, bool) {
	if !d.next('{') {
		return nil, false
	}
	e := &Error{}
	if d.next('}') {
		return e, true
	}
	var seen [4]bool
	for {
		key, ok := d.key()
		if !ok {
			return nil, false
		}
		var field int
		switch string(key) {
		case "code":
			s, ok := d.str()
			if !ok {
				return nil, false
			}
			e.Code, field = Code(s), 0
		case "message":
			if e.Message, ok = d.str(); !ok {
				return nil, false
			}
			field = 1
		case "connect_url":
			if e.ConnectURL, ok = d.str(); !ok {
				return nil, false
			}
			field = 2
		case "missing_scopes":
			if e.MissingScopes, ok = d.strings(); !ok {
				return nil, false
			}
			field = 3
		default:
			return nil, false
		}
		if seen[field] {
			return nil, false
		}
		seen[field] = true
		if d.next('}') {
			return e, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}

// strings reads an array of strings; [] is an empty slice, not nil, as
// encoding/json makes it.
func (d *fastDecoder) strings() ([]string, bool) {
	if !d.next('[') {
		return nil, false
	}
	list := []string{}
	if d.next(']') {
		return list, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		list = append(list, s)
		if d.next(']') {
			return list, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
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
