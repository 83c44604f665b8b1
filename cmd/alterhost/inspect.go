package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/plugin"
)

// runInspect prints what a plugin is and may do, without running it.
func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost plugin inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the manifest and module interface as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: alterhost plugin inspect [--json] FILE.wasm")
		fmt.Fprintln(stderr, "\nPrints a plugin's manifest, tools and permissions without running it.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("inspect needs one plugin file")
	}
	spec, err := plugin.Read(fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"file": spec.File, "manifest_source": spec.Source, "manifest": spec.Manifest, "module": spec.Interface,
		})
	}
	m := spec.Manifest
	w := &lineWriter{w: stdout}
	w.f("%s %s  (%s, manifest from %s)", m.Name, m.Version, spec.File, spec.Source)
	if m.Description != "" {
		w.f("  %s", m.Description)
	}
	w.f("")
	w.f("ABI:            %s", m.ABI)
	writeAccess(w, "", m.Access)
	if len(m.AllowedHosts) == 0 {
		w.f("Allowed hosts:  none (alter_request is refused)")
	} else {
		hosts := make([]string, len(m.AllowedHosts))
		for i, h := range m.AllowedHosts {
			hosts[i] = string(h)
		}
		w.f("Allowed hosts:  %s", strings.Join(hosts, ", "))
	}
	l := m.Limits
	w.f("Limits:         %s per call, %d MiB memory, %d instances (queue %s), output %d B, request body %d B, response body %d B, request timeout %s",
		l.Timeout(), l.MemoryMiB, l.MaxInstances, l.QueueTimeout(), l.MaxOutputBytes,
		l.MaxRequestBodyBytes, l.MaxResponseBodyBytes, l.RequestTimeout())
	if len(m.Config) > 0 {
		w.f("Settings:       in %s", filepath.Base(plugin.ConfigPath(spec.File)))
		for _, k := range slices.Sorted(maps.Keys(m.Config)) {
			v := m.Config[k]
			switch {
			case v.Required:
				w.f("  %s (required): %s", k, v.Description)
			case v.Default != nil:
				w.f("  %s (default %q): %s", k, *v.Default, v.Description)
			default:
				w.f("  %s: %s", k, v.Description)
			}
		}
		if _, err := spec.Settings(); err != nil {
			w.f("  not loadable as configured: %v", err)
		}
	}
	w.f("")
	w.f("Tools:")
	for _, t := range m.Tools {
		w.f("  %s  (export %s, result %s)", t.Name, t.Export, t.Result)
		w.f("    %s", t.Description)
		writeAccess(w, "    ", t.Access)
		if a := t.Annotations; a != nil {
			var hints []string
			for name, v := range map[string]*bool{"read-only": a.ReadOnlyHint, "destructive": a.DestructiveHint,
				"idempotent": a.IdempotentHint, "open-world": a.OpenWorldHint} {
				if v != nil && *v {
					hints = append(hints, name)
				}
			}
			if len(hints) > 0 {
				w.f("    hints: %s", strings.Join(slices.Sorted(slices.Values(hints)), ", "))
			}
		}
		w.f("    input:  %s", compact(t.InputSchema))
		if len(t.OutputSchema) > 0 {
			w.f("    output: %s", compact(t.OutputSchema))
		}
	}
	w.f("")
	w.f("Imports:")
	for _, f := range spec.Interface.Imports {
		w.f("  %s.%s %s", f.Module, f.Name, f.Type)
	}
	return w.err
}

func writeAccess(w *lineWriter, indent string, a abi.Access) {
	if a.Provider != "" {
		w.f("%sProvider:       %s", indent, a.Provider)
	}
	if len(a.Scopes) > 0 {
		w.f("%sScopes:         %s", indent, strings.Join(a.Scopes, " "))
	}
	if len(a.Constraints) > 0 {
		w.f("%sConstraints:    %s (shown, not yet enforced)", indent, compact(a.Constraints))
	}
	if a.Agent != "" {
		w.f("%sAgent:          %s", indent, a.Agent)
	}
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// lineWriter writes formatted lines and keeps the first error.
type lineWriter struct {
	w   io.Writer
	err error
}

func (l *lineWriter) f(format string, args ...any) {
	if l.err == nil {
		_, l.err = fmt.Fprintf(l.w, format+"\n", args...)
	}
}
