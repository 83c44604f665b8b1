// Package host is the alterhost server: it loads a plugins folder into an
// MCP server, opens the vault, and serves MCP over streamable HTTP or
// stdio beside the Connect pages through which people connect accounts.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/mcpserver"
	"github.com/alterhost/alterhost/host/metrics"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/host/tracing"
	"github.com/alterhost/alterhost/oauth/connect"
	"github.com/alterhost/alterhost/oauth/jwtverify"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/oauth/sandbox"
	"github.com/alterhost/alterhost/oauth/server"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store"
)

// Config is what a Server needs to start.
type Config struct {
	// PluginsDir is the folder of *.wasm plugins.
	PluginsDir string
	// DataDir holds the vault key, the embedded database and the
	// compilation cache. Empty keeps the cache in memory; the vault then
	// needs DatabaseURL and $ALTERHOST_VAULT_KEY.
	DataDir string
	// DatabaseURL selects PostgreSQL (postgres://...) instead of the
	// embedded SQLite file in DataDir.
	DatabaseURL string
	// ProvidersFile configures upstream providers beyond the presets'
	// defaults; empty for presets only.
	ProvidersFile string
	// BaseURL is alterhost's external URL, the root of Connect links.
	BaseURL string
	// Dev adds the sandbox provider: an OAuth server and API served by
	// alterhost itself, for trying the whole flow offline.
	Dev bool
	// AllowPrivateEgress lets plugins reach loopback and private addresses.
	AllowPrivateEgress bool
	// Auth makes alterhost an OAuth authorization server and requires its
	// bearer tokens at /mcp; calls act for the person the token names.
	// Without it every call acts for the local owner (stdio, --no-auth).
	Auth bool
	// AccessTokenTTL bounds the life of the access tokens the
	// authorization server issues; zero means its default (1 h).
	AccessTokenTTL time.Duration
	// TrustIssuer, with Auth, replaces alterhost's authorization server by
	// an external one: /mcp takes the JWT access tokens that issuer signs
	// for BaseURL/mcp, and calls act for their subject. Connect pages then
	// have no signed-in person and refuse every link (see httpSubject),
	// unless OIDC signs browsers in at the same issuer.
	TrustIssuer string
	// TrustJWKS is the external issuer's key set URL; empty discovers it.
	TrustJWKS string
	// OIDC, with Auth, signs people in through an OpenID Connect provider
	// instead of owner mode's links. With TrustIssuer its issuer must be
	// the same, and alterhost serves only the sign-in (Server.Signin), so
	// that Connect pages know the browser's person by the subject its
	// tokens carry.
	OIDC *server.OIDCConfig
	// Engine names the Wasm engine: "native" (alterhost's own Extism-ABI
	// kernel on wazero; the default) or "extism" (the Extism Go SDK, the
	// compatibility reference, much slower per call).
	Engine string
	// Isolation says which tool calls may share a guest instance; the
	// default lets no guest state cross between people.
	Isolation plugin.Isolation
	// Metrics, if set, records what the server does; its Handler is served
	// apart from MCP. Nil: nothing is recorded.
	Metrics *metrics.Metrics
	// Tracing, if set, traces each tool call (see host/tracing); nil
	// traces nothing.
	Tracing *tracing.Tracing
	// Stateless serves every MCP protocol revision without sessions, so any
	// instance behind a balancer can answer any request. Clients before
	// 2026-07-28 then get no server-to-client messages: no list_changed, no
	// URL elicitation (the Connect URL comes in the result's words).
	// 2026-07-28 and later are always served so.
	Stateless bool
	// NoWatch turns hot reload off: the plugins folder is read once, at
	// start. By default alterhost watches it and loads, swaps or drops a
	// plugin as its files change.
	NoWatch bool
	// Version is reported to MCP clients.
	Version string
	Logger  *slog.Logger
}

// Server is a loaded plugins folder and an open vault, ready to serve.
type Server struct {
	// Plugins is the plugins folder, kept loaded while the server runs.
	Plugins *plugin.Folder
	MCP     *mcp.Server
	Vault   *vault.Vault
	// Sandbox is the dev provider, or nil without Config.Dev.
	Sandbox *sandbox.Sandbox
	// Auth is the authorization server, or nil without Config.Auth or
	// with Config.TrustIssuer.
	Auth *server.Server
	// Trust checks the external issuer's tokens, or is nil without
	// Config.TrustIssuer.
	Trust *jwtverify.Verifier
	// Signin signs browsers in: Auth itself, or beside an external issuer
	// with Config.OIDC a server that serves only sign-in; nil otherwise.
	Signin *server.Server

	engine  engine.Engine
	store   store.Store
	auditor *vault.Auditor
	connect *connect.Service
	logger  *slog.Logger
	// verify checks the bearer tokens /mcp requires: Auth's or Trust's, or
	// nil when calls act for the local owner.
	verify auth.TokenVerifier
	// resourceMetadata is the RFC 9728 document's URL, for 401 challenges.
	resourceMetadata string
	// stateless: see Config.Stateless.
	stateless bool
	// draining is set when the server is about to stop: /readyz then
	// tells balancers to send it nothing new.
	draining atomic.Bool
	// stopBackground ends the sweeper of expired rows and the plugins
	// folder's watch; background counts them.
	stopBackground context.CancelFunc
	background     sync.WaitGroup
}

// sweepEvery is how often expired links, flows, codes, tokens and sessions
// are deleted.
const sweepEvery = 10 * time.Minute

// sweep deletes expired single-use rows now and every sweepEvery until ctx
// ends, so the tables hold only what can still be used.
func (s *Server) sweep(ctx context.Context) {
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		if err := s.store.DeleteExpired(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.logger.Warn("deleting expired rows failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// New opens the vault and loads every plugin in cfg.PluginsDir. A plugin
// that fails to load is logged with its reason and skipped; only a failure
// of the host itself is returned.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("base URL %q: want an absolute URL such as http://127.0.0.1:8080", cfg.BaseURL)
	}
	s := &Server{logger: logger, stateless: cfg.Stateless}
	defer func() {
		if err != nil {
			s.Close(context.WithoutCancel(ctx))
		}
	}()

	keys, err := seal.Load(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if s.store, err = vault.OpenStore(ctx, cfg.DatabaseURL, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("vault database: %w", err)
	}
	providers, err := provider.Load(cfg.ProvidersFile)
	if err != nil {
		return nil, err
	}
	var wrap func(http.RoundTripper) http.RoundTripper
	if cfg.Dev {
		s.Sandbox = sandbox.New(sandbox.Options{BaseURL: base.String(),
			RedirectURIs: []string{base.JoinPath("connect", sandbox.ProviderName, "callback").String()}})
		p, err := s.Sandbox.Provider()
		if err != nil {
			return nil, err
		}
		providers.Add(p)
		wrap = s.Sandbox.Wrap
	}
	if cfg.Tracing != nil {
		// Token refreshes and revocations get client spans inside the
		// tool call's trace, as plugins' upstream requests do.
		prop := cfg.Tracing.PropagateUpstream()
		providers.WrapTransport(func(rt http.RoundTripper) http.RoundTripper { return egress.TracedTransport(rt, prop) })
	}
	s.Vault = vault.New(s.store, keys, providers, logger)
	s.Vault.Observer = cfg.Metrics.Vault()
	s.auditor = vault.NewAuditor(s.store, logger)
	cfg.Metrics.ObserveAuditor(s.auditor)
	s.connect = &connect.Service{Store: s.store, Vault: s.Vault, Providers: providers, BaseURL: base,
		Observer: cfg.Metrics.Connect(),
		Subject:  s.httpSubject, SigninURL: s.signinURL, Logger: logger}
	s.Vault.Linker = s.connect

	cacheDir := ""
	if cfg.DataDir != "" {
		cacheDir = filepath.Join(cfg.DataDir, "cache", "wazero")
	}
	switch cfg.Engine {
	case "", "native":
		s.engine, err = engine.NewNative(engine.NativeOptions{CacheDir: cacheDir, Logger: logger})
	case "extism":
		s.engine, err = engine.NewExtism(engine.ExtismOptions{CacheDir: cacheDir, Logger: logger})
	default:
		err = fmt.Errorf("engine %q: want extism or native", cfg.Engine)
	}
	if err != nil {
		return nil, err
	}
	out := egress.New(egress.Options{Providers: providers, Credentials: s.Vault, Audit: s.auditor,
		AllowPrivate: cfg.AllowPrivateEgress, Transport: wrap, PropagateTrace: cfg.Tracing.PropagateUpstream()})
	h := &plugin.Host{Engine: s.engine, Outbound: out, Logger: logger, Metrics: cfg.Metrics, Isolation: cfg.Isolation}
	s.Plugins = h.OpenFolder(cfg.PluginsDir)
	_, errs := s.Plugins.Reload(ctx)
	cat := s.Plugins.Catalog()
	s.logReload(nil, cat, errs)
	if len(cat.Tools) == 0 {
		logger.Warn("no tools to serve", "plugins", cfg.PluginsDir)
	}
	// Loading leaves tens of MiB of garbage (module bytes, compiler
	// scratch); hand it back to the system now rather than at the next
	// scavenge, off the path to serving.
	go debug.FreeOSMemory()
	if cfg.TrustIssuer != "" && !cfg.Auth {
		return nil, errors.New("an external issuer needs authentication on: drop --no-auth and --stdio")
	}
	if cfg.OIDC != nil && !cfg.Auth {
		return nil, errors.New("OIDC sign-in needs authentication on: drop --no-auth and --stdio")
	}
	// A browser's session subject and a token's subject are compared as
	// strings: only one issuer's subjects may be mixed.
	if cfg.OIDC != nil && cfg.TrustIssuer != "" && cfg.OIDC.Issuer != cfg.TrustIssuer {
		return nil, fmt.Errorf("the OIDC issuer %s is not the trusted issuer %s: sign-in and access tokens must come from one issuer",
			cfg.OIDC.Issuer, cfg.TrustIssuer)
	}
	switch {
	case cfg.TrustIssuer != "":
		s.Trust, err = jwtverify.New(ctx, jwtverify.Options{Issuer: cfg.TrustIssuer, JWKSURL: cfg.TrustJWKS,
			Audience: base.JoinPath("mcp").String()})
		if err != nil {
			return nil, err
		}
		s.verify = s.Trust.Verify
		if cfg.OIDC != nil {
			if s.Signin, err = server.New(server.Options{Store: s.store, Issuer: base, OIDC: cfg.OIDC, Logger: logger,
				Observer: cfg.Metrics.OAuth()}); err != nil {
				return nil, err
			}
		}
	case cfg.Auth:
		s.Auth, err = server.New(server.Options{Store: s.store, Issuer: base, Owner: LocalOwner, OIDC: cfg.OIDC,
			Observer:  cfg.Metrics.OAuth(),
			Providers: func() []server.ProviderScopes { return providerScopes(s.Catalog(), providers) },
			Connect:   s.connect.ConnectURL,
			AccessTTL: cfg.AccessTokenTTL, Logger: logger})
		if err != nil {
			return nil, err
		}
		s.verify = s.Auth.Verify
		s.Signin = s.Auth
	}
	if s.Signin != nil {
		// A wrong issuer or an unreachable provider fails now, not at the
		// first sign-in.
		if err := s.Signin.DiscoverOIDC(ctx); err != nil {
			return nil, err
		}
	}
	if s.verify != nil {
		s.resourceMetadata = base.JoinPath(".well-known", "oauth-protected-resource", "mcp").String()
	}
	conns := &mcpserver.Connections{Connected: s.Vault.Connected}
	s.connect.Connected = conns.Completed
	tools := mcpserver.New(cat, mcpserver.Options{Version: cfg.Version, Logger: logger, Identify: s.toolSubject,
		Connections: conns, Tracer: cfg.Tracing.Provider()})
	s.MCP = tools.MCP()
	background, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopBackground = stop
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.sweep(background)
	}()
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		// Instances sharing PostgreSQL hear of each other's grant changes.
		if err := s.Vault.Watch(background); err != nil && background.Err() == nil {
			logger.Warn("grant changes by other instances show only as cached grants expire (30 s)", "error", err)
		}
	}()
	if !cfg.NoWatch {
		s.background.Add(1)
		go func() {
			defer s.background.Done()
			s.watch(background, tools)
		}()
	}
	return s, nil
}

// Catalog returns the plugins and tools serving now.
func (s *Server) Catalog() *plugin.Catalog { return s.Plugins.Catalog() }

// watch follows the plugins folder until ctx ends: what changes there is
// loaded, swapped or dropped, and MCP clients hear that the tools changed.
func (s *Server) watch(ctx context.Context, tools *mcpserver.Server) {
	prev := s.Plugins.Catalog()
	err := s.Plugins.Watch(ctx, func(cat *plugin.Catalog) {
		tools.Update(cat)
		s.logReload(prev, cat, nil)
		prev = cat
	}, func(errs []error) { s.logReload(nil, nil, errs) })
	if err != nil {
		s.logger.Warn("plugins are not reloaded when they change; restart alterhost after changing them", "error", err)
	}
}

// logReload logs the plugins that a (re)load brought in or dropped, and
// why others were skipped.
func (s *Server) logReload(prev, cat *plugin.Catalog, errs []error) {
	for _, err := range errs {
		s.logger.Error("plugin skipped", "error", err)
	}
	if cat == nil {
		return
	}
	was := map[*plugin.Plugin]bool{}
	if prev != nil {
		for _, p := range prev.Plugins {
			was[p] = true
		}
	}
	for _, p := range cat.Plugins {
		if !was[p] {
			s.logger.Info("plugin loaded", "plugin", p.Manifest.Name, "version", p.Manifest.Version,
				"file", p.File, "manifest", p.Source, "tools", len(p.Manifest.Tools))
		}
		delete(was, p)
	}
	for p := range was {
		if !slices.ContainsFunc(cat.Plugins, func(q *plugin.Plugin) bool { return q.Manifest.Name == p.Manifest.Name }) {
			s.logger.Info("plugin removed", "plugin", p.Manifest.Name, "file", p.File)
		}
	}
}

// Close stops every plugin, flushes the audit trail and closes the vault.
// Call it after in-flight calls have finished.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	if s.stopBackground != nil {
		s.stopBackground()
		s.background.Wait()
	}
	if s.Plugins != nil {
		errs = append(errs, s.Plugins.Close(ctx))
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close(ctx))
	}
	if s.Vault != nil {
		// Replaced grants being revoked upstream: each is bounded, so
		// this waits seconds at most, and a stop does not leave them live.
		if err := s.Vault.WaitRevocations(ctx); err != nil {
			s.logger.Warn("stopped before every replaced grant was revoked upstream", "error", err)
		}
	}
	if s.auditor != nil {
		s.auditor.Close()
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}

// maxRequestBody bounds one MCP HTTP request.
const maxRequestBody = 4 << 20

// Handler returns the HTTP routes: /mcp (streamable HTTP, with the SDK's
// DNS-rebinding protection and Go's cross-origin protection), the Connect
// pages under /connect/, the sandbox's pages under /sandbox/ with Dev, and
// /healthz. It performs no authentication: until the OAuth server exists,
// serve it only on loopback (see [CheckLoopback]).
func (s *Server) Handler() http.Handler { return s.routes(true) }

// ConnectHandler is Handler without /mcp, for stdio mode, where MCP runs on
// standard input and output but people still need the Connect pages.
func (s *Server) ConnectHandler() http.Handler { return s.routes(false) }

func (s *Server) routes(withMCP bool) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	r.Get("/readyz", s.readyz)
	if withMCP {
		mcpHandler := s.streamable()
		switch {
		case s.Auth != nil:
			// A valid token of this server, for this resource, or 401 with
			// the challenge that tells the client where to sign in.
			mcpHandler = requireToken(s.verify, s.resourceMetadata, []string{"mcp"}, mcpHandler)
		case s.Trust != nil:
			// The external issuer's scopes are its own to name: its token's
			// audience, this resource, is what admits it.
			mcpHandler = requireToken(s.verify, s.resourceMetadata, nil, mcpHandler)
		}
		r.Handle("/mcp", http.NewCrossOriginProtection().Handler(mcpHandler))
	}
	switch {
	case s.Auth != nil:
		s.Auth.Routes(r)
	case s.Signin != nil:
		// Beside an external issuer: sign-in only, so that Connect pages
		// know whose browser it is.
		s.Signin.SigninRoutes(r)
	}
	if s.Trust != nil {
		// RFC 9728: the external issuer is where clients sign in.
		prm := auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
			Resource: s.Trust.Audience(), AuthorizationServers: []string{s.Trust.Issuer()},
			BearerMethodsSupported: []string{"header"}, ResourceName: "alterhost"})
		r.Handle("/.well-known/oauth-protected-resource", prm)
		r.Handle("/.well-known/oauth-protected-resource/mcp", prm)
	}
	r.Group(func(r chi.Router) {
		// Disconnect is a POST from a page: refuse it from other origins.
		r.Use(http.NewCrossOriginProtection().Handler)
		s.connect.Routes(r)
	})
	if s.Sandbox != nil {
		r.Handle("/sandbox/*", s.Sandbox.BrowserHandler())
	}
	return r
}

// statelessVersion is the first protocol revision without sessions: its
// requests name it in the MCP-Protocol-Version header, and the SDK serves
// it only from a stateless handler.
const statelessVersion = "2026-07-28"

// streamable serves MCP over streamable HTTP in every revision the SDK
// speaks: 2026-07-28 and later statelessly, each request standing alone;
// older revisions in sessions, which 2025-11-25's server-to-client
// notifications (a URL elicitation's completion) need.
func (s *Server) streamable() http.Handler {
	server := func(*http.Request) *mcp.Server { return s.MCP }
	sessions := mcp.NewStreamableHTTPHandler(server,
		&mcp.StreamableHTTPOptions{Logger: s.logger, MaxRequestBodyBytes: maxRequestBody})
	stateless := mcp.NewStreamableHTTPHandler(server,
		&mcp.StreamableHTTPOptions{Logger: s.logger, MaxRequestBodyBytes: maxRequestBody, Stateless: true})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Dates compare as strings; the stateless handler refuses a
		// version it does not know.
		if s.stateless || r.Header.Get("MCP-Protocol-Version") >= statelessVersion {
			stateless.ServeHTTP(w, r)
			return
		}
		sessions.ServeHTTP(w, r)
	})
}

// Drain marks the server as stopping: /readyz answers 503 from now on, so
// a balancer stops sending new requests while those in flight finish.
func (s *Server) Drain() { s.draining.Store(true) }

// readyz is /readyz: 200 when this instance can serve (its database
// answers and it is not stopping), else 503 with the reason. /healthz
// only says the process lives.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "draining: shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		// The reason goes to the log; the answer names only the part.
		s.logger.Warn("not ready: the database does not answer", "error", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "database unreachable")
		return
	}
	fmt.Fprintln(w, "ready")
}

// ServeStdio serves MCP over standard input and output until the client
// disconnects or ctx ends.
func (s *Server) ServeStdio(ctx context.Context) error {
	return s.MCP.Run(ctx, &mcp.StdioTransport{})
}

// CheckLoopback refuses an address whose host is not a loopback IP or
// "localhost": without authentication, alterhost must not be reachable
// from other machines.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Errorf("--no-auth serves without authentication, so it binds only loopback (127.0.0.1, ::1, localhost); %q would listen on %s", addr, host)
}

// providerScopes lists the upstream providers the loaded tools use, with
// the scopes they need, for the consent page.
func providerScopes(cat *plugin.Catalog, providers *provider.Registry) []server.ProviderScopes {
	var out []server.ProviderScopes
	index := map[string]int{}
	for _, b := range cat.Tools {
		name := b.Tool.Provider
		if name == "" {
			continue
		}
		i, ok := index[name]
		if !ok {
			display := name
			if p, ok := providers.Lookup(name); ok {
				display = p.DisplayName()
			}
			i = len(out)
			index[name] = i
			out = append(out, server.ProviderScopes{Name: name, DisplayName: display})
		}
		for _, sc := range b.Tool.Scopes {
			if !slices.Contains(out[i].Scopes, sc) {
				out[i].Scopes = append(out[i].Scopes, sc)
			}
		}
	}
	return out
}
