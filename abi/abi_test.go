package abi_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/alterhost/alterhost/abi"
)

const valid = `{"abi":"alter/v1","name":"gh","version":"1.0.0","provider":"github","scopes":["repo"],
  "allowed_hosts":["api.github.com"],"tools":[
  {"name":"list","description":"List.","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}},
  {"name":"me","description":"Me.","export":"whoami","provider":"google","scopes":[],"output_schema":{"type":"object"}}]}`

func TestParseManifestDefaultsAndOverrides(t *testing.T) {
	m, err := abi.ParseManifest("gh.wasm", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	list, me := m.Tools[0], m.Tools[1]
	if m.Limits != abi.DefaultLimits {
		t.Errorf("limits = %+v; want defaults", m.Limits)
	}
	if list.Export != "list" || list.Result != abi.ResultText || list.Provider != "github" || strings.Join(list.Scopes, " ") != "repo" {
		t.Errorf("list = %+v", list)
	}
	if me.Export != "whoami" || me.Result != abi.ResultJSON || me.Provider != "google" || len(me.Scopes) != 0 {
		t.Errorf("me = %+v; want its own provider and its explicit empty scopes", me)
	}
	if err := list.InputSchemaResolved().Validate(map[string]any{"q": 1}); err == nil {
		t.Error("the compiled input schema accepted a number for a string")
	}
}

func TestParseManifestRejects(t *testing.T) {
	for _, tc := range []struct{ name, manifest, want string }{
		{"not json", `{"abi":`, "(document): not a valid manifest"},
		{"unknown field", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d"}],"extra":1}`, `unknown field "extra"`},
		{"trailing data", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d"}]} {}`, "data after the manifest"},
		{"abi", `{"abi":"alter/v2","name":"a","version":"1","tools":[{"name":"t","description":"d"}]}`, `abi: is "alter/v2"; set it to "alter/v1"`},
		{"name", `{"abi":"alter/v1","name":"A B","version":"1","tools":[{"name":"t","description":"d"}]}`, `name: "A B" is not a plugin name`},
		{"version", `{"abi":"alter/v1","name":"a","tools":[{"name":"t","description":"d"}]}`, "version: is missing"},
		{"no tools", `{"abi":"alter/v1","name":"a","version":"1","tools":[]}`, "tools: is empty"},
		{"tool name", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"a b","description":"d"}]}`, `tools[0].name: "a b" is not a tool name`},
		{"duplicate tool", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d"},{"name":"t","description":"d"}]}`, `tools[1].name: "t" is also the name of tools[0]`},
		{"description", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":" "}]}`, "tools[0].description: is missing"},
		{"export", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","export":"a-b"}]}`, `tools[0].export: "a-b" is not a function name`},
		{"input schema type", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","input_schema":{"type":"string"}}]}`, `tools[0].input_schema: has type "string", not "object"`},
		{"input schema invalid", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","input_schema":{"type":"object","properties":{"x":{"$ref":"#/$defs/missing"}}}}]}`, "tools[0].input_schema: is not a valid JSON Schema"},
		{"remote ref", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","input_schema":{"type":"object","$ref":"http://127.0.0.1:1/s.json"}}]}`, "tools[0].input_schema"},
		{"result", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","result":"xml"}]}`, `tools[0].result: "xml" is not a result kind`},
		{"output schema on text", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","result":"text","output_schema":{"type":"object"}}]}`, `tools[0].output_schema: is set but result is "text"`},
		{"scopes without provider", `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","scopes":["x"]}]}`, "tools[0].scopes: are set but the tool has no provider"},
		{"scope with space", `{"abi":"alter/v1","name":"a","version":"1","provider":"p","scopes":["a b"],"tools":[{"name":"t","description":"d"}]}`, `scopes[0]: "a b" is not a scope`},
		{"provider", `{"abi":"alter/v1","name":"a","version":"1","provider":"GitHub!","tools":[{"name":"t","description":"d"}]}`, `provider: "GitHub!" is not a provider name`},
		{"constraints", `{"abi":"alter/v1","name":"a","version":"1","constraints":[1],"tools":[{"name":"t","description":"d"}]}`, "constraints: is not a JSON object"},
		{"host with scheme", `{"abi":"alter/v1","name":"a","version":"1","allowed_hosts":["https://x.com"],"tools":[{"name":"t","description":"d"}]}`, "allowed_hosts[0]: is not a host"},
		{"host wildcard", `{"abi":"alter/v1","name":"a","version":"1","allowed_hosts":["api.*.com"],"tools":[{"name":"t","description":"d"}]}`, `allowed_hosts[0]: may use "*" only as the whole first label`},
		{"bare wildcard", `{"abi":"alter/v1","name":"a","version":"1","allowed_hosts":["*.com"],"tools":[{"name":"t","description":"d"}]}`, "allowed_hosts[0]: wildcards must stay under a registrable domain"},
		{"limit", `{"abi":"alter/v1","name":"a","version":"1","limits":{"timeout_ms":-1},"tools":[{"name":"t","description":"d"}]}`, "limits.timeout_ms: -1 is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := abi.ParseManifest("p.wasm", []byte(tc.manifest))
			var me *abi.ManifestError
			if !errors.As(err, &me) || !strings.HasPrefix(err.Error(), "p.wasm: invalid manifest: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want a ManifestError naming p.wasm and %q", err, tc.want)
			}
		})
	}
}

func TestManifestSchema(t *testing.T) {
	var s jsonschema.Schema
	if err := json.Unmarshal(abi.ManifestSchema, &s); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{"valid": valid, "config": withConfig}
	files, _ := filepath.Glob("../examples/*/*/alter.json")
	if len(files) == 0 {
		t.Fatal("no example manifests found")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(b)
	}
	for name, doc := range docs {
		var v any
		json.Unmarshal([]byte(doc), &v)
		if err := rs.Validate(v); err != nil {
			t.Errorf("%s: the schema rejects a manifest ParseManifest accepts: %v", name, err)
		}
		if _, err := abi.ParseManifest(name, []byte(doc)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var bad any
	json.Unmarshal([]byte(`{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d","result":"xml"}]}`), &bad)
	if rs.Validate(bad) == nil {
		t.Error("the schema accepts an unknown result kind")
	}
}

func TestHostPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, url string
		want         bool
	}{
		{"api.github.com", "https://api.github.com/user", true},
		{"api.github.com", "https://API.GitHub.com/user", true},
		{"api.github.com", "http://api.github.com/", true},
		{"api.github.com", "https://api.github.com:8443/", false},
		{"api.github.com", "https://api.github.com.evil.com/", false},
		{"api.github.com", "ftp://api.github.com/", false},
		{"*.googleapis.com", "https://gmail.googleapis.com/", true},
		{"*.googleapis.com", "https://googleapis.com/", false},
		{"*.googleapis.com", "https://evilgoogleapis.com/", false},
		{"127.0.0.1:8080", "http://127.0.0.1:8080/", true},
		{"127.0.0.1:8080", "http://127.0.0.1:8081/", false},
		{"[::1]:9000", "http://[::1]:9000/", true},
	} {
		u, _ := url.Parse(tc.url)
		if got := abi.HostPattern(tc.pattern).Match(u); got != tc.want {
			t.Errorf("%s matches %s = %v; want %v", tc.pattern, tc.url, got, tc.want)
		}
	}
	if abi.AllowedHost(nil, &url.URL{Scheme: "https", Host: "example.com"}) {
		t.Error("no patterns allowed a host")
	}
}

func TestParseRequest(t *testing.T) {
	r, err := abi.ParseRequest([]byte(`{"url":"https://x.com/a?b=1","query":{"c":"2","d":["3","4"]},"headers":{"Accept":"text/plain"},"body_base64":"AAE="}`), 10)
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "GET" || r.URL.Query().Encode() != "b=1&c=2&d=3&d=4" || r.Header.Get("Accept") != "text/plain" || string(r.Body) != "\x00\x01" {
		t.Errorf("request = %+v", r)
	}
	for _, tc := range []struct {
		raw  string
		code abi.Code
		msg  string
	}{
		{`not json`, abi.CodeBadRequest, "not a valid request object"},
		{`{"url":"https://x.com","verb":"GET"}`, abi.CodeBadRequest, `unknown field "verb"`},
		{`{}`, abi.CodeBadRequest, `"url" is required`},
		{`{"url":"/relative"}`, abi.CodeBadRequest, "must be absolute"},
		{`{"url":"https://user:pw@x.com/"}`, abi.CodeBadRequest, "must not carry user information"},
		{`{"url":"https://x.com","method":"GE T"}`, abi.CodeBadRequest, "not a valid HTTP method"},
		{`{"url":"https://x.com","headers":{"X-A":"a\r\nInjected: 1"}}`, abi.CodeBadRequest, "line break"},
		{`{"url":"https://x.com","headers":{"Bad Name":"a"}}`, abi.CodeBadRequest, "header name"},
		{`{"url":"https://x.com","body":"a","body_base64":"YQ=="}`, abi.CodeBadRequest, "not both"},
		{`{"url":"https://x.com","body_base64":"!!"}`, abi.CodeBadRequest, "not valid base64"},
		{`{"url":"https://x.com","query":{"a":1}}`, abi.CodeBadRequest, "string or a list of strings"},
		{`{"url":"https://x.com","body":"12345678901"}`, abi.CodeTooLarge, "at most 10"},
	} {
		_, err := abi.ParseRequest([]byte(tc.raw), 10)
		if err == nil || err.Code != tc.code || !strings.Contains(err.Message, tc.msg) {
			t.Errorf("%s: err = %v; want %s mentioning %q", tc.raw, err, tc.code, tc.msg)
		}
	}
}

func TestCustomSection(t *testing.T) {
	mod := []byte("\x00asm\x01\x00\x00\x00")
	if _, ok, err := abi.CustomSection(mod, abi.ManifestSection); ok || err != nil {
		t.Fatalf("empty module: ok=%v err=%v", ok, err)
	}
	once, err := abi.AppendCustomSection(mod, abi.ManifestSection, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	twice, _ := abi.AppendCustomSection(once, abi.ManifestSection, []byte("second"))
	got, ok, err := abi.CustomSection(twice, abi.ManifestSection)
	if !ok || err != nil || string(got) != "second" || len(twice) != len(once)+1 {
		t.Errorf("after embedding twice: %q ok=%v err=%v (sizes %d, %d)", got, ok, err, len(once), len(twice))
	}
	for _, bad := range [][]byte{[]byte("notwasm!"), append(mod, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f)} {
		if _, _, err := abi.CustomSection(bad, "x"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
