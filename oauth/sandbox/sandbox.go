// Package sandbox is a small OAuth 2.0 authorization server and API that
// alterhost serves itself with --dev, so the whole connect journey (consent,
// code exchange, refresh, revocation, credentialed API calls) runs on one
// machine without the internet, and tests can see what the host sent.
//
// It is reached two ways:
//
//   - The consent page, for the browser: BrowserHandler, which the host
//     mounts under /sandbox/ of its own address (Options.BaseURL).
//   - The token and revocation endpoints and the API, for the host: the
//     virtual host sandbox.alterhost.test (.test never resolves), served
//     in-process by Transport or Wrap with no network and no DNS.
//
// There is one client (Options.ClientID) and one resource owner,
// "sandbox-user", who is always signed in. Scopes are "read" and "write".
// State lives in memory and dies with the process.
package sandbox

import (
	"crypto/rand"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/oauth/provider"
)

const (
	// Host is the sandbox's virtual host name; the .test TLD is reserved
	// and never resolves, so only the in-process transport reaches it.
	Host = "sandbox.alterhost.test"
	// ProviderName is the provider id manifests use for the sandbox.
	ProviderName = "sandbox"
	// Account is the sandbox's only resource owner.
	Account = "sandbox-user"
	// ScopeRead lets a token list notes; ScopeWrite lets it add them.
	ScopeRead  = "read"
	ScopeWrite = "write"
	// DefaultClientID is the client id when Options.ClientID is empty.
	DefaultClientID = "alterhost"
	// DefaultAccessTokenTTL is the access token lifetime when
	// Options.AccessTokenTTL is zero.
	DefaultAccessTokenTTL = time.Hour
	// CodeLifetime is how long an authorization code stays usable.
	CodeLifetime = time.Minute
)

// Options configure a Sandbox.
type Options struct {
	// BaseURL is alterhost's external base URL, e.g. http://127.0.0.1:8080;
	// the consent page is BaseURL/sandbox/authorize. Empty means
	// http://127.0.0.1:8080.
	BaseURL string
	// AccessTokenTTL is the access tokens' lifetime; zero means
	// DefaultAccessTokenTTL. Tests use seconds.
	AccessTokenTTL time.Duration
	// Now is the sandbox's clock; nil means time.Now.
	Now func() time.Time
	// ClientID is the one registered client; empty means DefaultClientID.
	ClientID string
	// ClientSecret is its secret; empty means a random one, which
	// Provider passes on.
	ClientSecret string
	// ClientName is shown on the consent page; empty means "alterhost".
	ClientName string
	// RedirectURIs are the registered redirect URIs, matched exactly.
	// Besides them, any http URL on 127.0.0.1, [::1] or localhost is
	// accepted, whatever its port and path (as RFC 8252 does for native
	// apps), so a dev server on any loopback port works unregistered.
	RedirectURIs []string
	// Fallback receives Transport's requests for other hosts; nil refuses
	// them.
	Fallback http.RoundTripper
}

// Sandbox is the authorization server, its API and their state. Its
// methods are safe for concurrent use.
type Sandbox struct {
	opts    Options
	server  http.Handler // the virtual host
	browser http.Handler // the consent page

	mu      sync.Mutex
	codes   map[string]*authCode
	grants  map[string]*grant
	access  map[string]*accessToken
	refresh map[string]*refreshToken
	notes   []Note
	seen    []string
	seenSet map[string]bool

	refreshes atomic.Int64
	issued    atomic.Int64
}

// grant is one approval; revoking it kills every token issued under it.
type grant struct {
	scopes  []string
	revoked bool
}

type authCode struct {
	clientID, redirectURI, challenge string
	scopes                           []string
	expires                          time.Time
	// used marks a redeemed code; redeeming it again revokes grantID
	// (RFC 6749 §4.1.2).
	used    bool
	grantID string
}

type accessToken struct {
	grantID string
	scopes  []string
	expires time.Time
}

type refreshToken struct {
	grantID string
	// used marks a rotated-out token; presenting it again is taken as theft
	// and revokes the grant (RFC 9700 §4.14.2).
	used bool
}

// Note is one sandbox note.
type Note struct {
	ID        int       `json:"id"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

// maxSeen bounds SeenTokens.
const maxSeen = 1000

// New returns a Sandbox with no grants and no notes.
func New(opts Options) *Sandbox {
	if opts.BaseURL == "" {
		opts.BaseURL = "http://127.0.0.1:8080"
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "sbx_secret_" + rand.Text()
	}
	if opts.ClientName == "" {
		opts.ClientName = "alterhost"
	}
	opts.RedirectURIs = slices.Clone(opts.RedirectURIs)
	s := &Sandbox{
		opts:    opts,
		codes:   map[string]*authCode{},
		grants:  map[string]*grant{},
		access:  map[string]*accessToken{},
		refresh: map[string]*refreshToken{},
		seenSet: map[string]bool{},
	}
	s.server = s.serverHandler()
	s.browser = s.browserHandler()
	return s
}

// Config returns the sandbox's provider configuration: consent at
// BaseURL/sandbox/authorize, token and revocation on the virtual host,
// PKCE, tokens sent only to Host. Consent asks for "read" by default; a
// tool that needs "write" gets it through re-consent, which shows the
// scope_reauth_required path working.
func (s *Sandbox) Config() provider.Config {
	return provider.Config{
		Name:           ProviderName,
		DisplayName:    "Sandbox",
		AuthURL:        s.opts.BaseURL + "/sandbox/authorize",
		TokenURL:       "https://" + Host + "/oauth/token",
		RevokeURL:      "https://" + Host + "/oauth/revoke",
		RevokeStyle:    provider.RevokeRFC7009,
		ClientID:       s.opts.ClientID,
		Scopes:         []string{ScopeRead},
		ScopeSeparator: " ",
		PKCE:           true,
		TokenAuth:      provider.TokenAuthHeader,
		APIHosts:       []abi.HostPattern{Host},
	}
}

// Provider returns the sandbox as a provider, with the client secret and
// an HTTP client that reaches the virtual host in-process. opts come
// after those, so a test may replace either. It fails only if BaseURL is
// not a URL the provider package accepts (https, or http on loopback).
func (s *Sandbox) Provider(opts ...provider.Option) (*provider.Provider, error) {
	client := &http.Client{
		Transport:     s.Transport(),
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	all := append([]provider.Option{provider.WithClientSecret(s.opts.ClientSecret), provider.WithHTTPClient(client)}, opts...)
	return provider.New(s.Config(), all...)
}

// BrowserHandler serves the consent page at /sandbox/authorize; mount it
// at /sandbox/ on the host's own address. Cross-origin POSTs are refused.
func (s *Sandbox) BrowserHandler() http.Handler { return s.browser }

// Handler serves the virtual host: /oauth/token, /oauth/revoke and /api/.
// Transport and Wrap call it; it is exported for tests and for mounting
// elsewhere.
func (s *Sandbox) Handler() http.Handler { return s.server }

// RefreshCount returns how many refresh grants succeeded.
func (s *Sandbox) RefreshCount() int64 { return s.refreshes.Load() }

// IssuedTokens returns how many access tokens were issued, by code or
// refresh.
func (s *Sandbox) IssuedTokens() int64 { return s.issued.Load() }

// SeenTokens returns the distinct bearer tokens the API received, valid or
// not, in the order first seen (at most 1000).
func (s *Sandbox) SeenTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// TokenSeen reports whether the API received token as a bearer token.
func (s *Sandbox) TokenSeen(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seenSet[token]
}

// IssuedSecrets returns every access and refresh token the sandbox has
// issued and still knows, valid or not, so security tests can look for
// them where they must never be (plugin memory, logs, tool output).
func (s *Sandbox) IssuedSecrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.access)+len(s.refresh))
	for t := range s.access {
		out = append(out, t)
	}
	for t := range s.refresh {
		out = append(out, t)
	}
	return out
}

// Notes returns the notes, oldest first.
func (s *Sandbox) Notes() []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.notes)
}

// newToken returns a random token with a prefix saying what it is, which
// helps whoever reads a log of the sandbox.
func newToken(prefix string) string { return prefix + rand.Text() }

// pruneLocked drops expired codes and access tokens, so a long dev session
// does not grow without end.
func (s *Sandbox) pruneLocked(now time.Time) {
	for k, c := range s.codes {
		if now.After(c.expires.Add(CodeLifetime)) { // kept a while for replay detection
			delete(s.codes, k)
		}
	}
	for k, t := range s.access {
		if now.After(t.expires) {
			delete(s.access, k)
		}
	}
}
