// Command alterhost serves a folder of WebAssembly plugins as MCP tools.
//
//	alterhost --plugins DIR [--addr 127.0.0.1:8080] [--data-dir DIR] [--stdio] [--no-auth]
//	alterhost plugin new|build|pack|inspect ...
//
// Run it with -h for the whole usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alterhost/alterhost/host"
	"github.com/alterhost/alterhost/host/metrics"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/host/tracing"
	"github.com/alterhost/alterhost/oauth/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `alterhost serves a folder of WebAssembly plugins as MCP tools.

Usage:
  alterhost --plugins DIR [--addr HOST:PORT] [--data-dir DIR] (--stdio | --no-auth)
  alterhost --plugins DIR --oidc-issuer URL --oidc-client-id ID [--oidc-allowed-domains D,...]
  alterhost plugin new --lang go|c|rust|assemblyscript NAME
  alterhost plugin build [--lang LANGUAGE] [-o OUT.wasm] [DIR]
  alterhost plugin pack [-o OUT.wasm] FILE.wasm MANIFEST.json
  alterhost plugin inspect [--json] FILE.wasm
  alterhost audit [--subject S] [--plugin P] [--provider P] [--since 1h]
  alterhost grants [--subject S]
  alterhost providers [--providers FILE] [--json]
  alterhost vault rotate-key
  alterhost signin-link [--base-url URL | --addr HOST:PORT]
  alterhost config check [--config FILE] [flags...]

Serving:
  With --stdio, alterhost speaks MCP on standard input and output, as a
  client such as Claude Desktop starts it. Otherwise it serves streamable
  HTTP at http://ADDR/mcp, as an OAuth 2.1 authorization server: MCP
  clients discover it, register, and send their person to sign in and
  consent. At start alterhost prints a one-time sign-in link for its
  owner; "alterhost signin-link" prints a fresh one. With --oidc-issuer,
  people sign in through that OpenID Connect provider instead (a team);
  the client secret comes from $ALTERHOST_OIDC_CLIENT_SECRET, and the
  redirect URI to register there is printed at start. --trust-issuer URL
  runs no authorization server: /mcp takes the JWT access tokens that
  external issuer signs for http://ADDR/mcp; with --oidc-issuer set to
  the same URL, browsers sign in there too. --no-auth serves without
  sign-in, acting for the local owner, on loopback only. Either way,
  http://ADDR/connect/ serves the pages through which people connect their
  upstream accounts.

Examples:
  alterhost --plugins ./plugins --no-auth        # http://127.0.0.1:8080/mcp
  alterhost --plugins ./plugins --stdio          # for a desktop client
  alterhost --plugins ./plugins --no-auth --dev  # try the Connect flow offline
  alterhost plugin inspect ./plugins/web.wasm    # what a plugin may do

Options:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) >= 2 && args[0] == "plugin" && args[1] == "inspect":
		err = runInspect(args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "plugin" && (args[1] == "pack" || args[1] == "embed"):
		err = runEmbed(args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "plugin" && args[1] == "new":
		err = runNew(args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "plugin" && args[1] == "build":
		err = runBuild(args[2:], stdout, stderr)
	case len(args) >= 1 && args[0] == "plugin":
		fmt.Fprintln(stderr, "usage: alterhost plugin new|build|pack|inspect ...")
		return 2
	case len(args) >= 1 && args[0] == "audit":
		err = runAudit(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "providers":
		err = runProviders(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "signin-link":
		err = runSigninLink(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "grants":
		err = runGrants(args[1:], stdout, stderr)
	case len(args) >= 2 && args[0] == "vault" && args[1] == "rotate-key":
		err = runRotateKey(args[2:], stdout, stderr)
	case len(args) >= 1 && args[0] == "vault":
		fmt.Fprintln(stderr, "usage: alterhost vault rotate-key [--data-dir DIR] [--database-url URL]")
		return 2
	case len(args) >= 2 && args[0] == "config" && args[1] == "check":
		err = serveOrCheck(args[2:], stdout, stderr, true)
	case len(args) >= 1 && args[0] == "config":
		fmt.Fprintln(stderr, "usage: alterhost config check [--config FILE] [flags...]")
		return 2
	default:
		err = serve(args, stdout, stderr)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "alterhost:", err)
		return 1
	}
	return 0
}

func serve(args []string, stdout, stderr io.Writer) error {
	return serveOrCheck(args, stdout, stderr, false)
}

// serveOptions are serve's settings, as its flags parse them.
type serveOptions struct {
	plugins, addr, baseURL, providersFile, metricsAddr, otlpEndpoint *string
	store                                                            storeFlags
	dev, allowPrivate, tracePropagate, stateless, noWatch, stdio     *bool
	noAuth, showVersion                                              *bool
	traceSampleRatio                                                 *float64
	engineName, trustIssuer, trustJWKS, logLevel                     *string
	oidcIssuer, oidcClientID, oidcDomains, oidcPeople                *string
	isolation                                                        plugin.Isolation
	accessTTL                                                        *time.Duration
}

// newServeFlags defines serve's flags, the ones the configuration file and
// the environment may set.
func newServeFlags(stderr io.Writer) (*flag.FlagSet, *serveOptions) {
	fs := flag.NewFlagSet("alterhost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &serveOptions{}
	o.plugins = fs.String("plugins", "", "`DIR` of *.wasm plugins to serve (required)")
	o.addr = fs.String("addr", "127.0.0.1:8080", "`HOST:PORT` to serve HTTP on: MCP, and the Connect pages (also with --stdio)")
	o.store = addStoreFlags(fs)
	o.baseURL = fs.String("base-url", "", "external `URL` of this alterhost, the root of Connect links (default http://ADDR)")
	o.providersFile = fs.String("providers", "", "JSON `FILE` configuring upstream OAuth providers")
	o.dev = fs.Bool("dev", false, "add the sandbox provider: an OAuth server and API served by alterhost itself, for trying tools offline")
	o.allowPrivate = fs.Bool("allow-private-egress", false, "let plugins reach loopback, private and link-local addresses (off: refused)")
	o.metricsAddr = fs.String("metrics-addr", "127.0.0.1:9464", "`HOST:PORT` to serve Prometheus metrics at /metrics, apart from MCP (\"\": off)")
	o.otlpEndpoint = fs.String("otlp-endpoint", "", "OTLP/HTTP collector `URL` to send traces to, such as http://127.0.0.1:4318 (default: $OTEL_EXPORTER_OTLP_ENDPOINT; none: tracing off)")
	o.traceSampleRatio = fs.Float64("trace-sample-ratio", 1, "share of tool calls traced when tracing is on, in (0, 1]; a client's traceparent decides for its calls")
	o.tracePropagate = fs.Bool("trace-propagate-upstream", false, "send W3C trace context (traceparent) on plugins' upstream requests (off: upstreams learn no trace ids)")
	o.engineName = fs.String("engine", "native", "`ENGINE` that runs plugins: native (alterhost's own Extism-ABI kernel on wazero) or extism (the Extism Go SDK, the compatibility reference; slower)")
	fs.TextVar(&o.isolation, "isolation", plugin.IsolatePerson, "`MODE` of sharing guest instances between calls: person (an instance serves one person's calls only), pooled (any call, fastest) or call (a fresh instance for every call)")
	o.stateless = fs.Bool("stateless", false, "serve every MCP protocol revision without sessions, so instances behind a balancer need no sticky sessions (2026-07-28 clients always are)")
	o.noWatch = fs.Bool("no-watch", false, "read the plugins folder once at start (default: load, swap or drop plugins as their files change)")
	o.stdio = fs.Bool("stdio", false, "serve MCP on standard input and output instead of HTTP")
	o.noAuth = fs.Bool("no-auth", false, "serve HTTP without authentication (loopback addresses only)")
	o.trustIssuer = fs.String("trust-issuer", "", "accept at /mcp the JWT access tokens of this external authorization server (issuer `URL`) instead of running alterhost's own")
	o.trustJWKS = fs.String("trust-jwks", "", "`URL` of the --trust-issuer's key set (default: from its discovery document)")
	o.accessTTL = fs.Duration("access-token-ttl", time.Hour, "life of the access tokens alterhost issues to MCP clients")
	o.oidcIssuer = fs.String("oidc-issuer", "", "sign people in through this OpenID Connect provider (issuer `URL`) instead of with owner mode's links; client secret from $"+oidcSecretEnv)
	o.oidcClientID = fs.String("oidc-client-id", "", "alterhost's client `ID` at the --oidc-issuer")
	o.oidcDomains = fs.String("oidc-allowed-domains", "", "admit people whose verified e-mail address is in one of these `DOMAINS` (comma-separated); without this and --oidc-allowed-people, everyone the issuer signs in")
	o.oidcPeople = fs.String("oidc-allowed-people", "", "admit these `PEOPLE` (comma-separated verified e-mail addresses or subjects)")
	o.logLevel = fs.String("log-level", "info", "`LEVEL` of logs on standard error: debug, info, warn or error")
	o.showVersion = fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs, o
}

// serveOrCheck serves, or with check only checks the configuration, so
// both read one flag set.
func serveOrCheck(args []string, stdout, stderr io.Writer, check bool) error {
	fs, o := newServeFlags(stderr)
	if check {
		return runConfigCheck(args, fs, os.Getenv, stdout, stderr)
	}
	if _, err := applyConfig(fs, args, os.Getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *o.showVersion {
		fmt.Fprintln(stdout, "alterhost", version)
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if *o.plugins == "" {
		return errors.New("--plugins DIR is required (see --help)")
	}
	// Without its authorization server, every HTTP page acts for the local
	// owner: only the owner's own machine may reach them.
	authMode := !*o.stdio && !*o.noAuth
	if *o.trustIssuer == "" && *o.trustJWKS != "" {
		return errors.New("--trust-jwks needs --trust-issuer")
	}
	if *o.trustIssuer != "" && !authMode {
		return errors.New("--trust-issuer guards HTTP MCP with tokens: it does not go with --no-auth or --stdio")
	}
	oidc, err := oidcConfig(*o.oidcIssuer, *o.oidcClientID, *o.oidcDomains, *o.oidcPeople)
	if err != nil {
		return err
	}
	if oidc != nil && !authMode {
		return errors.New("--oidc-issuer signs people in to HTTP MCP: it does not go with --no-auth or --stdio")
	}
	if !authMode {
		if err := host.CheckLoopback(*o.addr); err != nil {
			return err
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *o.store.dataDir == "" {
		return errors.New("--data-dir is required: it holds the vault key and database")
	}
	if err := os.MkdirAll(*o.store.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Listen first, so the Connect links name the port really bound.
	ln, err := net.Listen("tcp", *o.addr)
	if err != nil && !*o.stdio {
		return err
	}
	if err != nil {
		// Another alterhost (say, one per desktop client) may hold the port;
		// Connect links then go to it, and with the same data directory the
		// grants it stores are ours too.
		logger.Warn("Connect pages not served: the address is taken", "addr", *o.addr, "error", err)
	}
	base := *o.baseURL
	if base == "" {
		bound := *o.addr
		if ln != nil {
			bound = ln.Addr().String()
		}
		base = "http://" + bound
	}
	// Metrics are for operators, on their own address; one that is taken
	// (a second instance on this machine) costs the metrics, not the server.
	var m *metrics.Metrics
	var mln net.Listener
	if *o.metricsAddr != "" {
		if mln, err = net.Listen("tcp", *o.metricsAddr); err != nil {
			logger.Warn("metrics not served: the address is taken", "addr", *o.metricsAddr, "error", err)
		} else {
			m = metrics.New()
		}
	}
	// Until the servers own them, the listeners are closed on the way out.
	closeListeners := func() {
		if ln != nil {
			ln.Close()
		}
		if mln != nil {
			mln.Close()
		}
	}
	tr, err := tracing.New(ctx, tracing.Options{Endpoint: *o.otlpEndpoint, SampleRatio: *o.traceSampleRatio,
		PropagateUpstream: *o.tracePropagate, ServiceVersion: version, Logger: logger})
	if err != nil {
		closeListeners()
		return err
	}
	// Deferred before srv.Close, so it runs after: the last calls' spans
	// are flushed too.
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(fctx); err != nil {
			logger.Warn("tracing: flushing spans failed", "error", err)
		}
	}()
	srv, err := host.New(ctx, host.Config{PluginsDir: *o.plugins, DataDir: *o.store.dataDir, DatabaseURL: *o.store.databaseURL,
		ProvidersFile: *o.providersFile, BaseURL: base, Dev: *o.dev, AllowPrivateEgress: *o.allowPrivate,
		Auth: authMode, AccessTokenTTL: *o.accessTTL, TrustIssuer: *o.trustIssuer, TrustJWKS: *o.trustJWKS,
		OIDC: oidc, NoWatch: *o.noWatch, Stateless: *o.stateless, Metrics: m, Tracing: tr, Engine: *o.engineName, Isolation: o.isolation, Version: version, Logger: logger})
	if err != nil {
		closeListeners()
		return err
	}
	defer srv.Close(context.Background())
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		ms := newHTTPServer(mux, logger)
		go ms.Serve(mln)
		defer ms.Close()
		logger.Info("metrics", "url", "http://"+mln.Addr().String()+"/metrics")
	}

	if *o.stdio {
		if ln != nil {
			hs := newHTTPServer(srv.ConnectHandler(), logger)
			go hs.Serve(ln)
			defer hs.Close()
			logger.Info("Connect pages", "url", base+"/connect/")
		}
		logger.Info("serving MCP on stdio", "tools", len(srv.Catalog().Tools))
		err := srv.ServeStdio(ctx)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return serveHTTP(ctx, srv, ln, base, logger)
}

// oidcSecretEnv holds the OIDC client secret: never a flag, which any
// user of the machine could read in the process list.
const oidcSecretEnv = "ALTERHOST_OIDC_CLIENT_SECRET"

// oidcConfig builds the OIDC sign-in configuration from the flags and the
// environment, or nil without --oidc-issuer.
func oidcConfig(issuer, clientID, domains, people string) (*server.OIDCConfig, error) {
	if issuer == "" {
		if clientID != "" || domains != "" || people != "" {
			return nil, errors.New("--oidc-client-id, --oidc-allowed-domains and --oidc-allowed-people need --oidc-issuer")
		}
		return nil, nil
	}
	if clientID == "" {
		return nil, errors.New("--oidc-issuer needs --oidc-client-id (and $" + oidcSecretEnv + " unless the client is public)")
	}
	return &server.OIDCConfig{Issuer: issuer, ClientID: clientID, ClientSecret: os.Getenv(oidcSecretEnv),
		AllowedDomains: commaList(domains), AllowedPeople: commaList(people)}, nil
}

// commaList splits a comma-separated flag, dropping empty items.
func commaList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// printOIDC says how people sign in in OIDC mode, and what the operator
// must register at the provider.
func printOIDC(signin *server.Server, logger *slog.Logger) {
	logger.Info("people sign in through OpenID Connect; there are no sign-in links",
		"issuer", signin.OIDCIssuer(), "redirect_uri", signin.OIDCRedirectURL())
	fmt.Fprintf(os.Stderr, "\nSign-in: OpenID Connect at %s (no sign-in links).\nRegister this redirect URI there: %s\n\n",
		signin.OIDCIssuer(), signin.OIDCRedirectURL())
}

func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
}

// shutdownGrace is how long in-flight requests may run after a signal.
const shutdownGrace = 30 * time.Second

func serveHTTP(ctx context.Context, srv *host.Server, ln net.Listener, base string, logger *slog.Logger) error {
	hs := newHTTPServer(srv.Handler(), logger)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	// The address bound, beside the URL: behind --base-url they differ.
	serving := []any{"url", base + "/mcp", "listen", ln.Addr().String(), "tools", len(srv.Catalog().Tools)}
	switch {
	case srv.Trust != nil:
		logger.Info("serving MCP over HTTP", append(serving,
			"trusted_issuer", srv.Trust.Issuer(), "jwks", srv.Trust.JWKSURL(), "audience", srv.Trust.Audience())...)
		if srv.Signin == nil {
			logger.Warn("Connect pages refuse every link with an external issuer: they cannot tell who the browser is; " +
				"--oidc-issuer with the same URL signs browsers in there")
		} else {
			printOIDC(srv.Signin, logger)
		}
	case srv.Auth == nil:
		logger.Warn("serving MCP over HTTP WITHOUT authentication (--no-auth)", serving...)
	case srv.Auth.OIDCIssuer() != "":
		logger.Info("serving MCP over HTTP", serving...)
		printOIDC(srv.Auth, logger)
	default:
		link, err := srv.Auth.SigninLink(ctx)
		if err != nil {
			return err
		}
		logger.Info("serving MCP over HTTP", serving...)
		// The one place a sign-in link is printed: it is a credential, valid
		// once and for 15 minutes; `alterhost signin-link` makes another.
		fmt.Fprintf(os.Stderr, "\nSign in to alterhost (once, within 15 minutes): %s\n\n", link)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down; letting in-flight calls finish", "grace", shutdownGrace)
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// defaultDataDir follows the XDG base directory convention.
func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "alterhost")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "alterhost")
	}
	return ""
}
