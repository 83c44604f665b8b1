package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
)

// ExtismOptions configure [NewExtism].
type ExtismOptions struct {
	// CacheDir holds wazero's compiled machine code across restarts. Empty
	// keeps the cache in memory only.
	CacheDir string
	// Logger receives guest log lines; nil discards them.
	Logger *slog.Logger
}

// extismEngine runs plugins with the Extism Go SDK on wazero.
type extismEngine struct {
	cache  wazero.CompilationCache
	logger *slog.Logger
}

// NewExtism returns an Engine built on the Extism Go SDK. Guests get WASI
// with the real wall clock, monotonic clock and cryptographic randomness,
// but no files, sockets, environment or arguments; Extism's own HTTP and
// variable-store host functions are refused.
//
// The SDK starts a guest's language runtime (a Go guest's _initialize)
// lazily, in the first call of each instance, and offers no way to start
// it earlier that would not start it twice: so with this engine that
// first call pays it (about 4-8 ms for a Go guest), and a runtime that
// fails to start fails that call. [NewNative] starts it in Instantiate.
func NewExtism(opts ExtismOptions) (Engine, error) {
	cache := wazero.NewCompilationCache()
	if opts.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("compilation cache: %w", err)
		}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Extism filters guest logs by one process-wide level.
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		extism.SetLogLevel(extism.LogLevelDebug)
	} else {
		extism.SetLogLevel(extism.LogLevelInfo)
	}
	return &extismEngine{cache: cache, logger: logger}, nil
}

func (e *extismEngine) Close(ctx context.Context) error { return e.cache.Close(ctx) }

func (e *extismEngine) Compile(ctx context.Context, wasm []byte, cfg Config) (Module, error) {
	if cfg.Request == nil || cfg.MemoryPages == 0 || cfg.Timeout <= 0 || cfg.MaxOutputBytes <= 0 {
		return nil, errors.New("engine: config needs Request, MemoryPages, Timeout and MaxOutputBytes")
	}
	manifest := extism.Manifest{
		Wasm: []extism.Wasm{extism.WasmData{Data: wasm}},
		Memory: &extism.ManifestMemory{
			MaxPages: cfg.MemoryPages,
			// Both zero: Extism's http_request and var_set refuse the guest.
			MaxHttpResponseBytes: 0,
			MaxVarBytes:          0,
		},
		// Setting a timeout also makes wazero stop a guest whose context
		// ends; without it a looping guest would run on forever.
		Timeout: uint64(cfg.Timeout.Milliseconds()),
		// Every instance shares this map and only reads it.
		Config: maps.Clone(cfg.Settings),
	}
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(e.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(cfg.MemoryPages)
	compiled, err := extism.NewCompiledPlugin(ctx, manifest, extism.PluginConfig{
		RuntimeConfig: rc,
		EnableWasi:    true,
	}, []extism.HostFunction{alterRequestFunction(cfg.Request)})
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = e.logger
	}
	return &extismModule{compiled: compiled, cfg: cfg, logger: logger}, nil
}

// alterRequestFunction adapts a RequestFunc to Extism's calling convention:
// the guest passes the offset of a kernel memory block holding the request
// and gets back the offset of a new block holding the reply. The host frees
// the request block; the guest owns the reply block.
func alterRequestFunction(serve RequestFunc) extism.HostFunction {
	f := extism.NewHostFunctionWithStack("alter_request",
		func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
			req, err := p.ReadBytes(stack[0])
			if err != nil {
				req = nil // an invalid block reads as an empty, malformed request
			} else {
				_ = p.Free(stack[0])
			}
			out, err := p.WriteBytes(serve(ctx, req))
			if err != nil {
				// The guest has no memory left for the reply: stop it.
				panic(fmt.Errorf("alter_request: no guest memory for the reply: %w", err))
			}
			stack[0] = out
		},
		[]extism.ValueType{extism.ValueTypePTR}, []extism.ValueType{extism.ValueTypePTR})
	f.SetNamespace("extism:host/user")
	return f
}

type extismModule struct {
	compiled *extism.CompiledPlugin
	cfg      Config
	logger   *slog.Logger
}

func (m *extismModule) Close(ctx context.Context) error { return m.compiled.Close(ctx) }

func (m *extismModule) Instantiate(ctx context.Context) (Instance, error) {
	mc := wazero.NewModuleConfig().
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	p, err := m.compiled.Instance(ctx, extism.PluginInstanceConfig{ModuleConfig: mc})
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	logger := m.logger
	p.SetLogger(func(level extism.LogLevel, msg string) {
		logger.Log(context.Background(), slogLevel(level), msg, "source", "guest")
	})
	return &extismInstance{p: p, cfg: m.cfg}, nil
}

func slogLevel(l extism.LogLevel) slog.Level {
	switch l {
	case extism.LogLevelTrace, extism.LogLevelDebug:
		return slog.LevelDebug
	case extism.LogLevelWarn:
		return slog.LevelWarn
	case extism.LogLevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

type extismInstance struct {
	p   *extism.Plugin
	cfg Config
}

func (i *extismInstance) Close(ctx context.Context) error { return i.p.Close(ctx) }

func (i *extismInstance) Call(ctx context.Context, export string, input []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	rc, out, err := i.p.CallWithContext(ctx, export, input)
	if err != nil || rc != 0 {
		ce := classify(ctx, rc, err, i.cfg)
		if ce.Failure == Trap {
			// A guest may say why before it traps (a Rust panic does); the
			// kernel still holds its words. Each call starts them afresh.
			if said := i.p.GetErrorWithContext(context.WithoutCancel(ctx)); said != "" {
				ce.Message += " (the guest said: " + said + ")"
			}
		}
		return nil, ce
	}
	// The Extism kernel ignores an output_set whose range is not inside one
	// of its blocks, so output is always bytes the guest really owns; only
	// its size is left to check.
	if int64(len(out)) > i.cfg.MaxOutputBytes {
		return nil, &CallError{Failure: BadOutput, Message: fmt.Sprintf(
			"the output is %d bytes; this plugin may return at most %d", len(out), i.cfg.MaxOutputBytes)}
	}
	return out, nil
}

// classify turns what Extism reports into a CallError.
func classify(ctx context.Context, rc uint32, err error, cfg Config) *CallError {
	var exit *sys.ExitError
	timeout := &CallError{Failure: Timeout, Err: err, Message: fmt.Sprintf(
		"the call did not finish within %s and was stopped", cfg.Timeout)}
	canceled := &CallError{Failure: Canceled, Err: err, Message: "the caller canceled the call"}
	// What stopped the guest comes first: a trap that lands just after the
	// deadline is still a trap.
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		return timeout
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeContextCanceled:
		return canceled
	case err != nil && isTrap(err):
		return &CallError{Failure: Trap, Err: err, Message: trapMessage(err)}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return timeout
	case errors.Is(ctx.Err(), context.Canceled):
		return canceled
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == "" {
		msg = fmt.Sprintf("the tool failed with code %d and no message", rc)
	}
	if rc == 0 {
		rc = 1 // an error was set with a zero return code
	}
	return &CallError{Failure: GuestError, Code: rc, Message: msg}
}

// isTrap tells a runtime failure from a message the guest set with
// error_set, which Extism reports as a plain error.
func isTrap(err error) bool {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "wasm error:") || strings.Contains(s, "(recovered by wazero)") ||
		s == "stack overflow" || strings.Contains(s, "module is closed") ||
		strings.Contains(s, "failed to initialize runtime") || strings.HasPrefix(s, "unknown function")
}

// trapMessage keeps the first line of a runtime error: wazero appends a
// guest stack trace that means nothing to an MCP client.
func trapMessage(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\nwasm stack trace:"); i >= 0 {
		s = s[:i]
	}
	return s
}
