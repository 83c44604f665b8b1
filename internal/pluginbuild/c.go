package pluginbuild

import (
	"context"
	"fmt"
	"path/filepath"
)

func init() { register(C, buildC) }

// buildC builds a freestanding C plugin with clang and wasm-ld: no libc,
// no WASI; tools export themselves with ALTER_EXPORT (abi/c/alter.h).
func buildC(ctx context.Context, b *Build, _ string) error {
	clang, err := need(C, "clang", "apt-get install clang lld (or run scripts/setup.sh)")
	if err != nil {
		return err
	}
	if _, err := need(C, "wasm-ld", "apt-get install lld (or run scripts/setup.sh)"); err != nil {
		return err
	}
	sources, err := filepath.Glob(filepath.Join(b.Dir, "*.c"))
	if err != nil || len(sources) == 0 {
		return fmt.Errorf("no .c files in %s", b.Dir)
	}
	out, err := filepath.Abs(b.Out)
	if err != nil {
		return err
	}
	args := []string{"--target=wasm32", "-nostdlib", "-O2", "-Wall", "-Wextra", "-Wl,--no-entry", "-o", out}
	if b.Root != "" {
		// In the source tree; a scaffolded plugin has alter.h beside it.
		args = append(args, "-I", filepath.Join(b.Root, "abi", "c"))
	}
	args = append(args, sources...)
	return run(ctx, b.Dir, nil, clang, args...)
}
