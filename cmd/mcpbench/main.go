// Command mcpbench measures what serving a tool as a WebAssembly plugin
// costs at the MCP level, against the same tool written in Go and
// registered directly with the go-sdk. It has three jobs:
//
//	mcpbench serve [-addr 127.0.0.1:0]
//	    serve the native tools over streamable HTTP, set up as alterhost
//	    sets up its own MCP endpoint, until SIGINT or SIGTERM
//	mcpbench load -url URL [-label L] [-tool reverse|random_id] [-sessions N] [-calls M] [-warmup W] [-json]
//	    check the tool's definition and answers once, then open N sessions
//	    and make M tools/call in each, back to back, and report p50, p99,
//	    max and calls/s
//	mcpbench summarize [-baseline native] FILE...
//	    the medians of the runs in FILE (load -json lines) as a markdown
//	    table, with each label's ratios to the baseline
//
// scripts/bench-mcp.sh runs the whole comparison against the alterhost
// binary; see BENCHMARKS.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpbench:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  mcpbench serve [-addr 127.0.0.1:0]
  mcpbench load -url URL [-label L] [-tool reverse|random_id] [-sessions N] [-calls M] [-warmup W] [-json]
  mcpbench summarize [-baseline native] FILE...`

// run is the command with its arguments, apart from the process so that
// tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no job given\n%s", usage)
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "load":
		return loadCmd(ctx, args[1:], stdout, stderr)
	case "summarize":
		return summarize(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown job %q\n%s", args[0], usage)
}
