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
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxRequestBody is alterhost's bound on one MCP HTTP request
// (host/server.go), repeated so the native server reads requests the
// same way.
const maxRequestBody = 4 << 20

// statelessVersion is, as in alterhost, the first protocol revision served
// without sessions.
const statelessVersion = "2026-07-28"

// newNativeServer is the native side of the comparison: a go-sdk server
// with the tools added by mcp.AddTool, over streamable HTTP with the
// options alterhost gives its own endpoint (host.Server.streamable), so the
// two differ by what alterhost does per call and not by transport settings.
func newNativeServer(logger *slog.Logger) http.Handler {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcpbench-native", Version: "bench"},
		&mcp.ServerOptions{Logger: logger, HasTools: true})
	addNative(s)
	server := func(*http.Request) *mcp.Server { return s }
	sessions := mcp.NewStreamableHTTPHandler(server,
		&mcp.StreamableHTTPOptions{Logger: logger, MaxRequestBodyBytes: maxRequestBody})
	stateless := mcp.NewStreamableHTTPHandler(server,
		&mcp.StreamableHTTPOptions{Logger: logger, MaxRequestBodyBytes: maxRequestBody, Stateless: true})
	mux := http.NewServeMux()
	mux.Handle("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("MCP-Protocol-Version") >= statelessVersion {
			stateless.ServeHTTP(w, r)
			return
		}
		sessions.ServeHTTP(w, r)
	}))
	return mux
}

// serve is the serve job: the native server on a loopback address until
// ctx ends. It logs the URL in the line alterhost uses ("serving MCP over
// HTTP url=..."), so one script finds either server's port the same way.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", *addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-addr %q: only loopback addresses are served", *addr)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newNativeServer(logger), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	logger.Info("serving MCP over HTTP", "url", "http://"+ln.Addr().String()+"/mcp")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	// Calls in flight get a moment to finish; a session's standalone SSE
	// stream (a GET that lasts as long as the session) never would, so
	// whatever is left is then closed.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err = srv.Shutdown(sctx); errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if e := <-done; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}
