//go:build wasip1

package alter

import (
	"encoding/json"
	"fmt"
)

// Input returns the call's input: for a tool, its arguments as a JSON object.
func Input() []byte { return readInput() }

// InputJSON decodes the call's input into v. An empty input leaves v as it
// is, so a tool without arguments may be called with none.
func InputJSON(v any) error {
	in := readInput()
	if len(in) == 0 {
		return nil
	}
	return json.Unmarshal(in, v)
}

// Output sets the call's output, replacing any set before.
func Output(b []byte) { kernelOutputSet(writeBlock(b), uint64(len(b))) }

// OutputString sets the call's output to s.
func OutputString(s string) { Output([]byte(s)) }

// OutputJSON sets the call's output to v encoded as JSON.
func OutputJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	Output(b)
	return nil
}

// OutputMCP sets the call's output to r, for a tool whose manifest says
// "result": "mcp": several content items, structured content beside them,
// or a result that is an error for the model without failing the call.
func OutputMCP(r MCPResult) error { return OutputJSON(r) }

// SetError makes the call fail with msg; the host reports it as the tool's
// error. The export should then return non-zero, as [Handle] does.
func SetError(msg string) {
	if msg == "" {
		msg = "tool failed" // an empty message would read as "no error"
	}
	kernelErrorSet(writeBlock([]byte(msg)))
}

// Handle runs one tool call on raw bytes: it passes the input to fn and
// sets fn's result as the output, or its error as the call's error. Return
// its result from the //go:wasmexport function: 0 on success, 1 on error.
func Handle(fn func(input []byte) ([]byte, error)) int32 {
	return run(func() error {
		out, err := fn(readInput())
		if err != nil {
			return err
		}
		Output(out)
		return nil
	})
}

// HandleJSON runs one tool call on JSON: it decodes the input into an In,
// calls fn and encodes its result as the output, or sets its error as the
// call's error. Return its result from the //go:wasmexport function.
func HandleJSON[In, Out any](fn func(In) (Out, error)) int32 {
	return run(func() error {
		var in In
		if err := InputJSON(&in); err != nil {
			return fmt.Errorf("invalid arguments: %w", err)
		}
		out, err := fn(in)
		if err != nil {
			return err
		}
		return OutputJSON(out)
	})
}

// run turns fn's error, or panic, into the call's error. A panic escaping a
// wasmexport function kills the Go runtime and with it every later call on
// this instance, so it is recovered here and reported like an error.
func run(fn func() error) (rc int32) {
	defer func() {
		if p := recover(); p != nil {
			SetError(fmt.Sprint("panic: ", p))
			rc = 1
		}
	}()
	if err := fn(); err != nil {
		SetError(err.Error())
		return 1
	}
	return 0
}
