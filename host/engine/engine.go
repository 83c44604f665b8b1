// Package engine runs WebAssembly plugin code behind a small interface, so
// the rest of the host does not depend on which runtime executes guests.
//
// An [Engine] compiles a module once into a [Module]; a Module makes
// [Instance]s; an Instance runs one call at a time. Instances are not safe
// for concurrent use, and one that returned any error must be closed and
// never called again: its memory and globals may be in any state.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Engine compiles modules. It is safe for concurrent use.
type Engine interface {
	// Compile validates and compiles wasm. Compilation may be served from
	// the engine's compilation cache; it never runs guest code.
	Compile(ctx context.Context, wasm []byte, cfg Config) (Module, error)
	// Close releases the engine; modules compiled by it must be closed first.
	Close(ctx context.Context) error
}

// Module is a compiled plugin. It is safe for concurrent use.
type Module interface {
	// Instantiate creates a fresh, isolated instance.
	Instantiate(ctx context.Context) (Instance, error)
	Close(ctx context.Context) error
}

// Instance is one live copy of a module: its own memory, globals and
// kernel state. Use it from one goroutine at a time.
type Instance interface {
	// Call runs export with input and returns its output. Any non-nil
	// error is a *CallError and leaves the instance unusable.
	Call(ctx context.Context, export string, input []byte) ([]byte, error)
	Close(ctx context.Context) error
}

// RequestFunc serves the guest's alter_request import: it receives the
// request bytes the guest wrote and returns the reply bytes to hand back.
// ctx is the context given to Instance.Call.
type RequestFunc func(ctx context.Context, request []byte) (reply []byte)

// Config is what the engine must enforce for every instance of a module.
type Config struct {
	// MemoryPages caps each instance's linear memory, in 64 KiB pages.
	MemoryPages uint32
	// Timeout caps the wall-clock time of one call.
	Timeout time.Duration
	// MaxOutputBytes caps the output of one call.
	MaxOutputBytes int64
	// Request serves alter_request. It must not be nil.
	Request RequestFunc
	// Settings are what the guest reads with the kernel's config_get.
	Settings map[string]string
	// Logger receives the guest's log lines; nil: the engine's logger.
	Logger *slog.Logger
}

// Failure classifies why a call did not return output.
type Failure int

const (
	// GuestError: the guest returned a non-zero code or set an error.
	GuestError Failure = iota + 1
	// Trap: the guest trapped (unreachable, out-of-bounds access, stack
	// exhaustion, out of memory, a host function refusing the guest).
	Trap
	// Timeout: the call ran past its deadline and was stopped.
	Timeout
	// Canceled: the caller gave up before the call finished.
	Canceled
	// BadOutput: the output broke the host's limits or was unreadable.
	BadOutput
)

func (f Failure) String() string {
	switch f {
	case GuestError:
		return "guest_error"
	case Trap:
		return "trap"
	case Timeout:
		return "timeout"
	case Canceled:
		return "canceled"
	case BadOutput:
		return "bad_output"
	}
	return fmt.Sprintf("failure(%d)", int(f))
}

// CallError is the error of a failed call.
type CallError struct {
	Failure Failure
	// Code is the guest's return code for GuestError.
	Code uint32
	// Message is a human sentence; for GuestError, the guest's own message.
	Message string
	// Err is the underlying runtime error, if any.
	Err error
}

func (e *CallError) Error() string {
	if e.Failure == GuestError {
		return e.Message
	}
	return e.Failure.String() + ": " + e.Message
}

func (e *CallError) Unwrap() error { return e.Err }

// FailureOf returns the Failure of err, or 0 if err is not a *CallError.
func FailureOf(err error) Failure {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Failure
	}
	return 0
}
