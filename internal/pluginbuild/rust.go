package pluginbuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func init() { register(Rust, buildRust) }

// RustTarget is the target Rust plugins build for: it needs no WASI, so
// the module imports only the Extism kernel and alter_request.
const RustTarget = "wasm32-unknown-unknown"

// rustInstall says how to get Debian's Rust toolchain for plugins.
const rustInstall = "apt-get install rustc libstd-rust-dev-wasm32 (or run scripts/setup.sh)"

// RustCompiler returns the rustc that builds plugins: $ALTERHOST_RUSTC, else
// /usr/bin/rustc. Debian's compiler is named by path because a rustup
// toolchain first on PATH lacks Debian's wasm32 standard library. A
// missing compiler, or one without the wasm32 std, is a *ToolchainError.
func RustCompiler(ctx context.Context) (string, error) {
	rustc := os.Getenv("ALTERHOST_RUSTC")
	if rustc == "" {
		rustc = "/usr/bin/rustc"
	}
	if fi, err := os.Stat(rustc); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", &ToolchainError{Lang: Rust, Tool: rustc, Install: rustInstall}
	}
	out, err := exec.CommandContext(ctx, rustc, "--print", "sysroot").Output()
	if err != nil {
		return "", fmt.Errorf("%s --print sysroot: %w", rustc, err)
	}
	std := filepath.Join(strings.TrimSpace(string(out)), "lib", "rustlib", RustTarget, "lib", "libstd-*.rlib")
	if m, _ := filepath.Glob(std); len(m) == 0 {
		return "", &ToolchainError{Lang: Rust, Tool: "the " + RustTarget + " standard library for " + rustc,
			Install: rustInstall}
	}
	return rustc, nil
}

// buildRust builds a Rust plugin: the folder's lib.rs is the crate root of
// a cdylib, with the binding alter.rs compiled first as the crate `alter`.
// The binding is the folder's own alter.rs if it carries one (a plugin
// made by `alterhost plugin new`), else the source tree's abi/rust. Tools
// are #[no_mangle] extern "C" functions returning i32. Panics abort (the
// target cannot unwind); LTO and opt-level s keep the module small, and
// remapped paths keep build folders out of it.
func buildRust(ctx context.Context, b *Build, work string) error {
	rustc, err := RustCompiler(ctx)
	if err != nil {
		return err
	}
	src, err := filepath.Abs(filepath.Join(b.Dir, "lib.rs"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("a Rust plugin's crate root is lib.rs: %w", err)
	}
	out, err := filepath.Abs(b.Out)
	if err != nil {
		return err
	}
	dir := filepath.Dir(src)
	common := []string{"--edition", "2021", "--target", RustTarget, "-C", "opt-level=s", "-C", "panic=abort",
		"--remap-path-prefix", dir + "=."}
	binding := dir
	if _, err := os.Stat(filepath.Join(binding, "alter.rs")); err != nil {
		if b.Root == "" {
			return fmt.Errorf("%s has no alter.rs beside lib.rs, and is not in the alterhost source tree: copy abi/rust/alter.rs there", b.Dir)
		}
		if binding, err = filepath.Abs(filepath.Join(b.Root, "abi", "rust")); err != nil {
			return err
		}
		common = append(common, "--remap-path-prefix", binding+"=alter")
	}
	lib := filepath.Join(work, "libalter.rlib")
	// The rlib holds LLVM bitcode only: the plugin's LTO compiles it with
	// the plugin, so machine code for it alone would be thrown away.
	if err := run(ctx, work, nil, rustc, append(common, "--crate-type", "rlib", "--crate-name", "alter",
		"-C", "linker-plugin-lto", "-o", lib, filepath.Join(binding, "alter.rs"))...); err != nil {
		return err
	}
	return run(ctx, b.Dir, nil, rustc, append(common, "--crate-type", "cdylib", "--crate-name", "plugin",
		"-C", "lto", "-C", "codegen-units=1", "-C", "strip=symbols",
		"--extern", "alter="+lib, "-o", out, src)...)
}
