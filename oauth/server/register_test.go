package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// unlimited lifts the registration limit for tests that register a lot.
func (e *env) unlimited() *env {
	e.srv.registerLimit = newLimiter(1000, 1000)
	return e
}

func TestRegistrationRejects(t *testing.T) {
	e := newEnv(t).unlimited()
	for name, tc := range map[string]struct {
		meta map[string]any
		code string
	}{
		"no redirect_uris":        {map[string]any{"client_name": "x"}, "invalid_redirect_uri"},
		"empty redirect_uris":     {map[string]any{"redirect_uris": []string{}}, "invalid_redirect_uri"},
		"javascript":              {map[string]any{"redirect_uris": []string{"javascript:alert(1)//"}}, "invalid_redirect_uri"},
		"JavaScript upper":        {map[string]any{"redirect_uris": []string{"JavaScript://x/%0aalert(1)"}}, "invalid_redirect_uri"},
		"data":                    {map[string]any{"redirect_uris": []string{"data:text/html,<script>alert(1)</script>"}}, "invalid_redirect_uri"},
		"file":                    {map[string]any{"redirect_uris": []string{"file:///etc/passwd"}}, "invalid_redirect_uri"},
		"vbscript":                {map[string]any{"redirect_uris": []string{"vbscript:msgbox"}}, "invalid_redirect_uri"},
		"fragment":                {map[string]any{"redirect_uris": []string{"https://app.example/cb#x"}}, "invalid_redirect_uri"},
		"empty fragment":          {map[string]any{"redirect_uris": []string{"https://app.example/cb#"}}, "invalid_redirect_uri"},
		"userinfo":                {map[string]any{"redirect_uris": []string{"https://app.example@evil.example/cb"}}, "invalid_redirect_uri"},
		"userinfo loopback":       {map[string]any{"redirect_uris": []string{"http://user:pw@127.0.0.1/cb"}}, "invalid_redirect_uri"},
		"http not loopback":       {map[string]any{"redirect_uris": []string{"http://app.example/cb"}}, "invalid_redirect_uri"},
		"http loopback lookalike": {map[string]any{"redirect_uris": []string{"http://127.0.0.1.evil.example/cb"}}, "invalid_redirect_uri"},
		"intent":                  {map[string]any{"redirect_uris": []string{"intent://cb#Intent;scheme=x;end"}}, "invalid_redirect_uri"},
		"intent without fragment": {map[string]any{"redirect_uris": []string{"intent://cb"}}, "invalid_redirect_uri"},
		"view-source":             {map[string]any{"redirect_uris": []string{"view-source:https://app.example/"}}, "invalid_redirect_uri"},
		"relative":                {map[string]any{"redirect_uris": []string{"/cb"}}, "invalid_redirect_uri"},
		"space":                   {map[string]any{"redirect_uris": []string{"https://app.example/c b"}}, "invalid_redirect_uri"},
		"one bad of two":          {map[string]any{"redirect_uris": []string{"https://app.example/cb", "javascript:x"}}, "invalid_redirect_uri"},
		"implicit grant":          {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "grant_types": []string{"implicit"}}, "invalid_client_metadata"},
		"token response":          {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "response_types": []string{"token"}}, "invalid_client_metadata"},
		"auth method":             {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"},
		"long name":               {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "client_name": strings.Repeat("n", 201)}, "invalid_client_metadata"},
		"control in name":         {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "client_name": "a\x00b"}, "invalid_client_metadata"},
		"bidi override in name":   {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "client_name": "Claude\u202egnp.exe"}, "invalid_client_metadata"},
		"scope":                   {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "scope": "mcp admin"}, "invalid_client_metadata"},
		"wrong type":              {map[string]any{"redirect_uris": "https://app.example/cb"}, "invalid_client_metadata"},
		"client_uri javascript":   {map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "client_uri": "javascript:alert(1)"}, "invalid_client_metadata"},
	} {
		t.Run(name, func(t *testing.T) {
			status, m := e.register(tc.meta)
			if status != http.StatusBadRequest || m["error"] != tc.code {
				t.Fatalf("%d %v, want 400 %s", status, m, tc.code)
			}
		})
	}
}

func TestRegistrationAccepts(t *testing.T) {
	e := newEnv(t).unlimited()
	for _, uri := range []string{"https://claude.ai/api/mcp/auth_callback", "http://127.0.0.1:6274/oauth/callback",
		"http://localhost/cb", "http://[::1]:8080/cb", "com.example.app:/oauth2redirect", "https://app.example/cb?x=1",
		"cursor://anysphere.cursor-retrieval/oauth/user-alterhost/callback", "myapp://cb"} {
		status, m := e.register(map[string]any{"redirect_uris": []string{uri}, "unknown_field": map[string]any{"tolerated": true},
			"software_statement": "eyJ.x.y"})
		if status != http.StatusCreated {
			t.Fatalf("%s: %d %v", uri, status, m)
		}
		// Defaults are stated, and nothing unsupported is echoed back.
		if m["token_endpoint_auth_method"] != "none" || m["client_secret"] != nil || m["software_statement"] != nil ||
			m["client_id_issued_at"] == nil || !strings.HasPrefix(m["client_id"].(string), "ahc_") {
			t.Fatalf("%s: %v", uri, m)
		}
		gts, _ := json.Marshal(m["grant_types"])
		if string(gts) != `["authorization_code","refresh_token"]` {
			t.Fatalf("grant_types %s", gts)
		}
	}
}

func TestRegistrationMalformed(t *testing.T) {
	e := newEnv(t).unlimited()
	for name, body := range map[string]string{
		"not json":  `redirect_uris=https://app.example/cb`,
		"truncated": `{"redirect_uris": ["https://app.example/cb"]`,
		"array":     `[{"redirect_uris": ["https://app.example/cb"]}]`,
		"trailing":  `{"redirect_uris": ["https://app.example/cb"]} {}`,
		"empty":     ``,
	} {
		status, m := e.postJSON("/register", []byte(body))
		if status != http.StatusBadRequest || m["error"] == nil {
			t.Errorf("%s: %d %v", name, status, m)
		}
	}
	// Oversized: refused before it is parsed.
	big := `{"redirect_uris": ["https://app.example/cb"], "client_name": "x", "padding": "` +
		strings.Repeat("a", 64<<10) + `"}`
	status, m := e.postJSON("/register", []byte(big))
	if status != http.StatusRequestEntityTooLarge || m["error"] != "invalid_client_metadata" {
		t.Fatalf("oversized: %d %v", status, m)
	}
	// Not JSON by its content type.
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/register", bytes.NewReader([]byte(`{"redirect_uris":["https://app.example/cb"]}`)))
	req.Header.Set("Content-Type", "text/plain")
	resp, _ := e.do(http.DefaultClient, req)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("text/plain: %d", resp.StatusCode)
	}
	// GET is not registration.
	resp, _ = e.get(http.DefaultClient, e.ts.URL+"/register")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

func TestRegistrationRateLimit(t *testing.T) {
	e := newEnv(t)
	meta := map[string]any{"redirect_uris": []string{"https://app.example/cb"}}
	limited := false
	for i := range 25 {
		status, _ := e.register(meta)
		if status == http.StatusTooManyRequests {
			if i < 20 {
				t.Fatalf("limited after %d registrations", i)
			}
			limited = true
			break
		}
		if status != http.StatusCreated {
			t.Fatalf("registration %d: %d", i, status)
		}
	}
	if !limited {
		t.Fatal("25 registrations from one address in a row were all accepted")
	}
}

func TestTokenRateLimit(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "code": {"guess"},
		"code_verifier": {strings.Repeat("v", 43)}, "redirect_uri": {redirect}}
	for i := range 40 {
		status, _ := e.postForm("/token", form, "", "")
		if status == http.StatusTooManyRequests {
			if i < 10 {
				t.Fatalf("limited after %d requests", i)
			}
			return
		}
		if status != http.StatusBadRequest {
			t.Fatalf("request %d: %d", i, status)
		}
	}
	t.Fatal("40 code guesses in a row for one client were all answered")
}
