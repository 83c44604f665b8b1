package alter

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/alterhost/alterhost/abi"
)

// The hand-written encoder and the fast reply decoder are held to the
// encoding/json code they replaced, kept here as the reference: the same
// bytes out, the same results back.

// referenceMarshal is Request.MarshalJSON as it was, with encoding/json.
func referenceMarshal(r Request) ([]byte, error) {
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

// referenceParseReply is parseReply as it was, with encoding/json only
// (parseReplyJSON, copied so that a change there shows here).
func referenceParseReply(raw []byte) (*Response, error) {
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

// checkEncoding fails t unless every way of encoding r gives the
// reference's bytes.
func checkEncoding(t *testing.T, r Request) {
	t.Helper()
	want, err := referenceMarshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendRequest(nil, &r); string(got) != string(want) {
		t.Errorf("appendRequest(%#v)\n got %s\nwant %s", r, got, want)
	}
	if got := appendRequest([]byte("prefix"), &r); string(got) != "prefix"+string(want) {
		t.Errorf("appendRequest after a prefix: got %s", got)
	}
	if got, err := r.MarshalJSON(); err != nil || string(got) != string(want) {
		t.Errorf("MarshalJSON(%#v) = %s, %v\nwant %s", r, got, err, want)
	}
	if got, err := json.Marshal(r); err != nil || string(got) != string(want) {
		t.Errorf("json.Marshal(%#v) = %s, %v\nwant %s", r, got, err, want)
	}
}

// tricky is text that encoding/json escapes in every way it knows: short
// escapes, other control bytes, HTML, JavaScript line separators, DEL,
// invalid and truncated UTF-8, and surrogates encoded as UTF-8.
var tricky = []string{
	"",
	"plain",
	"\"quoted\" \\ back/slash",
	"\b\f\n\r\t\x00\x01\x1f\x7f",
	"<script>&amp;</script>",
	"line\u2028para\u2029end\u2027\u202a",
	"héllo wörld ✓ 𝄞",
	"\xff\xfe",
	"bad\x80mid",
	"cut\xe2\x82",
	"\xed\xa0\x80 surrogate",
	"\xf4\x90\x80\x80 too big",
	"\xc0\xaf overlong",
	"\ufffd literal",
}

func TestRequestEncodingMatchesEncodingJSON(t *testing.T) {
	reqs := []Request{
		{},
		{URL: "https://example.com/"},
		{Method: "POST", URL: "https://api.example.com/v1/items?a=1&b=<2>"},
		{URL: "u", Query: map[string][]string{}},
		{URL: "u", Query: map[string][]string{"nil": nil, "empty": {}, "two": {"a", "b"}, "": {""}}},
		{URL: "u", Headers: map[string]string{}},
		{URL: "u", Headers: map[string]string{"b": "2", "a": "1", "A": "0", "é": "x", "\xff": "y", "<": ">"}},
		{URL: "u", Body: []byte{}},
		{URL: "u", Body: []byte(`{"q":"héllo <b>"}`)},
		{URL: "u", Body: []byte{0xff, 0x00, 0x80, 'x'}},
		{URL: "u", Body: []byte{0}},
	}
	for _, s := range tricky {
		reqs = append(reqs,
			Request{Method: s, URL: s},
			Request{URL: "u", Query: map[string][]string{s: {s, s}}, Headers: map[string]string{s: s, "k" + s: s}},
			Request{URL: "u", Body: []byte(s)},
		)
	}
	for _, r := range reqs {
		checkEncoding(t, r)
	}
	// Enough keys, in enough orders, to exercise the sort.
	for n := range 40 {
		q, h := map[string][]string{}, map[string]string{}
		for i := range n {
			k := strings.Repeat(string(rune('a'+i*7%26)), 1+i%3) + tricky[i%len(tricky)]
			q[k], h[k] = []string{k}, k
		}
		checkEncoding(t, Request{URL: "u", Query: q, Headers: h})
	}
}

func TestSortStrings(t *testing.T) {
	for n := range 50 {
		a := make([]string, n)
		for i := range a {
			a[i] = string([]byte{byte(i * 37 % 11), byte(i * 13 % 7)})
		}
		sortStrings(a)
		if !slices.IsSorted(a) {
			t.Errorf("%d: %q", n, a)
		}
	}
}

func TestEncodedRequestIsValidJSON(t *testing.T) {
	for _, s := range tricky {
		raw := appendRequest(nil, &Request{Method: s, URL: s})
		var back struct{ Method, URL string }
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("%q: %s: %v", s, raw, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); utf8.ValidString(s) && (back.Method != want || back.URL != want) {
			t.Errorf("%q came back as %q, %q", s, back.Method, back.URL)
		}
	}
}

func FuzzRequestEncoding(f *testing.F) {
	f.Add("GET", "https://api.example.com/user", "label", "bug", "p1", "Accept", "application/json", []byte(nil), uint8(0))
	f.Add("", "", "", "", "", "", "", []byte{}, uint8(0xff))
	f.Add("post", "https://x/?a=<&>", "k\u2028", "\x00", "\xff", "<", "\u2029", []byte("body\n\"x\""), uint8(1))
	f.Add("\xed\xa0\x80", "\xf0\x9f\x98", "a", "b", "c", "A", "a", []byte{0xff, 0xfe}, uint8(2))
	for i, s := range tricky {
		f.Add(s, s, s, s, s, s, s, []byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, method, url, key, v1, v2, hkey, hval string, body []byte, shape uint8) {
		r := Request{Method: method, URL: url, Body: body}
		// shape picks the maps' forms: absent, empty, nil values, several keys.
		switch shape % 4 {
		case 1:
			r.Query = map[string][]string{}
		case 2:
			r.Query = map[string][]string{key: {v1, v2}, v1: nil, v2: {}}
		case 3:
			r.Query = map[string][]string{key: {v1}}
		}
		switch shape / 4 % 3 {
		case 1:
			r.Headers = map[string]string{}
		case 2:
			r.Headers = map[string]string{hkey: hval, hval: hkey, key: v1}
		}
		checkEncoding(t, r)
	})
}

// checkDecoding fails t unless parseReply decodes raw as the reference
// does, and returns whether the fast path decoded it.
func checkDecoding(t *testing.T, raw []byte) bool {
	t.Helper()
	got, gotErr := parseReply(raw)
	want, wantErr := referenceParseReply(raw)
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErr, wantErr) {
		t.Errorf("parseReply(%q)\n got %#v, %#v\nwant %#v, %#v", raw, got, gotErr, want, wantErr)
	}
	var f fastReply
	return f.decode(raw)
}

func TestParseReplyMatchesEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		fast bool // whether the fast path should take it
	}{
		{`{"status":200,"headers":{"content-type":"text/plain"},"body":"hi"}`, true},
		{`{"status":200,"headers":{},"body":""}`, true},
		{`{"status":204,"headers":{}}`, true},
		{`{"status":0,"headers":{"a":"1","a":"2"}}`, true},
		{`{"status":-0}`, true},
		{`{"status":-7,"body":"x"}`, true},
		{`{"status":999999999999999999}`, true},
		{`{"body":"x","status":200}`, true},
		{`{"status":200,"body_base64":"/w=="}`, true},
		{`{"status":200,"body_base64":""}`, true},
		{`{"status":200,"body_base64":"!!"}`, true},
		{`{"status":200,"body_base64":"/w\u003d\u003d"}`, true},
		{`{"status":200,"body_base64":"/w==\n"}`, true},
		{`{"status":200,"body":"a","body_base64":""}`, true},
		{`{"status":200,"body":"\u003cb\u003e \u0026 \u2028\u2029 \ufffd \u0000\u001f \"\\\/\b\f\n\r\t \u00e9 \u00E9"}`, true},
		{`{"status":200,"body":"héllo ✓ 𝄞"}`, true},
		{`{"status":200,"headers":{"x-\u003c":"\u003e"}}`, true},
		{`{"error":{"code":"grant_not_found","message":"connect","connect_url":"https://a/c"}}`, true},
		{`{"error":{"code":"scope_reauth_required","message":"m","missing_scopes":["repo","read:org"]}}`, true},
		{`{"error":{"code":"x","message":"m","missing_scopes":[]}}`, true},
		{`{"error":{}}`, true},
		{`{"error":{"code":"","message":"empty code"}}`, true},
		{`{"status":200,"error":{"code":"timeout","message":"slow"}}`, true},
		{`{}`, true},
		{`{"headers":{}}`, true},

		// Anything else is encoding/json's to decide.
		{``, false},
		{`{`, false},
		{`null`, false},
		{`[]`, false},
		{` {"status":200}`, false},
		{`{"status":200} `, false},
		{`{"status":200}x`, false},
		{`{"status":200}{}`, false},
		{`{ "status" : 200 }`, false},
		{`{"status":200,}`, false},
		{`{,"status":200}`, false},
		{`{"Status":201}`, false},
		{`{"STATUS":201,"status":200}`, false},
		{`{"status":200,"Status":201}`, false},
		{`{"ſtatus":200}`, false},
		{`{"st\u0061tus":200}`, false},
		{`{"status":200,"status":201}`, false},
		{`{"status":200,"headers":{"a":"1"},"headers":{"b":"2"}}`, false},
		{`{"status":200,"body":"a","body":"b"}`, false},
		{`{"status":200,"unknown":[1,{"x":null}]}`, false},
		{`{"status":null}`, false},
		{`{"status":200,"headers":null}`, false},
		{`{"status":200,"body":null}`, false},
		{`{"error":null,"status":200}`, false},
		{`{"status":"200"}`, false},
		{`{"status":200.0}`, false},
		{`{"status":2e2}`, false},
		{`{"status":0200}`, false},
		{`{"status":-}`, false},
		{`{"status":1234567890123456789}`, false},
		{`{"status":99999999999999999999}`, false},
		{`{"status":true}`, false},
		{`{"status":200,"headers":[]}`, false},
		{`{"status":200,"headers":{"a":1}}`, false},
		{`{"status":200,"body":"\ud83d\ude00"}`, false},
		{`{"status":200,"body":"\ud83d"}`, false},
		{`{"status":200,"body":"\ude00x"}`, false},
		{`{"status":200,"body":"\u12"}`, false},
		{`{"status":200,"body":"\x"}`, false},
		{`{"status":200,"body":"\` + "\xff" + `"}`, false},
		{"{\"status\":200,\"body\":\"\xff\"}", false},
		{"{\"status\":200,\"body\":\"a\\n\xc3\"}", false},
		{"{\"status\":200,\"body\":\"tab\there\"}", false},
		{`{"status":200,"body":"unterminated}`, false},
		{`{"error":"boom"}`, false},
		{`{"error":{"code":"x","Message":"m"}}`, false},
		{`{"error":{"code":"x","code":"y"}}`, false},
		{`{"error":{"code":"x","missing_scopes":null}}`, false},
		{`{"error":{"code":"x","missing_scopes":["a",]}}`, false},
		{`{"error":{"code":"x","missing_scopes":["a",1]}}`, false},
		{`{"error":{"code":"x","extra":1}}`, false},
		{`{"error":{"code":"x"},"error":{"message":"m"}}`, false},
		{`{"status":"bad","error":{"code":"x"}}`, false},
	} {
		if fast := checkDecoding(t, []byte(tc.raw)); fast != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.raw, fast, tc.fast)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		`{"status":200,"headers":{"content-type":"application/json"},"body":"{\"login\":\"octocat\"}"}`,
		`{"status":200,"headers":{"a":"1","a":"2"},"body_base64":"/w=="}`,
		`{"status":-0,"body":"\u003c\u2028\ufffd\u00E9\/\b"}`,
		`{"error":{"code":"scope_reauth_required","message":"m","connect_url":"u","missing_scopes":["repo"]}}`,
		`{"error":{"code":"x","missing_scopes":[]},"status":1}`,
		`{"status":200,"headers":{"a":"1"},"headers":{"b":"2"}}`,
		`{"Status":200,"BODY":"x","Headers":{"A":"b"}}`,
		`{"status":200,"body":"\ud83d\ude00"}`,
		`{"status":1e2}`,
		`{"status":200,"body":null,"error":null}`,
		"{\"status\":200,\"body\":\"\xff\"}",
		` {"status" : 200 } `,
		`{}`,
		// Kept from fuzzing runs.
		`{"status":0,"headers":{"":"","":""},"a0aaaa00":""}`,
		"{\"aa\x92aa\":0,\"body\":\"\\u000a\\u1000\\uF0AA\\u00A0\\\"\\b\"}",
		"{\"body\":\"\\u0000\\u1000\x91\\u0080\\u00A0\\\"\\b\"}",
		"{\"body\":\"\\\"\\\"\xfa\xfa\\\"\"}",
		`{"status":0000000000000000`,
		`{"error":{"code":"0","message":"0","connect_url":"0","aaa0aaaaaaaaaa":["00"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkDecoding(t, raw) })
}

// FuzzHostReply feeds parseReply what the host's encoder writes, which the
// fast path must take whole.
func FuzzHostReply(f *testing.F) {
	f.Add(200, "Content-Type", "text/html", []byte("<p>héllo & \u2028</p>"), "", "", "", "")
	f.Add(404, "X-Two", "a\x00b\"\\", []byte{0xff, 0, 0x80}, "", "", "", "")
	f.Add(0, "", "", []byte(nil), "scope_reauth_required", "needs <repo>", "https://a/c?x=1&y=2", "repo")
	f.Add(-1, "\xff", "\xed\xa0\x80", []byte("\xf4\x90\x80\x80"), "", "\x7f\x1f", "", "")
	f.Fuzz(func(t *testing.T, status int, hkey, hval string, body []byte, code, msg, connect, scope string) {
		reply := abi.Reply{Response: abi.NewResponse(status, http.Header{hkey: {hval, hkey}, "Accept": {hval}}, body)}
		if code != "" || msg != "" {
			reply = abi.Reply{Error: &abi.Error{Code: abi.Code(code), Message: msg, ConnectURL: connect}}
			if scope != "" {
				reply.Error.MissingScopes = []string{scope, connect}
			}
		}
		raw, err := json.Marshal(reply)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecoding(t, raw) {
			t.Errorf("the fast path refused the host's %s", raw)
		}
	})
}

func BenchmarkEncodeRequest(b *testing.B) {
	r := Request{Method: "GET", URL: "https://api.example.com/user", Headers: map[string]string{"Accept": "application/json"}}
	b.ReportAllocs()
	for b.Loop() {
		appendRequest(nil, &r)
	}
}

func BenchmarkParseReply(b *testing.B) {
	raw, _ := json.Marshal(abi.Reply{Response: abi.NewResponse(200,
		http.Header{"Content-Type": {"application/json"}, "Date": {"Thu, 26 Nov 2026 11:32:01 GMT"}},
		[]byte(`{"login":"octocat","id":1,"html_url":"https://github.com/octocat","bio":"<none>"}`))})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseReply(raw); err != nil {
			b.Fatal(err)
		}
	}
}
