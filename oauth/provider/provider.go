package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/vault"
)

// ErrRevokeUnsupported is wrapped by Revoke when the provider has no
// revocation endpoint (Microsoft, for one): the caller can only forget the
// token and tell the person where to remove the app's access.
var ErrRevokeUnsupported = errors.New("the provider has no token revocation endpoint")

// ErrNotConfigured is wrapped by calls that need a client id (and, for a
// confidential client, a secret) on a provider that has none.
var ErrNotConfigured = errors.New("the provider has no client id and secret configured")

// DefaultTimeout bounds each token and revocation request made with the
// default HTTP client.
const DefaultTimeout = 30 * time.Second

// Provider is one upstream OAuth 2.0 provider, ready to use. It implements
// vault.Provider. Its methods are safe for concurrent use.
type Provider struct {
	cfg Config
	// secret returns the client secret, or is nil. It is a closure because
	// fmt and encoders walk struct fields by reflection, unexported ones
	// included, even behind pointers when a verb does not fit; a func value
	// prints as an address whatever the verb.
	secret func() string
	client *http.Client
}

const redacted = "[redacted]"

// secretValue returns the client secret, or "".
func (p *Provider) secretValue() string {
	if p.secret == nil {
		return ""
	}
	return p.secret()
}

// Option configures New.
type Option func(*options)

type options struct {
	client    *http.Client
	secret    string
	secretSet bool
}

// WithHTTPClient makes token and revocation requests go through c, e.g. the
// sandbox's in-process transport. c should not follow redirects: a 307 from
// a token endpoint would replay the client secret to wherever it points.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClientSecret sets the client secret directly instead of reading the
// variable named by Config.ClientSecretEnv; for providers made in code.
func WithClientSecret(secret string) Option {
	return func(o *options) { o.secret, o.secretSet = secret, true }
}

// New checks cfg and returns its Provider. The client secret is the one
// given WithClientSecret, else the value of the environment variable
// cfg.ClientSecretEnv. A provider without a client id is valid but not
// Configured; one with a client id must have a secret unless cfg.Public.
func New(cfg Config, opts ...Option) (*Provider, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg = cfg.clone()
	cfg.normalize()
	ps := cfg.check()
	if !o.secretSet && envNameRE.MatchString(cfg.ClientSecretEnv) {
		o.secret = os.Getenv(cfg.ClientSecretEnv)
	}
	if p, bad := secretProblem(&cfg, o.secret, o.secretSet); bad {
		ps = append(ps, p)
	}
	if len(ps) > 0 {
		return nil, &ConfigError{Problems: ps}
	}
	return newProvider(cfg, o.secret, o.client), nil
}

// secretProblem reports a confidential client with a client id but no
// secret. explicit says the secret was given in code, not by variable.
func secretProblem(c *Config, secret string, explicit bool) (Problem, bool) {
	if c.ClientID == "" || c.Public || secret != "" || (!explicit && c.ClientSecretEnv != "" && !envNameRE.MatchString(c.ClientSecretEnv)) {
		return Problem{}, false // nothing missing, or check already said the name is bad
	}
	p := Problem{Entry: -1, Provider: c.Name, Field: "client_secret_env"}
	switch {
	case explicit:
		p.Field, p.What, p.Fix = "client secret", "is empty", `pass the secret, or mark the client "public"`
	case c.ClientSecretEnv == "":
		p.What = "is not set, and the client has no secret"
		p.Fix = fmt.Sprintf(`set it to the name of the variable holding the secret (by default %sCLIENT_SECRET), or set "public": true for a client without one`,
			EnvPrefix(c.Name))
	default:
		p.What = fmt.Sprintf("names %s, which is empty or unset", c.ClientSecretEnv)
		p.Fix = fmt.Sprintf(`export %s with the client secret, or set "public": true for a client without one`, c.ClientSecretEnv)
	}
	return p, true
}

// newProvider builds a Provider from a checked, normalized cfg.
func newProvider(cfg Config, secret string, client *http.Client) *Provider {
	if client == nil {
		client = &http.Client{
			Timeout: DefaultTimeout,
			// Never follow: a redirected token request would carry the
			// client secret and the code to another URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.UserTokenField != "" {
		c := *client
		c.Transport = &userTokenTransport{base: client.Transport, tokenURL: cfg.TokenURL, field: cfg.UserTokenField}
		client = &c
	}
	p := &Provider{cfg: cfg, client: client}
	if secret != "" {
		p.secret = func() string { return secret }
	}
	return p
}

// Name returns the provider id manifests use.
func (p *Provider) Name() string { return p.cfg.Name }

// DisplayName returns the name shown to people.
func (p *Provider) DisplayName() string {
	if p.cfg.DisplayName != "" {
		return p.cfg.DisplayName
	}
	return p.cfg.Name
}

// APIHosts returns the hosts the provider's tokens may be sent to.
func (p *Provider) APIHosts() []abi.HostPattern { return slices.Clone(p.cfg.APIHosts) }

// Scopes returns the scopes asked for at every consent.
func (p *Provider) Scopes() []string { return slices.Clone(p.cfg.Scopes) }

// PKCE reports whether the provider takes a PKCE code challenge; when it
// does, pass one to AuthCodeURL and its verifier to Exchange.
func (p *Provider) PKCE() bool { return p.cfg.PKCE }

// Config returns a copy of the provider's configuration (which holds the
// name of the secret's variable, never the secret).
func (p *Provider) Config() Config { return p.cfg.clone() }

// Configured reports whether the provider has a client id, and a secret
// unless it is a public client: only then can people connect.
func (p *Provider) Configured() bool {
	return p.cfg.ClientID != "" && (p.cfg.Public || p.secret != nil)
}

// CanRevoke reports whether the provider has a revocation endpoint.
func (p *Provider) CanRevoke() bool { return p.cfg.RevokeURL != "" }

// RevokeReplaced reports whether this provider can revoke one token
// alone (RevokeURL does, or ReplacedRevokeURL is set), so that a grant
// replaced by a new consent may be revoked (see vault.ReplacedRevoker).
func (p *Provider) RevokeReplaced() bool {
	return p.cfg.RevokeURL != "" && (p.cfg.RevokeReplaced || p.cfg.ReplacedRevokeURL != "")
}

// oauth2Config returns the x/oauth2 view of p for one request. It is built
// per call so the secret lives in p's box only.
func (p *Provider) oauth2Config(redirectURL string) *oauth2.Config {
	// An explicit style: x/oauth2's auto-detection retries a failed request
	// the other way, which would send a single-use code or a rotating
	// refresh token twice.
	style := oauth2.AuthStyleInHeader
	if p.cfg.TokenAuth == TokenAuthParams || p.cfg.Public {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.secretValue(),
		Endpoint:     oauth2.Endpoint{AuthURL: p.cfg.AuthURL, TokenURL: p.cfg.TokenURL, AuthStyle: style},
		RedirectURL:  redirectURL,
	}
}

// ctx hands p's HTTP client to x/oauth2, which takes it from the context.
func (p *Provider) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.client)
}

// AuthCodeURL returns the URL to send the person's browser to; the provider
// should be Configured, or the URL carries no client id. It asks for
// the provider's default scopes and then scopes (duplicates dropped),
// joined with the provider's separator. codeChallenge is the S256 challenge
// of the flow's verifier (oauth2.S256ChallengeFromVerifier); it is sent only
// when the provider takes PKCE.
func (p *Provider) AuthCodeURL(state, codeChallenge, redirectURL string, scopes []string) string {
	var opts []oauth2.AuthCodeOption
	if all := p.consentScopes(scopes); len(all) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam(p.cfg.ScopeParam, strings.Join(all, p.cfg.ScopeSeparator)))
	}
	if p.cfg.PKCE && codeChallenge != "" {
		opts = append(opts,
			oauth2.SetAuthURLParam("code_challenge", codeChallenge),
			oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	}
	for _, k := range sortedKeys(p.cfg.ExtraAuthParams) {
		opts = append(opts, oauth2.SetAuthURLParam(k, p.cfg.ExtraAuthParams[k]))
	}
	return p.oauth2Config(redirectURL).AuthCodeURL(state, opts...)
}

func (p *Provider) consentScopes(scopes []string) []string {
	var all []string
	for _, s := range slices.Concat(p.cfg.Scopes, scopes) {
		if s != "" && !slices.Contains(all, s) {
			all = append(all, s)
		}
	}
	return all
}

// Exchange trades an authorization code for a token. codeVerifier is the
// PKCE verifier (ignored if the provider does not take PKCE); redirectURL
// must be the one given to AuthCodeURL. The token's Scopes are those the
// response reports, or nil when it reports none: then the provider granted
// what was asked (RFC 6749 §5.1), and the caller, who knows what it asked
// for, should record that.
func (p *Provider) Exchange(ctx context.Context, code, codeVerifier, redirectURL string) (vault.Token, error) {
	if !p.Configured() {
		return vault.Token{}, fmt.Errorf("provider %q: %w", p.cfg.Name, ErrNotConfigured)
	}
	var opts []oauth2.AuthCodeOption
	if p.cfg.PKCE && codeVerifier != "" {
		opts = append(opts, oauth2.VerifierOption(codeVerifier))
	}
	tok, err := p.oauth2Config(redirectURL).Exchange(p.ctx(ctx), code, opts...)
	if err != nil {
		return vault.Token{}, p.tokenError("exchange", err)
	}
	return p.token(tok, ""), nil
}

// Refresh trades a refresh token for a new token, as vault.Provider asks.
// An error wraps vault.ErrInvalidGrant when the provider says the refresh
// token is gone for good. The new token's RefreshToken is empty when the
// provider kept the old one, and its Scopes nil when it did not say.
func (p *Provider) Refresh(ctx context.Context, refreshToken string) (vault.Token, error) {
	if !p.Configured() {
		return vault.Token{}, fmt.Errorf("provider %q: %w", p.cfg.Name, ErrNotConfigured)
	}
	if refreshToken == "" {
		return vault.Token{}, fmt.Errorf("provider %q: refresh: no refresh token", p.cfg.Name)
	}
	// A token with only a refresh token is never valid, so the source
	// refreshes at once.
	src := p.oauth2Config("").TokenSource(p.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken})
	tok, err := src.Token()
	if err != nil {
		return vault.Token{}, p.tokenError("refresh", err)
	}
	return p.token(tok, refreshToken), nil
}

// token converts an x/oauth2 token. x/oauth2 copies the old refresh token
// into a response that has none; vault.Provider wants "" for "kept".
func (p *Provider) token(t *oauth2.Token, oldRefresh string) vault.Token {
	out := vault.Token{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: t.Expiry}
	if oldRefresh != "" && out.RefreshToken == oldRefresh {
		out.RefreshToken = ""
	}
	if s, ok := t.Extra("scope").(string); ok {
		out.Scopes = p.splitScopes(s)
	}
	if p.cfg.AccountIDField != "" {
		out.AccountID = lookupString(t, p.cfg.AccountIDField)
	}
	return out
}

// splitScopes splits a token response's scope on the provider's separator
// and on spaces and commas: GitHub takes spaces but answers with commas.
func (p *Provider) splitScopes(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == ',' || strings.ContainsRune(p.cfg.ScopeSeparator, r)
	})
	if len(f) == 0 {
		return nil
	}
	return f
}

// lookupString follows a dotted path through the token response.
func lookupString(t *oauth2.Token, path string) string {
	parts := strings.Split(path, ".")
	v := t.Extra(parts[0])
	for _, k := range parts[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return ""
}

// TokenError is an error answer from a provider's token endpoint.
type TokenError struct {
	// Provider is the provider's name.
	Provider string
	// Op is "exchange" or "refresh".
	Op string
	// Status is the HTTP status; providers such as GitHub and Slack answer
	// errors with 200.
	Status int
	// Code is the OAuth error code, e.g. "invalid_grant"; empty if the
	// answer had none.
	Code string
	// Description is the answer's error_description, if any.
	Description string
	// InvalidGrant says the refresh token or code is gone for good; on a
	// refresh the error then wraps vault.ErrInvalidGrant.
	InvalidGrant bool
	err          error
}

// Error says which provider and operation failed, and the OAuth error,
// never the response body, which could hold anything.
func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "provider %q: %s: ", e.Provider, e.Op)
	if e.Code != "" {
		b.WriteString(e.Code)
		if e.Description != "" {
			b.WriteString(": ")
			b.WriteString(e.Description)
		}
	} else {
		b.WriteString("the token endpoint failed")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.InvalidGrant && e.Op == "refresh" {
		b.WriteString("; the person must connect again")
	}
	return b.String()
}

// Unwrap returns the *oauth2.RetrieveError and, for a refresh token that
// is gone, vault.ErrInvalidGrant.
func (e *TokenError) Unwrap() []error {
	errs := []error{e.err}
	if e.InvalidGrant && e.Op == "refresh" {
		errs = append(errs, vault.ErrInvalidGrant)
	}
	return errs
}

func (p *Provider) tokenError(op string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("provider %q: %s: %w", p.cfg.Name, op, err)
	}
	te := &TokenError{Provider: p.cfg.Name, Op: op, Code: re.ErrorCode, Description: re.ErrorDescription, err: re}
	if re.Response != nil {
		te.Status = re.Response.StatusCode
	}
	te.InvalidGrant = te.Code == "invalid_grant" || (te.Code != "" && slices.Contains(p.cfg.InvalidGrantErrors, te.Code))
	return te
}

// String describes p without its secret.
func (p *Provider) String() string {
	return fmt.Sprintf("provider %s (%s, client_id %q, client secret %s)", p.cfg.Name, p.DisplayName(),
		p.cfg.ClientID, p.secretState())
}

// GoString is String for %#v, so Go-syntax printing redacts too.
func (p *Provider) GoString() string {
	return fmt.Sprintf("&provider.Provider{Name: %q, ClientID: %q, ClientSecret: %q}", p.cfg.Name, p.cfg.ClientID, p.secretState())
}

func (p *Provider) secretState() string {
	if p.secret == nil {
		return "none"
	}
	return redacted
}

// providerJSON is what MarshalJSON writes: the configuration and whether
// a secret is present.
type providerJSON struct {
	Config
	Configured   bool   `json:"configured"`
	ClientSecret string `json:"client_secret"`
}

// MarshalJSON encodes p's configuration with the secret redacted.
func (p *Provider) MarshalJSON() ([]byte, error) {
	return json.Marshal(providerJSON{Config: p.cfg, Configured: p.Configured(), ClientSecret: p.secretState()})
}

// LogValue logs p without its secret.
func (p *Provider) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", p.cfg.Name),
		slog.String("client_id", p.cfg.ClientID),
		slog.Bool("configured", p.Configured()),
		slog.String("client_secret", p.secretState()),
	)
}
