// Package provider is alterhost's registry of upstream OAuth 2.0 providers:
// the built-in presets (GitHub, Google, Slack, ...), providers defined in a
// JSON configuration file, and ones added in code such as the sandbox. A
// [Provider] builds consent URLs, exchanges codes, refreshes and revokes
// tokens; a [Registry] implements vault.Providers.
//
// Client secrets come from the environment only. A configuration file names
// the variable holding the secret (client_secret_env), never the secret
// itself, and nothing in this package prints, logs or encodes a secret.
package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/alterhost/alterhost/abi"
)

// Config describes one provider. It is what a configuration file holds under
// "providers", field names in snake_case; presets are Configs too.
type Config struct {
	// Name is the provider id manifests use, e.g. "github".
	Name string `json:"name"`
	// DisplayName is shown to people, e.g. "GitHub". Empty means Name.
	DisplayName string `json:"display_name,omitempty"`
	// AuthURL is the authorization endpoint the browser is sent to.
	AuthURL string `json:"auth_url"`
	// TokenURL is the token endpoint, for codes and refresh tokens.
	TokenURL string `json:"token_url"`
	// RevokeURL is the revocation endpoint; empty if the provider has none.
	// "{client_id}" in it is replaced by the client id (GitHub's API puts
	// the client id in the path).
	RevokeURL string `json:"revoke_url,omitempty"`
	// RevokeStyle says how RevokeURL is called; empty means RevokeRFC7009.
	RevokeStyle RevokeStyle `json:"revoke_style,omitempty"`
	// RevokeHeaders are extra headers sent to RevokeURL (Notion wants a
	// Notion-Version header there).
	RevokeHeaders map[string]string `json:"revoke_headers,omitempty"`
	// RevokeReplaced says that revoking a token at RevokeURL ends that
	// token alone, so a grant replaced by a new consent is revoked there.
	// Off, a replaced grant is revoked only when the two grants are known
	// to be of different accounts: at some providers (GitHub, Google,
	// Keycloak's offline tokens) revoking any token ends every token the
	// person granted this client, the new grant's included.
	RevokeReplaced bool `json:"revoke_replaced,omitempty"`
	// ReplacedRevokeURL, where RevokeURL ends the whole authorization, is
	// an endpoint of the same style that revokes the token sent alone
	// (GitHub's "delete an app token"): a replaced grant is revoked there.
	ReplacedRevokeURL string `json:"replaced_revoke_url,omitempty"`

	// ClientID is the OAuth client id. Empty in a preset means the preset
	// is not configured; the environment variable ALTERHOST_<NAME>_CLIENT_ID
	// fills it in.
	ClientID string `json:"client_id,omitempty"`
	// ClientSecretEnv is the NAME of the environment variable holding the
	// client secret. Empty means ALTERHOST_<NAME>_CLIENT_SECRET.
	ClientSecretEnv string `json:"client_secret_env,omitempty"`
	// Public marks a client without a secret: PKCE alone protects the code.
	Public bool `json:"public,omitempty"`

	// Scopes are asked for at every consent, besides the tools' own.
	Scopes []string `json:"scopes,omitempty"`
	// ScopeSeparator joins scopes in the authorization request; empty means
	// a space. Granted scopes in token responses are split on it and on
	// spaces and commas, since some providers (GitHub) answer with another
	// separator than they accept.
	ScopeSeparator string `json:"scope_separator,omitempty"`
	// ScopeParam is the authorization request's scope parameter; empty
	// means "scope". Slack asks for user-token scopes as "user_scope".
	ScopeParam string `json:"scope_param,omitempty"`
	// PKCE sends an S256 code challenge and the code verifier.
	PKCE bool `json:"pkce,omitempty"`
	// TokenAuth is how the client authenticates to the token and revocation
	// endpoints; empty means TokenAuthHeader (HTTP Basic, which RFC 6749
	// requires servers to support). Public clients always send client_id
	// in the body.
	TokenAuth TokenAuth `json:"token_auth,omitempty"`

	// APIHosts are the hosts the provider's access tokens may be sent to,
	// written like a manifest's allowed_hosts.
	APIHosts []abi.HostPattern `json:"api_hosts"`
	// ExtraAuthParams are added to every authorization request, e.g.
	// Google's access_type=offline. In a file entry that overrides a
	// preset, keys merge into the preset's, and a key set to "" is removed.
	ExtraAuthParams map[string]string `json:"extra_auth_params,omitempty"`

	// UserTokenField names a JSON object in the token response that holds
	// the person's token and takes precedence over the top level: Slack
	// returns a user token under "authed_user".
	UserTokenField string `json:"user_token_field,omitempty"`
	// AccountIDField is a dotted path to the upstream account id in the
	// token response, e.g. "authed_user.id"; empty if it has none.
	AccountIDField string `json:"account_id_field,omitempty"`
	// InvalidGrantErrors are token endpoint error codes that, like
	// "invalid_grant", mean a refresh token is gone for good (GitHub says
	// "bad_refresh_token", Slack "invalid_refresh_token").
	InvalidGrantErrors []string `json:"invalid_grant_errors,omitempty"`
}

// TokenAuth is how a client authenticates to the token endpoint.
type TokenAuth string

const (
	// TokenAuthHeader sends client_id and secret with HTTP Basic
	// (client_secret_basic).
	TokenAuthHeader TokenAuth = "header"
	// TokenAuthParams sends them as form parameters (client_secret_post).
	TokenAuthParams TokenAuth = "params"
)

// RevokeStyle is how a provider's revocation endpoint is called.
type RevokeStyle string

const (
	// RevokeRFC7009: POST token=... as a form, with client authentication.
	RevokeRFC7009 RevokeStyle = "rfc7009"
	// RevokeJSON: POST {"token": "..."} as JSON, with HTTP Basic client
	// authentication (Notion).
	RevokeJSON RevokeStyle = "json"
	// RevokeBearer: POST with the token to revoke as the bearer credential
	// (Slack's auth.revoke).
	RevokeBearer RevokeStyle = "bearer"
	// RevokeGitHub: DELETE {"access_token": "..."} as JSON with HTTP Basic
	// client authentication, which removes the whole authorization
	// (GitHub's DELETE /applications/{client_id}/grant).
	RevokeGitHub RevokeStyle = "github"
)

// Problem is one thing wrong with a provider's configuration: which entry,
// which field, what is wrong and how to fix it.
type Problem struct {
	// Entry is the index under "providers" in the file, or -1 when the
	// problem is not in the file (a preset and its environment variables).
	Entry int
	// Provider is the provider's name, if known.
	Provider string
	// Field is the JSON field at fault, e.g. "api_hosts[1]"; empty for the
	// entry as a whole.
	Field string
	// What is wrong, and Fix how to put it right.
	What string
	Fix  string
}

// String reads like: providers[2] ("acme") token_url: is missing; set it ...
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.Entry >= 0 && p.Provider != "":
		fmt.Fprintf(&b, "providers[%d] (%q)", p.Entry, p.Provider)
	case p.Entry >= 0:
		fmt.Fprintf(&b, "providers[%d]", p.Entry)
	case p.Provider != "":
		fmt.Fprintf(&b, "provider %q", p.Provider)
	default:
		b.WriteString("(document)")
	}
	if p.Field != "" {
		b.WriteString(" ")
		b.WriteString(p.Field)
	}
	b.WriteString(": ")
	b.WriteString(p.What)
	if p.Fix != "" {
		b.WriteString("; ")
		b.WriteString(p.Fix)
	}
	return b.String()
}

// ConfigError lists every problem found in the provider configuration.
type ConfigError struct {
	// File is the configuration file, or "" for presets and the
	// environment alone.
	File     string
	Problems []Problem
}

// Error lists the file and every problem, joined with "; and ".
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	b.WriteString("invalid provider configuration: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; and ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

var (
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// reservedAuthParams are set by AuthCodeURL itself; letting a config set
// them would silently break the flow or its protections.
var reservedAuthParams = []string{"response_type", "client_id", "redirect_uri", "state",
	"scope", "code_challenge", "code_challenge_method"}

// clone returns a deep copy, so decoding a file entry onto a preset or
// handing a Config out never touches shared slices and maps.
func (c Config) clone() Config {
	c.RevokeHeaders = cloneMap(c.RevokeHeaders)
	c.Scopes = slices.Clone(c.Scopes)
	c.APIHosts = slices.Clone(c.APIHosts)
	c.ExtraAuthParams = cloneMap(c.ExtraAuthParams)
	c.InvalidGrantErrors = slices.Clone(c.InvalidGrantErrors)
	return c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// normalize fills in defaults. It does not read the environment.
func (c *Config) normalize() {
	if c.ScopeSeparator == "" {
		c.ScopeSeparator = " "
	}
	if c.ScopeParam == "" {
		c.ScopeParam = "scope"
	}
	if c.TokenAuth == "" {
		c.TokenAuth = TokenAuthHeader
	}
	if c.RevokeURL != "" && c.RevokeStyle == "" {
		c.RevokeStyle = RevokeRFC7009
	}
	for k, v := range c.ExtraAuthParams {
		if v == "" { // "" removes a preset's parameter in an override
			delete(c.ExtraAuthParams, k)
		}
	}
}

// check returns every problem in c, which must be normalized. Secrets are
// not its business: see resolveSecret.
func (c *Config) check() []Problem {
	var ps []Problem
	add := func(field, what, fix string) {
		ps = append(ps, Problem{Entry: -1, Provider: c.Name, Field: field, What: what, Fix: fix})
	}
	ps = append(ps, c.checkWithManifestRules()...)
	for _, u := range []struct {
		field, value string
		required     bool
		example      string
	}{
		{"auth_url", c.AuthURL, true, "https://example.com/oauth/authorize"},
		{"token_url", c.TokenURL, true, "https://example.com/oauth/token"},
		{"revoke_url", strings.ReplaceAll(c.RevokeURL, "{client_id}", "client"), false, "https://example.com/oauth/revoke"},
	} {
		if u.value == "" {
			if u.required {
				add(u.field, "is missing", fmt.Sprintf("set it to the provider's endpoint, e.g. %q", u.example))
			}
			continue
		}
		if err := checkEndpoint(u.value); err != nil {
			add(u.field, err.Error(), fmt.Sprintf("use an https URL such as %q (plain http only on loopback)", u.example))
		}
	}
	switch c.RevokeStyle {
	case "", RevokeRFC7009, RevokeJSON, RevokeBearer, RevokeGitHub:
	default:
		add("revoke_style", fmt.Sprintf("%q is not a revocation style", c.RevokeStyle),
			`use "rfc7009", "json", "bearer" or "github"`)
	}
	if c.RevokeURL == "" && (c.RevokeStyle != "" || len(c.RevokeHeaders) > 0 || c.RevokeReplaced || c.ReplacedRevokeURL != "") {
		add("revoke_url", "is missing but revoke_style, revoke_headers, revoke_replaced or replaced_revoke_url is set",
			"set revoke_url, or drop the others")
	}
	for _, k := range sortedKeys(c.RevokeHeaders) {
		v := c.RevokeHeaders[k]
		switch {
		case !headerNameRE.MatchString(k):
			add("revoke_headers", fmt.Sprintf("%q is not a header name", k), "use a plain HTTP header name")
		case strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Type") ||
			strings.EqualFold(k, "Content-Length"):
			add("revoke_headers", fmt.Sprintf("%q is set by alterhost", k), "remove it")
		case strings.ContainsAny(v, "\r\n\x00"):
			add("revoke_headers."+k, "has a line break or NUL", "use a single-line value")
		}
	}
	switch c.TokenAuth {
	case TokenAuthHeader, TokenAuthParams:
	default:
		add("token_auth", fmt.Sprintf("%q is not a client authentication method", c.TokenAuth), `use "header" or "params"`)
	}
	if c.ClientSecretEnv != "" && !envNameRE.MatchString(c.ClientSecretEnv) {
		// The value is not echoed: it may be the secret itself, pasted in
		// the wrong field.
		add("client_secret_env", "is not an environment variable name",
			"name the variable that holds the secret (letters, digits, '_'), never the secret itself")
	}
	if c.Public && c.ClientSecretEnv != "" {
		add("client_secret_env", "is set on a public client", `drop it, or drop "public": true`)
	}
	for i, s := range c.Scopes {
		if strings.Contains(s, c.ScopeSeparator) || strings.Contains(s, ",") {
			add(fmt.Sprintf("scopes[%d]", i), fmt.Sprintf("%q contains a scope separator", s), "list one scope per entry")
		}
	}
	if strings.ContainsAny(c.ScopeSeparator, "\r\n") {
		add("scope_separator", "has a line break", `use " " or ","`)
	}
	if c.ScopeParam != "scope" && slices.Contains(reservedAuthParams, c.ScopeParam) {
		add("scope_param", fmt.Sprintf("%q is a parameter alterhost sets itself", c.ScopeParam), `use "scope" or the provider's own name for it`)
	}
	for _, k := range sortedKeys(c.ExtraAuthParams) {
		if slices.Contains(reservedAuthParams, k) || k == c.ScopeParam {
			add("extra_auth_params", fmt.Sprintf("%q is set by alterhost itself", k),
				"remove it; scopes go in scopes, PKCE in pkce")
		}
	}
	if c.UserTokenField != "" && strings.ContainsAny(c.UserTokenField, ". ") {
		add("user_token_field", "must be one top-level field name", `e.g. "authed_user"`)
	}
	if c.AccountIDField != "" {
		for _, part := range strings.Split(c.AccountIDField, ".") {
			if part == "" {
				add("account_id_field", "has an empty path element", `write a dotted path such as "owner.user.id"`)
				break
			}
		}
	}
	for i, code := range c.InvalidGrantErrors {
		if strings.TrimSpace(code) == "" {
			add(fmt.Sprintf("invalid_grant_errors[%d]", i), "is empty", "list OAuth error codes")
		}
	}
	return ps
}

// checkWithManifestRules checks the name, scopes and api_hosts with abi's
// own manifest validation, by parsing a throwaway manifest, so a provider
// accepts exactly the names, scopes and host patterns manifests do.
func (c *Config) checkWithManifestRules() []Problem {
	var ps []Problem
	add := func(field, what, fix string) {
		ps = append(ps, Problem{Entry: -1, Provider: c.Name, Field: field, What: what, Fix: fix})
	}
	doc, err := json.Marshal(map[string]any{
		"abi": abi.Version, "name": "provider-check", "version": "0",
		"provider": c.Name, "scopes": c.Scopes, "allowed_hosts": c.APIHosts,
		"tools": []map[string]string{{"name": "check", "description": "check"}},
	})
	if err != nil {
		add("", "cannot be checked: "+err.Error(), "")
		return ps
	}
	if c.Name == "" {
		add("name", "is missing", `set it to the provider id manifests use, e.g. "github"`)
	}
	if len(c.APIHosts) == 0 {
		add("api_hosts", "is empty, so its tokens could be sent nowhere",
			`list the API hosts, e.g. ["api.example.com"]`)
	}
	_, err = abi.ParseManifest("", doc)
	var me *abi.ManifestError
	if !errors.As(err, &me) {
		return ps
	}
	for _, p := range me.Problems {
		switch {
		case p.Field == "provider":
			add("name", p.What, "use 1-64 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit")
		case strings.HasPrefix(p.Field, "allowed_hosts"):
			add("api_hosts"+strings.TrimPrefix(p.Field, "allowed_hosts"), p.What, p.Fix)
		case strings.HasPrefix(p.Field, "scopes"):
			add(p.Field, p.What, p.Fix)
		}
	}
	return ps
}

// checkEndpoint requires https, or http on a loopback host (local test
// servers), and no credentials or fragment in the URL.
func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	if u.Host == "" || !u.IsAbs() {
		return errors.New("is not an absolute URL")
	}
	if u.User != nil {
		return errors.New("has credentials in it")
	}
	if u.Fragment != "" {
		return errors.New("has a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return errors.New("uses plain http on a host that is not loopback")
	default:
		return fmt.Errorf("has scheme %q", u.Scheme)
	}
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// EnvPrefix returns the prefix of a provider's environment variables:
// "ALTERHOST_GITHUB_" for "github". Characters other than letters and
// digits become '_'.
func EnvPrefix(name string) string {
	var b strings.Builder
	b.WriteString("ALTERHOST_")
	for _, r := range strings.ToUpper(name) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	return b.String()
}
