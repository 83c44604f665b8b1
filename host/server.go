// Package host is the alterhost server: it loads a plugins folder into an
// MCP server and serves it over streamable HTTP or stdio.
package host

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/mcpserver"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/vault/egress"
)

// Config is what a Server needs to start.
type Config struct {
	// PluginsDir is the folder of *.wasm plugins.
	PluginsDir string
	// CacheDir holds compiled machine code across restarts; empty keeps
	// it in memory.
	CacheDir string
	// Version is reported to MCP clients.
	Version string
	Logger  *slog.Logger
}

// Server is a loaded plugins folder, ready to serve MCP.
type Server struct {
	Catalog *plugin.Catalog
	MCP     *mcp.Server
	engine  engine.Engine
	logger  *slog.Logger
}

// New loads every plugin in cfg.PluginsDir. A plugin that fails to load is
// logged with its reason and skipped; only a failure of the host itself is
// returned.
func New(ctx context.Context, cfg Config) (*Server, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	eng, err := engine.NewExtism(engine.ExtismOptions{CacheDir: cfg.CacheDir, Logger: logger})
	if err != nil {
		return nil, err
	}
	h := &plugin.Host{Engine: eng, Outbound: egress.New(egress.Options{}), Logger: logger}
	cat, errs := h.LoadDir(ctx, cfg.PluginsDir)
	for _, err := range errs {
		logger.Error("plugin skipped", "error", err)
	}
	for _, p := range cat.Plugins {
		logger.Info("plugin loaded", "plugin", p.Manifest.Name, "version", p.Manifest.Version,
			"file", p.File, "manifest", p.Source, "tools", len(p.Manifest.Tools))
	}
	if len(cat.Tools) == 0 {
		logger.Warn("no tools to serve", "plugins", cfg.PluginsDir)
	}
	srv := &Server{Catalog: cat, engine: eng, logger: logger}
	srv.MCP = mcpserver.New(cat, cfg.Version, logger, srv.toolSubject)
	return srv, nil
}

// Close stops every plugin and the engine. Call it after in-flight calls
// have finished.
func (s *Server) Close(ctx context.Context) error {
	err := s.Catalog.Close(ctx)
	if cerr := s.engine.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// maxRequestBody bounds one MCP HTTP request.
const maxRequestBody = 4 << 20

// Handler returns the HTTP routes: /mcp (streamable HTTP, with the SDK's
// DNS-rebinding protection and Go's cross-origin protection) and /healthz.
// It performs no authentication: until the OAuth server exists, serve it
// only on loopback (see [CheckLoopback]).
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	streamable := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.MCP },
		&mcp.StreamableHTTPOptions{Logger: s.logger, MaxRequestBodyBytes: maxRequestBody})
	r.Handle("/mcp", http.NewCrossOriginProtection().Handler(streamable))
	return r
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
