// Package pluginbuild builds a plugin's source folder into a Wasm module
// with its language's toolchain and embeds the folder's alter.json, so the
// result is a complete plugin. Each language is one file holding one
// builder; a missing toolchain is a *ToolchainError that names the package
// that provides it.
package pluginbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alterhost/alterhost/abi"
)

// Lang is a plugin source language.
type Lang string

// The languages a plugin may be written in.
const (
	Go             Lang = "go"
	C              Lang = "c"
	AssemblyScript Lang = "assemblyscript"
	Rust           Lang = "rust"
)

// builder compiles the sources in b.Dir into the module b.Out, without a
// manifest; work is a scratch folder removed afterwards.
type builder func(ctx context.Context, b *Build, work string) error

// builders holds each language's builder; each language file registers its
// own in init, so adding a language touches no other file.
var builders = map[Lang]builder{}

func register(l Lang, f builder) { builders[l] = f }

// Langs lists the languages this build of alterhost can compile.
func Langs() []Lang {
	var out []Lang
	for l := range builders {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// Build is one plugin build.
type Build struct {
	// Lang is the source language.
	Lang Lang
	// Dir is the plugin's source folder, holding alter.json.
	Dir string
	// Out is the plugin file to write.
	Out string
	// Root is the alterhost source tree, whose abi/ holds the bindings.
	Root string
}

// ToolchainError is a toolchain missing from this machine.
type ToolchainError struct {
	Lang    Lang
	Tool    string // the command that was not found
	Install string // how to get it, e.g. "apt-get install clang lld"
}

func (e *ToolchainError) Error() string {
	return fmt.Sprintf("building a %s plugin needs %s, which is not installed: %s", e.Lang, e.Tool, e.Install)
}

// need returns the path of tool, or a *ToolchainError saying how to
// install it.
func need(l Lang, tool, install string) (string, error) {
	p, err := exec.LookPath(tool)
	if err != nil {
		return "", &ToolchainError{Lang: l, Tool: tool, Install: install}
	}
	return p, nil
}

// Run builds b: the language's toolchain compiles b.Dir, the manifest in
// b.Dir/alter.json is validated and embedded, and b.Out is replaced only
// when everything succeeded.
func Run(ctx context.Context, b Build) error {
	f, ok := builders[b.Lang]
	if !ok {
		return fmt.Errorf("unknown plugin language %q; known: %v", b.Lang, Langs())
	}
	manifestPath := filepath.Join(b.Dir, "alter.json")
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return fmt.Errorf("plugin source %s: %w", b.Dir, err)
	}
	if _, err := abi.ParseManifest(manifestPath, raw); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "alterhost-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	module := filepath.Join(work, "module.wasm")
	step := b
	step.Out = module
	if err := f(ctx, &step, work); err != nil {
		return err
	}
	wasm, err := os.ReadFile(module)
	if err != nil {
		return fmt.Errorf("the %s build wrote no module: %w", b.Lang, err)
	}
	withManifest, err := abi.AppendCustomSection(wasm, abi.ManifestSection, raw)
	if err != nil {
		return err
	}
	tmp := b.Out + ".tmp"
	if err := os.WriteFile(tmp, withManifest, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, b.Out)
}

// run runs a toolchain command in dir and folds its output into the error.
func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s %s failed:\n%s", filepath.Base(name), strings.Join(args, " "), strings.TrimSpace(string(out)))
		}
		return fmt.Errorf("running %s: %w", name, err)
	}
	return nil
}

// Detect names the language of the plugin sources in dir by the files
// there: go.mod or .go files, .c files, .rs files, or .ts files.
func Detect(dir string) (Lang, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var found []Lang
	add := func(l Lang) {
		if !slices.Contains(found, l) {
			found = append(found, l)
		}
	}
	for _, e := range entries {
		switch n := e.Name(); {
		case e.IsDir():
		case n == "go.mod" || strings.HasSuffix(n, ".go"):
			add(Go)
		case strings.HasSuffix(n, ".c"):
			add(C)
		case strings.HasSuffix(n, ".rs"):
			add(Rust)
		case strings.HasSuffix(n, ".ts"):
			add(AssemblyScript)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%s holds no Go, C, Rust or AssemblyScript sources; say which with --lang", dir)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%s holds sources in %v; say which to build with --lang", dir, found)
}

// FindRoot returns the alterhost source tree dir lies in (its bindings
// are then used in place), or "" when it lies in none: a plugin made by
// `alterhost plugin new` carries a copy of its binding.
func FindRoot(dir string) string {
	d, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		if mod, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.HasPrefix(string(mod), "module github.com/alterhost/alterhost\n") {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}
