package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// NativeOptions configure [NewNative].
type NativeOptions struct {
	// CacheDir holds wazero's compiled machine code across restarts, and
	// the instrumented modules it was compiled from, so a warm start skips
	// the rewrite. Empty keeps the cache in memory only. The Extism engine's
	// folder may be shared (entries are keyed by content), but the two
	// engines compile different code for one plugin, since this one
	// instruments it.
	//
	// Trust the folder as the binary: its entries are checked against
	// damage, not against a writer, who could have wazero run machine
	// code of their own (or a module without the interrupt checks). The
	// server keeps it under its 0700 data directory.
	CacheDir string
	// Logger receives guest log lines; nil discards them.
	Logger *slog.Logger
}

// nativeEngine runs Extism-ABI plugins on wazero with the Extism kernel
// implemented in Go (see native_kernel.go) instead of as a Wasm module.
type nativeEngine struct {
	cache  wazero.CompilationCache
	logger *slog.Logger
	// rewrites keeps instrumented modules across restarts (see
	// native_rewrite_cache.go); empty: every Compile instruments afresh.
	rewrites string
}

// NewNative returns an Engine that runs the same guests as [NewExtism] (the
// Extism kernel imports, alter_request, WASI preview 1 with the real clocks
// and cryptographic randomness but no files, sockets, environment or
// arguments; Extism's HTTP and variable functions refuse the guest) without
// the Extism SDK: kernel memory lives host-side, exports are resolved once
// per instance, and a call allocates little beyond its output.
//
// Differences a caller may see: the request bytes and the context handed
// to Config.Request are valid only until it returns (the bytes alias kernel
// memory, the context is reused by the instance's next call); and a guest
// runtime's start (a Go guest's _initialize) runs in Instantiate, not in
// the first call, so its failure is Instantiate's error. Guest-visible
// differences are listed in native_kernel.go.
func NewNative(opts NativeOptions) (Engine, error) {
	cache := wazero.NewCompilationCache()
	rewrites := ""
	if opts.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("compilation cache: %w", err)
		}
		rewrites = filepath.Join(opts.CacheDir, rewriteCacheName)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &nativeEngine{cache: cache, logger: logger, rewrites: rewrites}, nil
}

func (e *nativeEngine) Close(ctx context.Context) error { return e.cache.Close(ctx) }

// Guest log levels, in the Extism kernel's numbering (get_log_level).
const (
	logTrace int32 = iota
	logDebug
	logInfo
	logWarn
	logError
)

func (e *nativeEngine) Compile(ctx context.Context, wasm []byte, cfg Config) (Module, error) {
	if cfg.Request == nil || cfg.MemoryPages == 0 || cfg.Timeout <= 0 || cfg.MaxOutputBytes <= 0 {
		return nil, errors.New("engine: config needs Request, MemoryPages, Timeout and MaxOutputBytes")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = e.logger
	}
	cfg.Settings = maps.Clone(cfg.Settings)
	m := &nativeModule{cfg: cfg, logger: logger, minLog: logInfo}
	// Like the Extism engine: debug lines pass when the log shows debug,
	// trace lines never do.
	if logger.Enabled(ctx, slog.LevelDebug) {
		m.minLog = logDebug
	}
	// The instrumented module first (see native_interrupt.go); if it
	// cannot be made or compiled, the module as given, stopped by wazero.
	if instrumented, err := e.instrument(wasm); err == nil {
		if compiled, err := m.compile(ctx, e.cache, instrumented, false); err == nil {
			m.compiled, m.interruptible = compiled, true
		}
	}
	if m.compiled == nil {
		compiled, err := m.compile(ctx, e.cache, wasm, true)
		if err != nil {
			return nil, err
		}
		m.compiled = compiled
	}
	m.exports = m.compiled.ExportedFunctions()
	m.init = guestInit(m.exports)
	m.mc = wazero.NewModuleConfig().
		// Anonymous, so one runtime holds any number of instances.
		WithName("").
		// No _start: guest runtimes are started by guestInit's choice.
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	return m, nil
}

// compile makes the module's runtime, links the host modules and compiles
// wasm; closeOnDone compiles wazero's own termination checks in.
func (m *nativeModule) compile(ctx context.Context, cache wazero.CompilationCache, wasm []byte, closeOnDone bool) (wazero.CompiledModule, error) {
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(closeOnDone).
		WithMemoryLimitPages(m.cfg.MemoryPages)
	m.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if err := m.link(ctx); err != nil {
		m.rt.Close(ctx)
		return nil, err
	}
	compiled, err := m.rt.CompileModule(ctx, wasm)
	if err != nil {
		m.rt.Close(ctx)
		return nil, fmt.Errorf("compile: %w", err)
	}
	return compiled, nil
}

// guestInit picks the function that starts a guest's language runtime, as
// the Extism SDK does: a Haskell runtime's hs_init (after _initialize), a
// WASI reactor's _initialize, or a WASI command's __wasm_call_ctors.
func guestInit(exports map[string]api.FunctionDefinition) []string {
	noParams := func(name string) bool {
		d, ok := exports[name]
		return ok && len(d.ParamTypes()) == 0
	}
	if d, ok := exports["hs_init"]; ok && len(d.ParamTypes()) == 2 {
		if noParams("_initialize") {
			return []string{"_initialize", "hs_init"}
		}
		return []string{"hs_init"}
	}
	for _, name := range []string{"_initialize", "__wasm_call_ctors"} {
		if noParams(name) {
			return []string{name}
		}
	}
	return nil
}

type nativeModule struct {
	cfg      Config
	logger   *slog.Logger
	minLog   int32
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	exports  map[string]api.FunctionDefinition
	init     []string
	mc       wazero.ModuleConfig
	// interruptible: the guest was instrumented with the interrupt flag.
	interruptible bool
}

func (m *nativeModule) Close(ctx context.Context) error { return m.rt.Close(ctx) }

func (m *nativeModule) Instantiate(ctx context.Context) (Instance, error) {
	guest, err := m.rt.InstantiateModule(ctx, m.compiled, m.mc)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	i := &nativeInstance{m: m, guest: guest, fns: make(map[string]api.Function, 4)}
	i.k.limit = uint64(m.cfg.MemoryPages) * 65536
	i.cc = newCallCtx(i)
	if m.interruptible {
		flag, ok := guest.ExportedGlobal(interruptExport).(api.MutableGlobal)
		if !ok {
			guest.Close(ctx)
			return nil, errors.New("instantiate: the interrupt flag is missing")
		}
		i.cc.flag = flag
	}
	for _, name := range m.init {
		if err := i.start(ctx, name); err != nil {
			i.Close(ctx)
			return nil, fmt.Errorf("instantiate: failed to initialize runtime: %w", err)
		}
	}
	return i, nil
}

// nativeInstance is one guest module instance and its kernel.
type nativeInstance struct {
	m     *nativeModule
	guest api.Module
	k     kernel
	cc    *callCtx
	fns   map[string]api.Function // exports, resolved once
	stack [2]uint64
	// trap is why a kernel function refused the guest during this call.
	trap error
}

func (i *nativeInstance) Close(ctx context.Context) error {
	i.cc.timer.Stop()
	i.k = kernel{}
	return i.guest.Close(ctx)
}

// function returns the cached export name.
func (i *nativeInstance) function(name string) api.Function {
	if f, ok := i.fns[name]; ok {
		return f
	}
	f := i.guest.ExportedFunction(name)
	if f != nil {
		i.fns[name] = f
	}
	return f
}

// start runs a guest runtime's initialization under the call deadline.
func (i *nativeInstance) start(ctx context.Context, name string) error {
	f := i.function(name)
	i.stack = [2]uint64{}
	i.trap = nil
	i.cc.begin(ctx, i.m.cfg.Timeout)
	err := f.CallWithStack(i.cc, i.stack[:]) // hs_init(0, 0) takes two zeros
	ctxErr := i.cc.end()
	i.k.release()
	switch {
	case i.trap != nil:
		return i.trap
	case err != nil:
		return errors.New(trapMessage(err))
	case ctxErr != nil:
		return ctxErr
	}
	return nil
}

func (i *nativeInstance) Call(ctx context.Context, export string, input []byte) ([]byte, error) {
	cfg := &i.m.cfg
	if i.guest.IsClosed() {
		return nil, &CallError{Failure: Trap, Message: "module is closed"}
	}
	def, ok := i.m.exports[export]
	f := i.function(export)
	if !ok || f == nil {
		return nil, &CallError{Failure: Trap, Message: "unknown function: " + export}
	}
	// The Extism SDK calls exports without arguments and reads at most one
	// result; the same mistakes get the same answers here.
	if n := len(def.ResultTypes()); n > 1 {
		return nil, &CallError{Failure: GuestError, Code: 1,
			Message: fmt.Sprintf("function %s has %v results, expected 0 or 1", export, n)}
	}
	if n := len(def.ParamTypes()); n > 0 {
		return nil, &CallError{Failure: GuestError, Code: 1,
			Message: fmt.Sprintf("expected %d params, but passed 0", n)}
	}
	k := &i.k
	defer k.release()
	k.reset()
	if len(input) > 0 {
		addr, ok := k.write(input)
		if !ok {
			return nil, &CallError{Failure: Trap, Message: fmt.Sprintf(
				"the input is %d bytes; the kernel memory of this plugin holds at most %d", len(input), k.limit)}
		}
		k.inAddr, k.inLen = addr, uint64(len(input))
	}
	i.trap = nil
	i.stack = [2]uint64{}
	i.cc.begin(ctx, cfg.Timeout)
	err := f.CallWithStack(i.cc, i.stack[:])
	ctxErr := i.cc.end()

	var exit *sys.ExitError
	if err != nil && errors.As(err, &exit) && exit.ExitCode() == 0 {
		err = nil // proc_exit(0) ends the call successfully, as in Extism
		i.stack[0] = 0
	}
	if err != nil || ctxErr != nil {
		ce := i.failure(err, ctxErr)
		// As in the Extism engine: a guest may say why before it traps (a
		// Rust panic does).
		if said := k.bytes(k.errAddr); ce.Failure == Trap && len(said) > 0 {
			ce.Message += " (the guest said: " + string(said) + ")"
		}
		return nil, ce
	}
	rc := uint32(0)
	if len(def.ResultTypes()) == 1 {
		rc = uint32(i.stack[0])
	}
	if msg := k.bytes(k.errAddr); len(msg) > 0 {
		return nil, &CallError{Failure: GuestError, Code: max(rc, 1), Message: string(msg)}
	}
	if rc != 0 {
		return nil, &CallError{Failure: GuestError, Code: rc,
			Message: fmt.Sprintf("the tool failed with code %d and no message", rc)}
	}
	if int64(k.outLen) > cfg.MaxOutputBytes {
		return nil, &CallError{Failure: BadOutput, Message: fmt.Sprintf(
			"the output is %d bytes; this plugin may return at most %d", k.outLen, cfg.MaxOutputBytes)}
	}
	out := make([]byte, k.outLen)
	copy(out, k.output())
	return out, nil
}

// failure classifies a call that did not return normally, in the same
// order as the Extism engine: what stopped the guest comes first, so a
// trap just after the deadline is still a trap.
func (i *nativeInstance) failure(err, ctxErr error) *CallError {
	cfg := &i.m.cfg
	timeout := &CallError{Failure: Timeout, Err: err, Message: fmt.Sprintf(
		"the call did not finish within %s and was stopped", cfg.Timeout)}
	canceled := &CallError{Failure: Canceled, Err: err, Message: "the caller canceled the call"}
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		return timeout
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeContextCanceled:
		return canceled
	case i.trap != nil:
		return &CallError{Failure: Trap, Err: err, Message: i.trap.Error()}
	case i.m.interruptible && errors.Is(ctxErr, context.DeadlineExceeded):
		return timeout // the flag stopped the guest
	case i.m.interruptible && ctxErr != nil:
		return canceled
	case err != nil:
		return &CallError{Failure: Trap, Err: err, Message: trapMessage(err)}
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return timeout
	}
	return canceled
}

// Memories implements Inspector: the guest's linear memory and the kernel
// arena.
func (i *nativeInstance) Memories() (map[string][]byte, error) {
	mem := i.guest.Memory()
	if mem == nil {
		return nil, errors.New("engine: the guest has no memory to read")
	}
	return map[string][]byte{"guest": snapshot(mem), "kernel": append([]byte(nil), i.k.mem...)}, nil
}

var _ Inspector = (*nativeInstance)(nil)

// callCtx is the context a guest runs under. One per instance, reused by
// every call, so a call allocates no context of its own: it carries the
// instance to the kernel functions (a type assertion, not a Value walk up
// the caller's chain), the call's deadline from a timer kept with the
// instance, and the caller's cancellation and values.
//
// wazero watches Done for the call (WithCloseOnContextDone). A watcher that
// starts late may read the fields while the next call runs; the mutex
// keeps that safe, and wazero ignores a Done that fires after its call.
type callCtx struct {
	inst   *nativeInstance
	flag   api.MutableGlobal // the interrupt flag, if the guest has one
	timer  *time.Timer
	expire func() // bound once: AfterFunc takes it without allocating

	mu       sync.Mutex
	parent   context.Context
	stop     func() bool
	deadline time.Time
	done     chan struct{}
	err      error
	active   bool
}

func newCallCtx(i *nativeInstance) *callCtx {
	c := &callCtx{inst: i, done: make(chan struct{})}
	c.expire = func() { c.fire(context.DeadlineExceeded) }
	c.timer = time.AfterFunc(time.Hour, c.expire)
	c.timer.Stop()
	return c
}

// begin starts a call under parent that may run for timeout.
func (c *callCtx) begin(parent context.Context, timeout time.Duration) {
	c.mu.Lock()
	if c.err != nil {
		c.done, c.err = make(chan struct{}), nil // the last call's was closed
	}
	c.parent, c.active = parent, true
	if c.flag != nil {
		c.flag.Set(0)
	}
	c.deadline = time.Now().Add(timeout)
	if d, ok := parent.Deadline(); ok && d.Before(c.deadline) {
		c.deadline = d
	}
	c.mu.Unlock()
	c.timer.Reset(timeout)
	if parent.Done() != nil {
		c.stop = context.AfterFunc(parent, c.parentDone)
	}
	if err := parent.Err(); err != nil {
		c.fire(err)
	}
}

// end finishes the call and reports whether its context ended during it.
func (c *callCtx) end() error {
	c.timer.Stop()
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active, c.parent = false, nil
	return c.err
}

func (c *callCtx) parentDone() {
	c.mu.Lock()
	p := c.parent
	c.mu.Unlock()
	if p != nil {
		c.fire(p.Err())
	}
}

func (c *callCtx) fire(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active && c.err == nil && err != nil {
		c.err = err
		close(c.done)
		if c.flag != nil {
			c.flag.Set(1)
		}
	}
}

func (c *callCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, c.active
}

func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *callCtx) Value(key any) any {
	if _, ok := key.(instanceKey); ok {
		return c.inst
	}
	c.mu.Lock()
	p := c.parent
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Value(key)
}

type instanceKey struct{}

// instanceOf finds the instance a kernel function serves.
func instanceOf(ctx context.Context) *nativeInstance {
	if c, ok := ctx.(*callCtx); ok {
		return c.inst
	}
	if i, ok := ctx.Value(instanceKey{}).(*nativeInstance); ok {
		return i
	}
	panic(errors.New("engine: a kernel function ran outside a native engine call"))
}
