// Package plugin loads WebAssembly plugins from files and runs their tools:
// it reads and checks each manifest against its module, compiles the module
// once, keeps a bounded pool of instances, and serves alter_request for the
// tool that is running.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/metrics"
)

// Source is where a plugin's manifest came from.
type Source string

const (
	// FromSection: the module's alter.manifest custom section.
	FromSection Source = "section"
	// FromSidecar: a NAME.alter.json file beside NAME.wasm.
	FromSidecar Source = "sidecar"
)

// Spec is a plugin read from disk and checked, but not compiled: enough to
// show what it is and what it may do, without running any of it.
type Spec struct {
	File      string
	Source    Source
	Manifest  *abi.Manifest
	Interface *abi.Interface
	Wasm      []byte
}

// Settings returns the settings the plugin runs with: the operator's
// NAME.config.json (see [ConfigPath]) over the manifest's defaults. It is
// read at load, not by Read, so a plugin can be inspected before it is
// configured.
func (s *Spec) Settings() (map[string]string, error) {
	path := ConfigPath(s.File)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return s.Manifest.ResolveConfig(path, data)
}

// ConfigPath returns the path of the operator's settings for a plugin file.
func ConfigPath(wasmPath string) string {
	return strings.TrimSuffix(wasmPath, ".wasm") + abi.ConfigSuffix
}

// SidecarPath returns the sidecar manifest path for a plugin file.
func SidecarPath(wasmPath string) string {
	return strings.TrimSuffix(wasmPath, ".wasm") + abi.SidecarSuffix
}

// Read reads the plugin at path and its manifest (the sidecar wins over the
// embedded section) and checks the manifest against the module's imports
// and exports. It never runs plugin code.
func Read(path string) (*Spec, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	iface, err := abi.ReadInterface(wasm)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid WebAssembly module: %w", path, err)
	}
	spec := &Spec{File: path, Interface: iface, Wasm: wasm}
	raw, err := os.ReadFile(SidecarPath(path))
	manifestFile := SidecarPath(path)
	switch {
	case err == nil:
		spec.Source = FromSidecar
	case errors.Is(err, fs.ErrNotExist):
		var ok bool
		raw, ok, err = abi.CustomSection(wasm, abi.ManifestSection)
		if err != nil {
			return nil, fmt.Errorf("%s: not a valid WebAssembly module: %w", path, err)
		}
		if !ok {
			return nil, fmt.Errorf("%s: no manifest: embed one with `alterhost plugin pack %s MANIFEST.json` or put it in %s",
				path, path, filepath.Base(SidecarPath(path)))
		}
		spec.Source, manifestFile = FromSection, path
	default:
		return nil, err
	}
	if spec.Manifest, err = abi.ParseManifest(manifestFile, raw); err != nil {
		return nil, err
	}
	if problems := checkModule(spec.Manifest, iface); len(problems) > 0 {
		return nil, &abi.ManifestError{File: path, Problems: problems}
	}
	return spec, nil
}

// checkModule compares the manifest with what the module really exports
// and imports, so a mistake shows at load and not at the first call.
func checkModule(m *abi.Manifest, iface *abi.Interface) []abi.Problem {
	var ps []abi.Problem
	for i, t := range m.Tools {
		field := fmt.Sprintf("tools[%d].export", i)
		f, ok := iface.Export(t.Export)
		switch {
		case !ok:
			ps = append(ps, abi.Problem{Field: field,
				What: fmt.Sprintf("%q is not exported by the module", t.Export),
				Fix:  fmt.Sprintf("export it, or name one of: %s", strings.Join(iface.ExportNames(), ", "))})
		case f.Type != abi.ToolExportType && f.Type != "() -> ()":
			ps = append(ps, abi.Problem{Field: field,
				What: fmt.Sprintf("%q has type %s", t.Export, f.Type),
				Fix:  "a tool export takes no parameters and returns an i32 status (0 for success)"})
		}
	}
	for _, imp := range iface.Imports {
		switch {
		case imp.Module == "extism:host/env", imp.Module == "wasi_snapshot_preview1":
		case imp.Module == abi.HostModule && imp.Name == abi.RequestFunction:
			if imp.Type != "(i64) -> (i64)" {
				ps = append(ps, abi.Problem{Field: "(module imports)",
					What: fmt.Sprintf("%s.%s is imported with type %s", imp.Module, imp.Name, imp.Type),
					Fix:  "import it as (i64) -> (i64): request block in, reply block out"})
			}
		default:
			ps = append(ps, abi.Problem{Field: "(module imports)",
				What: fmt.Sprintf("imports %s.%s, which alterhost does not provide", imp.Module, imp.Name),
				Fix:  "use alter_request for the outside world; Extism's kernel and WASI preview 1 are the other imports available"})
		}
	}
	return ps
}

// Catalog is the set of plugins loaded from one folder, and the tools they
// offer under their final names.
type Catalog struct {
	Plugins []*Plugin
	Tools   []Binding
}

// Binding ties a tool name to the plugin and manifest entry that serve it.
type Binding struct {
	Plugin *Plugin
	Tool   *abi.Tool
}

// LoadDir loads every *.wasm file in dir, in file-name order, once (see
// [Folder] for a folder kept loaded). A plugin that fails to load is
// skipped and its error returned among errs; the rest still load. Name
// collisions resolve by that order: the first plugin with a given name, and
// the first tool with a given name, win; later ones are skipped with an
// error naming both files.
func (h *Host) LoadDir(ctx context.Context, dir string) (cat *Catalog, errs []error) {
	f := h.OpenFolder(dir)
	_, errs = f.Reload(ctx)
	return f.Catalog(), errs
}

// Close stops every plugin in the catalog.
func (c *Catalog) Close(ctx context.Context) error {
	var errs []error
	for _, p := range slices.Backward(c.Plugins) {
		errs = append(errs, p.Close(ctx))
	}
	return errors.Join(errs...)
}

// Host loads and runs plugins on one engine, sending their alter_requests
// through one outbound path.
type Host struct {
	Engine   engine.Engine
	Outbound Outbound
	// Logger receives load and call events; nil discards them.
	Logger *slog.Logger
	// Metrics records loads, pools, calls and alter_requests; nil: none.
	Metrics *metrics.Metrics
	// Isolation says which calls may share a guest instance; the zero
	// value, IsolatePerson, lets no guest state cross between people.
	Isolation Isolation
}

func (h *Host) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}
