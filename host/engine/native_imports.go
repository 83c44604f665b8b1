package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The imports a native-engine guest links against: WASI preview 1, the
// Extism kernel (extism:host/env, every function the v1.7.1 SDK exports
// there, with the same signatures) and alter_request (extism:host/user).

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// link instantiates the host modules in the module's runtime.
func (m *nativeModule) link(ctx context.Context) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return fmt.Errorf("wasi: %w", err)
	}
	env := m.rt.NewHostModuleBuilder("extism:host/env")
	def := func(name string, fn func(i *nativeInstance, stack []uint64), params, results []api.ValueType) {
		env.NewFunctionBuilder().WithGoFunction(api.GoFunc(func(ctx context.Context, stack []uint64) {
			fn(instanceOf(ctx), stack)
		}), params, results).Export(name)
	}

	// Memory blocks.
	def("alloc", func(i *nativeInstance, s []uint64) { s[0] = i.k.alloc(s[0]) }, []api.ValueType{i64}, []api.ValueType{i64})
	def("free", func(i *nativeInstance, s []uint64) { i.k.free(s[0]) }, []api.ValueType{i64}, nil)
	def("length", func(i *nativeInstance, s []uint64) { s[0] = i.k.length(s[0]) }, []api.ValueType{i64}, []api.ValueType{i64})
	// The Extism kernel's length_unsafe skips the block search; here every
	// length is checked, so the two are the same.
	def("length_unsafe", func(i *nativeInstance, s []uint64) { s[0] = i.k.length(s[0]) }, []api.ValueType{i64}, []api.ValueType{i64})
	def("memory_bytes", func(i *nativeInstance, s []uint64) { s[0] = uint64(len(i.k.mem)) }, nil, []api.ValueType{i64})
	def("reset", func(i *nativeInstance, s []uint64) { i.k.reset() }, nil, nil)

	def("load_u8", func(i *nativeInstance, s []uint64) {
		at := i.at("load_u8", s[0], 1)
		s[0] = uint64(i.k.mem[at])
	}, []api.ValueType{i64}, []api.ValueType{i32})
	def("load_u64", func(i *nativeInstance, s []uint64) {
		at := i.at("load_u64", s[0], 8)
		s[0] = binary.LittleEndian.Uint64(i.k.mem[at:])
	}, []api.ValueType{i64}, []api.ValueType{i64})
	def("store_u8", func(i *nativeInstance, s []uint64) {
		at := i.at("store_u8", s[0], 1)
		i.k.mem[at] = byte(s[1])
	}, []api.ValueType{i64, i32}, nil)
	def("store_u64", func(i *nativeInstance, s []uint64) {
		at := i.at("store_u64", s[0], 8)
		binary.LittleEndian.PutUint64(i.k.mem[at:], s[1])
	}, []api.ValueType{i64, i64}, nil)

	// Input, output and error.
	def("input_length", func(i *nativeInstance, s []uint64) { s[0] = i.k.inLen }, nil, []api.ValueType{i64})
	def("input_offset", func(i *nativeInstance, s []uint64) { s[0] = i.k.inAddr }, nil, []api.ValueType{i64})
	def("input_load_u8", func(i *nativeInstance, s []uint64) {
		// Past the input reads as 0, as in the Extism kernel.
		if k := &i.k; s[0] < k.inLen {
			s[0] = uint64(k.mem[k.inAddr-kernelBase+s[0]])
		} else {
			s[0] = 0
		}
	}, []api.ValueType{i64}, []api.ValueType{i32})
	def("input_load_u64", func(i *nativeInstance, s []uint64) {
		k := &i.k
		if s[0] >= k.inLen {
			i.refuse("input_load_u64: offset %d is past the end of the %d-byte input", s[0], k.inLen)
		}
		at := i.at("input_load_u64", k.inAddr+s[0], 8)
		s[0] = binary.LittleEndian.Uint64(k.mem[at:])
	}, []api.ValueType{i64}, []api.ValueType{i64})
	def("input_set", func(i *nativeInstance, s []uint64) {
		if i.k.setRange(s[0], s[1]) {
			i.k.inAddr, i.k.inLen = s[0], s[1]
		}
	}, []api.ValueType{i64, i64}, nil)
	def("output_set", func(i *nativeInstance, s []uint64) {
		// A range outside the guest's blocks is ignored, as the Extism
		// kernel ignores one outside its memory: the output stays as it was.
		if i.k.setRange(s[0], s[1]) {
			i.k.outAddr, i.k.outLen = s[0], s[1]
		}
	}, []api.ValueType{i64, i64}, nil)
	def("output_length", func(i *nativeInstance, s []uint64) { s[0] = i.k.outLen }, nil, []api.ValueType{i64})
	def("output_offset", func(i *nativeInstance, s []uint64) { s[0] = i.k.outAddr }, nil, []api.ValueType{i64})
	// The message is read when the call returns: a block freed or never
	// allocated by then means no message, as with the Extism kernel.
	def("error_set", func(i *nativeInstance, s []uint64) { i.k.errAddr = s[0] }, []api.ValueType{i64}, nil)
	def("error_get", func(i *nativeInstance, s []uint64) { s[0] = i.k.errAddr }, nil, []api.ValueType{i64})

	// Settings.
	def("config_get", func(i *nativeInstance, s []uint64) {
		// The key block stays the guest's to free.
		v, ok := i.m.cfg.Settings[string(i.k.bytes(s[0]))]
		if !ok {
			s[0] = 0
			return
		}
		s[0] = i.write("config_get", []byte(v))
	}, []api.ValueType{i64}, []api.ValueType{i64})

	// Refused as by the Extism engine, which sets its variable store and
	// HTTP response size to zero and allows no host.
	def("var_get", func(i *nativeInstance, s []uint64) {
		i.k.free(s[0])
		s[0] = 0 // the store is always empty
	}, []api.ValueType{i64}, []api.ValueType{i64})
	def("var_set", func(i *nativeInstance, s []uint64) {
		i.refuse("var_set: variables are disabled by this host")
	}, []api.ValueType{i64, i64}, nil)
	def("http_request", func(i *nativeInstance, s []uint64) {
		i.refuse("http_request: Extism's HTTP is disabled by this host; use alter_request")
	}, []api.ValueType{i64, i64}, []api.ValueType{i64})
	def("http_status_code", func(i *nativeInstance, s []uint64) { s[0] = 0 }, nil, []api.ValueType{i32})
	def("http_headers", func(i *nativeInstance, s []uint64) { s[0] = 0 }, nil, []api.ValueType{i64})

	// Logging.
	def("get_log_level", func(i *nativeInstance, s []uint64) { s[0] = uint64(i.m.minLog) }, nil, []api.ValueType{i32})
	for name, level := range map[string]int32{
		"log_trace": logTrace, "log_debug": logDebug, "log_info": logInfo, "log_warn": logWarn, "log_error": logError,
	} {
		def(name, func(i *nativeInstance, s []uint64) { i.log(level, s[0]) }, []api.ValueType{i64}, nil)
	}
	if _, err := env.Instantiate(ctx); err != nil {
		return fmt.Errorf("extism:host/env: %w", err)
	}

	user := m.rt.NewHostModuleBuilder("extism:host/user")
	user.NewFunctionBuilder().WithGoFunction(api.GoFunc(func(ctx context.Context, s []uint64) {
		instanceOf(ctx).request(ctx, s)
	}), []api.ValueType{i64}, []api.ValueType{i64}).Export("alter_request")
	if _, err := user.Instantiate(ctx); err != nil {
		return fmt.Errorf("extism:host/user: %w", err)
	}
	return nil
}

// refuse stops the call with a trap that says why.
func (i *nativeInstance) refuse(format string, args ...any) {
	i.trap = fmt.Errorf(format, args...)
	panic(i.trap)
}

// at bounds-checks an n-byte access at addr and returns its arena index.
func (i *nativeInstance) at(fn string, addr, n uint64) uint64 {
	at, ok := i.k.span(addr, n)
	if !ok {
		i.refuse("%s: %d bytes at offset %d are outside every live kernel memory block", fn, n, addr)
	}
	return at
}

// write copies b into a new block for the guest, or stops the call when
// kernel memory is full.
func (i *nativeInstance) write(fn string, b []byte) uint64 {
	addr, ok := i.k.write(b)
	if !ok {
		i.refuse("%s: no kernel memory left for %d bytes", fn, len(b))
	}
	return addr
}

// request serves alter_request: the guest's request block in (freed here),
// a new reply block out (the guest's to free). A bad request offset reads
// as an empty request, as with the Extism engine.
func (i *nativeInstance) request(ctx context.Context, s []uint64) {
	req := i.k.bytes(s[0])
	i.k.free(s[0])
	reply := i.m.cfg.Request(ctx, req)
	addr, ok := i.k.write(reply)
	if !ok {
		i.refuse("alter_request: no guest memory for the %d-byte reply", len(reply))
	}
	s[0] = addr
}

func (i *nativeInstance) log(level int32, addr uint64) {
	// A bad offset logs an empty line, as with the Extism engine.
	if level >= i.m.minLog {
		i.m.logger.Log(context.Background(), nativeSlogLevel(level), string(i.k.bytes(addr)), "source", "guest")
	}
	i.k.free(addr)
}

func nativeSlogLevel(l int32) slog.Level {
	switch l {
	case logTrace, logDebug:
		return slog.LevelDebug
	case logWarn:
		return slog.LevelWarn
	case logError:
		return slog.LevelError
	}
	return slog.LevelInfo
}
