package pluginbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alterhost/alterhost/abi"
)

func init() { register(AssemblyScript, buildAssemblyScript) }

// ascPackage is the import name of the AssemblyScript binding in plugin
// sources: import { handle } from "@alterhost/alter".
const ascPackage = "@alterhost/alter"

// ascSetup is how to get the pinned compiler.
const ascSetup = "run scripts/setup.sh (npm ci in abi/assemblyscript)"

// buildAssemblyScript compiles DIR/index.ts, the plugin's entry file, with
// the asc that abi/assemblyscript's package-lock.json pins. Other .ts files
// in DIR are imported from it by relative path; the binding is importable
// as "@alterhost/alter". Every export of index.ts is a wasm export.
//
// The minimal runtime collects garbage only when told to, which the
// binding's handle functions do after each call; AssemblyScript's own
// env.abort, env.trace and env.seed imports are pointed at the binding,
// since alterhost refuses imports from "env". The same sources and the
// same asc give the same bytes.
func buildAssemblyScript(ctx context.Context, b *Build, work string) error {
	node, err := need(AssemblyScript, "node", "apt-get install nodejs npm, then "+ascSetup)
	if err != nil {
		return err
	}
	// A plugin made by `alterhost plugin new` brings its own package.json
	// (npm install puts asc beside it) and a copy of the binding in alter/;
	// one in the source tree uses abi/assemblyscript's.
	tools, sources, setup := filepath.Join(b.Root, "abi", "assemblyscript"), "", ascSetup
	if b.Root == "" {
		tools, setup = b.Dir, "run npm install in "+b.Dir
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "node_modules", "assemblyscript")); err == nil {
		tools, setup = b.Dir, "run npm install in "+b.Dir
	}
	sources = filepath.Join(tools, "assembly")
	if _, err := os.Stat(filepath.Join(b.Dir, "alter", "index.ts")); err == nil {
		sources = filepath.Join(b.Dir, "alter")
	}
	asc := filepath.Join(tools, "node_modules", "assemblyscript", "bin", "asc.js")
	if _, err := os.Stat(asc); err != nil {
		return &ToolchainError{Lang: AssemblyScript, Tool: "asc (the assemblyscript npm package)", Install: setup}
	}
	if err := checkPinned(tools, setup); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "index.ts")); err != nil {
		return fmt.Errorf("no index.ts in %s: an AssemblyScript plugin's entry file is index.ts", b.Dir)
	}
	// A copy of the binding under a fixed package name, rather than a path
	// into the source tree, so a plugin's imports do not depend on where
	// its folder is.
	lib := filepath.Join(work, "lib")
	if err := copyTS(sources, filepath.Join(lib, filepath.FromSlash(ascPackage))); err != nil {
		return err
	}
	out, err := filepath.Abs(b.Out)
	if err != nil {
		return err
	}
	internal := "~lib/" + ascPackage + "/index/"
	if err := run(ctx, b.Dir, nil, node, asc, "index.ts", "--outFile", out,
		"--path", lib, "-O3", "--runtime", "minimal", "--noColors",
		"--use", "abort="+internal+"alterAbort",
		"--use", "trace="+internal+"alterTrace",
		"--use", "seed="+internal+"alterSeed"); err != nil {
		return err
	}
	return checkASCImports(out)
}

// checkPinned refuses an installed assemblyscript that is not the one the
// lockfile pins: another version may compile the same sources differently.
func checkPinned(binding, setup string) error {
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	var installed struct {
		Version string `json:"version"`
	}
	raw, err := os.ReadFile(filepath.Join(binding, "package-lock.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(binding, "package-lock.json"), err)
	}
	raw, err = os.ReadFile(filepath.Join(binding, "node_modules", "assemblyscript", "package.json"))
	if err != nil {
		return &ToolchainError{Lang: AssemblyScript, Tool: "asc (the assemblyscript npm package)", Install: setup}
	}
	if err := json.Unmarshal(raw, &installed); err != nil {
		return err
	}
	if want := lock.Packages["node_modules/assemblyscript"].Version; installed.Version != want {
		return &ToolchainError{Lang: AssemblyScript,
			Tool:    fmt.Sprintf("asc %s as the lockfile pins (found %s)", want, installed.Version),
			Install: setup}
	}
	return nil
}

// copyTS copies the .ts files of src into dst.
func copyTS(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("the AssemblyScript binding: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".ts") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), raw, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkASCImports names the standard-library feature behind an "env"
// import (console.log, Date.now, ...), which alterhost would refuse only at
// load and in less helpful words.
func checkASCImports(path string) error {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	iface, err := abi.ReadInterface(wasm)
	if err != nil {
		return err
	}
	var env []string
	for _, imp := range iface.Imports {
		if imp.Module == "env" {
			env = append(env, imp.Name)
		}
	}
	if len(env) == 0 {
		return nil
	}
	slices.Sort(env)
	return fmt.Errorf("the plugin imports %s from \"env\", which alterhost does not provide: "+
		"AssemblyScript's console, Date and process need a JavaScript host; "+
		"use the binding's log functions instead", strings.Join(env, ", "))
}
