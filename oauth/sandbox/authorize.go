package sandbox

import (
	"html/template"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// authorizeParams are the request parameters the consent form carries
// from the GET to the POST.
var authorizeParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method"}

// challengeRE is an S256 challenge: base64url of 32 bytes, unpadded.
var challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func (s *Sandbox) browserHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sandbox/authorize", s.authorize)
	mux.HandleFunc("POST /sandbox/authorize", s.authorize)
	// A page elsewhere must not be able to approve on the person's behalf.
	return http.NewCrossOriginProtection().Handler(mux)
}

// authRequest is a checked authorization request.
type authRequest struct {
	params      url.Values // the recognized parameters, as received
	redirectURI string
	state       string
	scopes      []string
	challenge   string
}

// authorize shows the consent page (GET) or acts on the decision (POST).
// Errors about the client or redirect URI are shown here, never sent to the
// redirect URI, which may be anyone's (RFC 6749 §4.1.2.1); the rest go
// back to the client.
func (s *Sandbox) authorize(w http.ResponseWriter, r *http.Request) {
	setPageHeaders(w)
	var in url.Values
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			s.errorPage(w, http.StatusBadRequest, "The form could not be read.")
			return
		}
		in = r.PostForm
	} else {
		in = r.URL.Query()
	}
	req, msg, oauthErr := s.checkAuthRequest(in)
	if msg != "" {
		s.errorPage(w, http.StatusBadRequest, msg)
		return
	}
	if oauthErr != "" {
		redirectBack(w, r, req.redirectURI, url.Values{"error": {oauthErr}, "error_description": {describe(oauthErr)}}, req.state)
		return
	}
	if r.Method == http.MethodGet {
		s.consentPage(w, r, req)
		return
	}
	switch r.PostForm.Get("decision") {
	case "approve":
		code := s.issueCode(req)
		redirectBack(w, r, req.redirectURI, url.Values{"code": {code}}, req.state)
	case "deny":
		redirectBack(w, r, req.redirectURI, url.Values{"error": {"access_denied"},
			"error_description": {"sandbox-user denied the request"}}, req.state)
	default:
		s.errorPage(w, http.StatusBadRequest, "Choose Approve or Deny.")
	}
}

// checkAuthRequest returns the request, or a message for the person (bad
// client or redirect URI), or an OAuth error code for the client.
func (s *Sandbox) checkAuthRequest(in url.Values) (req authRequest, msg, oauthErr string) {
	req.params = url.Values{}
	for _, k := range authorizeParams {
		if v, ok := in[k]; ok {
			if len(v) != 1 {
				return req, "The parameter " + k + " is repeated.", ""
			}
			req.params[k] = v
		}
	}
	if in.Get("client_id") != s.opts.ClientID {
		return req, "Unknown client_id: the sandbox knows only the client " + s.opts.ClientID + ".", ""
	}
	req.redirectURI = in.Get("redirect_uri")
	if !s.redirectAllowed(req.redirectURI) {
		return req, "This redirect_uri is not registered with the sandbox; use a registered one or an http URL on 127.0.0.1 or localhost.", ""
	}
	req.state = in.Get("state")
	if in.Get("response_type") != "code" {
		return req, "", "unsupported_response_type"
	}
	req.scopes = parseScopes(in.Get("scope"))
	if req.scopes == nil {
		return req, "", "invalid_scope"
	}
	req.challenge = in.Get("code_challenge")
	if in.Get("code_challenge_method") != "S256" || !challengeRE.MatchString(req.challenge) {
		return req, "", "invalid_request"
	}
	return req, "", ""
}

// parseScopes returns the asked-for scopes in canonical order, read when
// none are asked, or nil if one is unknown.
func parseScopes(s string) []string {
	asked := strings.Fields(s)
	if len(asked) == 0 {
		return []string{ScopeRead}
	}
	var out []string
	for _, sc := range []string{ScopeRead, ScopeWrite} {
		if slices.Contains(asked, sc) {
			out = append(out, sc)
		}
	}
	for _, sc := range asked {
		if sc != ScopeRead && sc != ScopeWrite {
			return nil
		}
	}
	return out
}

func describe(code string) string {
	switch code {
	case "unsupported_response_type":
		return "the sandbox supports response_type=code only"
	case "invalid_scope":
		return "the sandbox's scopes are read and write"
	case "invalid_request":
		return "PKCE is required: send code_challenge with code_challenge_method=S256"
	}
	return code
}

// redirectAllowed: a registered URI exactly, or any http URL on a loopback
// host (RFC 8252 §7.3), never with a fragment or credentials.
func (s *Sandbox) redirectAllowed(raw string) bool {
	if raw == "" {
		return false
	}
	if slices.Contains(s.opts.RedirectURIs, raw) {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// redirectBack sends the browser to the client's redirect URI with params
// and state added to its query.
func redirectBack(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	u, _ := url.Parse(redirectURI) // checked by redirectAllowed
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	// No form-action: browsers apply it to the redirect after the POST,
	// which goes to the client's own origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}

var pages = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox: allow {{.Client}}?</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; }
button { font-size: 1rem; padding: .5rem 1.5rem; margin-right: .75rem; }
.note { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>Sandbox</h1>
<p>Allow <strong>{{.Client}}</strong> to {{.Verb}} your sandbox notes?</p>
<ul>{{range .Scopes}}
<li><code>{{.}}</code></li>{{end}}
</ul>
<form method="post" action="{{.Action}}">
{{- range $k, $v := .Fields}}
<input type="hidden" name="{{$k}}" value="{{index $v 0}}">
{{- end}}
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
<p class="note">You are {{.Account}}. This is alterhost's built-in test provider: nothing here leaves this machine.</p>
</body>
</html>
{{define "error"}}<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sandbox: cannot continue</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; padding: 0 1rem">
<h1>Sandbox: cannot continue</h1>
<p>{{.}}</p>
</body>
</html>
{{end}}`))

func (s *Sandbox) consentPage(w http.ResponseWriter, r *http.Request, req authRequest) {
	verb := "read"
	switch {
	case slices.Equal(req.scopes, []string{ScopeRead, ScopeWrite}):
		verb = "read and write"
	case slices.Equal(req.scopes, []string{ScopeWrite}):
		verb = "write"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pages.Execute(w, map[string]any{
		"Client": s.opts.ClientName, "Verb": verb, "Scopes": req.scopes,
		"Action": r.URL.Path, "Fields": req.params, "Account": Account,
	})
}

func (s *Sandbox) errorPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = pages.ExecuteTemplate(w, "error", msg)
}

// issueCode records an approved request and returns its code.
func (s *Sandbox) issueCode(req authRequest) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	s.pruneLocked(now)
	code := newToken("sbx_code_")
	s.codes[code] = &authCode{clientID: s.opts.ClientID, redirectURI: req.redirectURI, challenge: req.challenge,
		scopes: req.scopes, expires: now.Add(CodeLifetime)}
	return code
}
