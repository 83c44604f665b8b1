package server

import (
	"html/template"
	"net/http"
)

// basePolicy is every page's Content-Security-Policy: no scripts, no
// loads of any kind, inline styles only, never in a frame (clickjacking
// the approve button), and forms only to this server.
const basePolicy = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"

// setPageHeaders sets the headers every HTML response carries. formTarget,
// if not empty, is a CSP source added to form-action: Chromium applies
// form-action to the redirects that follow a form submission, so the
// consent page must allow the one redirect URI its POST answers with, or
// the browser would block the approval's redirect back to the client.
func setPageHeaders(w http.ResponseWriter, formTarget string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	policy := basePolicy
	if formTarget != "" {
		policy += " " + formTarget
	}
	h.Set("Content-Security-Policy", policy)
}

const layout = `{{define "top"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}} · alterhost</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.warn{border-left:4px solid #b60;padding:.3rem .8rem;background:#fff6e5}
code{background:#f2f2f2;padding:0 .2rem}button{font:inherit;padding:.4rem 1.2rem;margin-right:.6rem}
ul{padding-left:1.2rem}input[type=text]{font:inherit;width:100%;box-sizing:border-box}</style>
</head><body><main><h1>{{.Title}}</h1>{{end}}
{{define "bottom"}}</main></body></html>
{{end}}`

var pages = template.Must(template.New("pages").Parse(layout + `
{{define "message"}}{{template "top" .}}{{if .Detail}}<p>{{.Detail}}</p>{{end}}{{template "bottom" .}}{{end}}

{{define "signin"}}{{template "top" .}}
<p>To go on, sign in to this alterhost as its owner.</p>
<p>This alterhost runs in <strong>owner mode</strong>: one person uses it, and signs in with a
single-use link instead of a password. Open the sign-in link alterhost printed when it started,
or run <code>alterhost signin-link</code> on its machine for a fresh one, in this browser.
Then come back here, or paste the link below.</p>
<form method="post" action="/signin">
<input type="hidden" name="next" value="{{.Next}}">
<p><label for="link">Sign-in link</label><br><input type="text" id="link" name="link" autocomplete="off" required></p>
<p><button type="submit">Sign in</button></p>
</form>
{{template "bottom" .}}{{end}}

{{define "signin-confirm"}}{{template "top" .}}
<p>Sign in to this alterhost as its owner, in this browser?</p>
<form method="post" action="/signin">
<input type="hidden" name="link" value="{{.Link}}">
<input type="hidden" name="next" value="{{.Next}}">
<p><button type="submit">Sign in</button></p>
</form>
<p><small>The link works once, for 15 minutes. Opening it only shows this page, so an app that
previews links does not use it up.</small></p>
{{template "bottom" .}}{{end}}

{{define "consent"}}{{template "top" .}}
<p><strong>{{.ClientName}}</strong> wants to use the tools of this alterhost as you ({{if .Name}}{{.Name}}, subject <code>{{.Subject}}</code>{{else}}{{.Subject}}{{end}}).</p>
{{if .Loopback}}<p class="warn">This client receives the approval on <strong>this computer</strong>
({{.RedirectHost}}), not on a website. Any program running here can register with any name:
approve only if you just asked a client on this computer to connect.</p>
{{else if .Native}}<p class="warn">This client receives the approval through the app link
<strong>{{.RedirectHost}}</strong>, which any app on this device may claim: approve only if you just
asked an app to connect.</p>
{{else}}<p>After you approve, you return to <strong>{{.RedirectHost}}</strong>.
Approve only if you trust that site.</p>{{end}}
<p>Permissions asked for:</p>
<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>
<p>Access lasts until you revoke it in the client, or it stops refreshing for {{.RefreshDays}} days.</p>
{{if .Providers}}<p>The tools act on these accounts of yours. Connect them now, or when a tool first
needs them:</p>
<ul>{{range .Providers}}<li>{{.DisplayName}}{{if .Scopes}} ({{range $i, $s := .Scopes}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}){{end}}
{{if .ConnectURL}} — <a href="{{.ConnectURL}}" target="_blank" rel="noopener noreferrer">Connect</a>{{end}}</li>{{end}}</ul>{{end}}
<form method="post" action="/authorize">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{range .Params}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<p><button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>
<p><small>Client id: <code>{{.ClientID}}</code></small></p>
<form method="post" action="/signout">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<p><small>Not you? <button type="submit">Sign out</button></small></p>
</form>
{{template "bottom" .}}{{end}}

{{define "refused"}}{{template "top" .}}
<p>You signed in at <strong>{{.Issuer}}</strong> as {{if .Email}}<strong>{{.Email}}</strong>
(subject <code>{{.Subject}}</code>){{else}}subject <code>{{.Subject}}</code>{{end}}.
This alterhost does not admit that account{{if .Unverified}}: its e-mail address is not verified
there, and this alterhost admits people by verified address{{end}}.</p>
<p>Nothing was stored. If you have another account there, sign out of it at the sign-in service and
start again from your application; otherwise ask this alterhost's operator to admit you.</p>
{{template "bottom" .}}{{end}}
`))

// messagePage is a page that says one thing: an error, or "signed in".
type messagePage struct{ Title, Detail string }

type signinPage struct {
	Title string
	Next  string
	// Link is the sign-in link's token, on the page that asks to use it.
	Link string
}

// refusedPage tells a person the OIDC provider signed in who they are and
// that this alterhost does not admit them.
type refusedPage struct {
	Title, Issuer, Subject, Email string
	Unverified                    bool
}

type providerView struct {
	DisplayName string
	Scopes      []string
	ConnectURL  string
}

type param struct{ Name, Value string }

type consentPage struct {
	Title, ClientName, ClientID, Subject string
	Name                                 string // the person's e-mail address, in OIDC mode
	RedirectHost                         string
	Loopback, Native                     bool
	Scopes                               []string
	RefreshDays                          int
	Providers                            []providerView
	CSRF                                 string
	Params                               []param
}

func (s *Server) render(w http.ResponseWriter, status int, formTarget, name string, data any) {
	setPageHeaders(w, formTarget)
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		s.opts.Logger.Error("oauth: rendering a page failed", "page", name, "error", err)
	}
}

// message renders a one-line page.
func (s *Server) message(w http.ResponseWriter, status int, title, detail string) {
	s.render(w, status, "", "message", messagePage{title, detail})
}

// pageError logs err and shows a page that reveals nothing of it.
func (s *Server) pageError(w http.ResponseWriter, step string, err error) {
	s.opts.Logger.Error("oauth: "+step+" failed", "error", err)
	s.message(w, http.StatusInternalServerError, "Something went wrong",
		"Try again; if it keeps failing, ask the operator to check alterhost's log.")
}

// serverError logs err and answers a JSON endpoint with server_error.
func (s *Server) serverError(w http.ResponseWriter, step string, err error) {
	s.opts.Logger.Error("oauth: "+step+" failed", "error", err)
	writeJSON(w, http.StatusInternalServerError, oauthError{"server_error", "try again later"})
}
