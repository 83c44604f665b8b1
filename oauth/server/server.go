// Package server is alterhost's own OAuth 2.1 authorization server, the
// one MCP clients (Claude, the MCP Inspector, the SDK clients) discover,
// register with, send their person through sign-in and consent, and get
// access tokens for /mcp from.
//
// It publishes RFC 9728 protected resource metadata and RFC 8414
// authorization server metadata, registers clients dynamically (RFC 7591),
// runs the authorization-code flow with PKCE S256 only, binds every code
// and token to this server's resource (RFC 8707), names itself in every
// authorization response (RFC 9207), rotates refresh tokens in families and
// revokes them (RFC 7009). Codes, tokens, client secrets and session ids
// are stored only as SHA-256 hashes; the raw values exist only in the
// responses that hand them out.
//
// Sign-in has two modes. In owner mode (the default) one person, the
// owner, signs in with a single-use link alterhost prints (SigninLink); no
// password exists. In OIDC mode (Options.OIDC) people sign in through an
// external OpenID Connect provider and act as the subject it names. The
// sign-in routes can also be served alone (SigninRoutes), for an alterhost
// whose tokens come from an external issuer but whose Connect pages must
// still know who the browser is.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/sync/singleflight"

	"github.com/alterhost/alterhost/vault/store"
)

// ProviderScopes is an upstream provider this server's tools use, with the
// scopes they ask for. The consent page lists each, with a Connect link, so
// a person can connect accounts before the first tool call needs them.
type ProviderScopes struct {
	Name        string // the provider's name, as in /connect/{provider}
	DisplayName string
	Scopes      []string
}

// Options configure a Server.
type Options struct {
	// Store keeps clients, codes, tokens, sessions and sign-in links.
	Store store.Store
	// Issuer is alterhost's external base URL, e.g. https://mcp.example.
	// It is the issuer identifier clients compare (RFC 8414, RFC 9207), so
	// it must be exactly what they reach alterhost at, without a path.
	Issuer *url.URL
	// Resource is the protected resource tokens are for (RFC 8707), the
	// audience Verify insists on. Default: Issuer + "/mcp".
	Resource string
	// Scopes are the scopes clients may ask for. Default: ["mcp"].
	Scopes []string
	// Owner is the subject a person signed in in owner mode acts as.
	// Required unless OIDC is set.
	Owner string
	// OIDC, if set, signs people in through an OpenID Connect provider
	// instead of owner mode's links.
	OIDC *OIDCConfig
	// Providers lists the upstream providers for the consent page, asked
	// each time the page is shown: the tools, and so the providers, change
	// as plugins are reloaded. Nil: none.
	Providers func() []ProviderScopes
	// Connect mints a Connect URL through which subject grants scopes at
	// provider (the Connect service's ConnectURL). Nil: the consent page
	// lists providers without Connect links.
	Connect func(ctx context.Context, subject, provider string, scopes []string) (string, error)
	// AccessTTL, RefreshTTL and CodeTTL bound the lives of access tokens,
	// refresh tokens and authorization codes; RefreshGrace is how long a
	// rotated refresh token may be presented again (a client retrying after
	// a lost response) before presenting it revokes its family. Defaults:
	// 1h, 30d, 1m, 30s.
	AccessTTL, RefreshTTL, CodeTTL, RefreshGrace time.Duration
	// MetadataClient fetches Client ID Metadata Documents: the https URLs
	// a client may present as its client_id instead of registering. Nil:
	// a client that reaches only public addresses (see cimd.go).
	MetadataClient *http.Client
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Observer hears of registrations, consents, tokens and sign-ins, for
	// metrics; nil: no one.
	Observer Observer
}

// authStore is what the server uses of Options.Store.
type authStore interface {
	store.AuthStore
	PutLink(ctx context.Context, l store.Link) error
	TakeLink(ctx context.Context, tokenHash []byte, now time.Time) (store.Link, error)
	// OIDC sign-in flows ride in Connect's flow rows (see startOIDC).
	PutConnectState(ctx context.Context, s store.ConnectState) error
	TakeConnectState(ctx context.Context, stateHash []byte, now time.Time) (store.ConnectState, error)
}

// Server is the authorization server. It is safe for concurrent use.
type Server struct {
	opts     Options
	store    authStore
	issuer   string // Issuer without a trailing slash, as published
	secure   bool   // https issuer: __Host- cookie with Secure
	resource *url.URL

	registerLimit *limiter // per remote IP
	tokenIPLimit  *limiter // per remote IP
	tokenLimit    *limiter // per client id
	signinLimit   *limiter // OIDC sign-ins started, per remote IP

	// oidc signs people in in OIDC mode; nil in owner mode.
	oidc *oidcSignin

	// fetches collapses concurrent fetches of one client metadata document.
	fetches singleflight.Group
}

// Lifetimes of what the server hands out, beyond the configurable ones.
const (
	signinLinkTTL = 15 * time.Minute
	sessionTTL    = 12 * time.Hour
)

// New checks opts, fills in defaults and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("oauth server: no store")
	}
	if opts.Issuer == nil || (opts.Issuer.Scheme != "https" && opts.Issuer.Scheme != "http") || opts.Issuer.Host == "" {
		return nil, errors.New("oauth server: the issuer must be an absolute http(s) URL")
	}
	// The well-known metadata paths are served at the root; an issuer with a
	// path would need them inserted before the path (RFC 8414 §3), which
	// nothing here does yet.
	if strings.Trim(opts.Issuer.Path, "/") != "" || opts.Issuer.RawQuery != "" || opts.Issuer.Fragment != "" {
		return nil, fmt.Errorf("oauth server: the issuer %s must not have a path, query or fragment", opts.Issuer)
	}
	if opts.Issuer.Scheme == "http" && !isLoopbackHost(opts.Issuer.Hostname()) {
		return nil, errors.New("oauth server: an http issuer is only allowed on loopback; use https")
	}
	if opts.Owner == "" && opts.OIDC == nil {
		return nil, errors.New("oauth server: no owner subject")
	}
	issuer := strings.TrimSuffix(opts.Issuer.String(), "/")
	if opts.Resource == "" {
		opts.Resource = issuer + "/mcp"
	}
	res, err := url.Parse(opts.Resource)
	if err != nil || res.Scheme == "" || res.Host == "" || res.Fragment != "" {
		return nil, fmt.Errorf("oauth server: bad resource %q", opts.Resource)
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = []string{"mcp"}
	}
	opts.Scopes = slices.Clone(opts.Scopes)
	for _, sc := range opts.Scopes {
		if !validScopeToken(sc) {
			return nil, fmt.Errorf("oauth server: bad scope %q", sc)
		}
	}
	setDefault(&opts.AccessTTL, time.Hour)
	setDefault(&opts.RefreshTTL, 30*24*time.Hour)
	setDefault(&opts.CodeTTL, time.Minute)
	setDefault(&opts.RefreshGrace, 30*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	var op *oidcSignin
	if opts.OIDC != nil {
		if op, err = newOIDCSignin(*opts.OIDC, issuer+oidcCallbackPath, opts.Now); err != nil {
			return nil, err
		}
		if op.admitsAnyone() {
			opts.Logger.Warn("oauth: OIDC sign-in admits everyone the issuer signs in; "+
				"limit it with allowed e-mail domains or people", "issuer", op.cfg.Issuer)
		}
	}
	return &Server{
		opts:     opts,
		store:    opts.Store,
		issuer:   issuer,
		secure:   opts.Issuer.Scheme == "https",
		resource: res,
		// Registration is rare for a real client (once per install; the
		// Inspector, once per connect): a burst of 20, then one every 10 s
		// per address, which keeps one address from filling the store.
		registerLimit: newLimiter(0.1, 20),
		// A token request follows every authorization and every hour of use;
		// these are far above that and far below guessing speed.
		tokenIPLimit: newLimiter(5, 30),
		tokenLimit:   newLimiter(2, 10),
		// Each OIDC start stores a flow for 10 minutes; a person needs a
		// handful, a script filling the store thousands.
		signinLimit: newLimiter(0.5, 30),
		oidc:        op,
	}, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Routes mounts the whole server on r: SigninRoutes and AuthServerRoutes.
func (s *Server) Routes(r chi.Router) {
	s.SigninRoutes(r)
	s.AuthServerRoutes(r)
}

// SigninRoutes mounts what signs a browser in and out:
//
//	GET  /signin?link=...&next=..., POST /signin   owner mode: the link; without one, the sign-in page
//	                                               (OIDC mode: redirects to the OIDC start)
//	GET  /signin/oidc?next=...                     OIDC mode: start, to the provider
//	GET  /signin/oidc/callback                     OIDC mode: the provider's redirect back
//	POST /signout                                  end the session (CSRF token, same origin)
func (s *Server) SigninRoutes(r chi.Router) {
	r.Get("/signin", s.signin)
	r.Post("/signin", s.signin)
	if s.oidc != nil {
		r.Get(oidcStartPath, s.oidcStart)
		r.Get(oidcCallbackPath, s.oidcCallback)
	}
	// The CSRF token alone would do; refusing cross-site posts outright
	// also keeps another site from even trying.
	r.Method(http.MethodPost, "/signout", http.NewCrossOriginProtection().Handler(http.HandlerFunc(s.signout)))
}

// AuthServerRoutes mounts the authorization server for MCP clients:
//
//	GET  /.well-known/oauth-protected-resource[/mcp]   RFC 9728
//	GET  /.well-known/oauth-authorization-server       RFC 8414
//	GET  /.well-known/openid-configuration             the same document
//	POST /register                                     RFC 7591
//	GET  /authorize, POST /authorize                   sign-in check, consent
//	POST /token                                        RFC 6749
//	POST /revoke                                       RFC 7009
func (s *Server) AuthServerRoutes(r chi.Router) {
	prm := cors(http.HandlerFunc(s.protectedResource))
	r.Handle("/.well-known/oauth-protected-resource", prm)
	if p := strings.TrimRight(s.resource.Path, "/"); p != "" {
		r.Handle("/.well-known/oauth-protected-resource"+p, prm)
	}
	asm := cors(http.HandlerFunc(s.authServerMetadata))
	r.Handle("/.well-known/oauth-authorization-server", asm)
	r.Handle("/.well-known/openid-configuration", asm)
	r.Handle("/register", cors(http.HandlerFunc(s.register)))
	r.Handle("/token", cors(http.HandlerFunc(s.token)))
	r.Handle("/revoke", cors(http.HandlerFunc(s.revoke)))
	r.Get("/authorize", s.authorize)
	r.Post("/authorize", s.consent)
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) endpoint(path string) string { return s.issuer + path }

// random returns n random bytes, base64url-encoded.
func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hash is how codes, tokens, secrets and session ids are stored: they are
// 256 random bits, so an unsalted SHA-256 is enough to make a leaked
// database useless for presenting them.
func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// isLoopbackHost reports whether host (without port or brackets) names
// this machine in the ways RFC 8252 §7.3 allows for redirect URIs.
func isLoopbackHost(host string) bool {
	return host == "127.0.0.1" || host == "::1" || host == "localhost"
}

// validScopeToken reports whether s is a scope-token of RFC 6749 §3.3.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// remoteIP is the key rate limits use. alterhost does not trust
// X-Forwarded-For: behind a proxy every client shares the proxy's bucket,
// which errs on the safe side.
func remoteIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
