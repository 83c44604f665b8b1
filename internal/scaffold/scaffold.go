// Package scaffold writes a new plugin's source folder: a manifest, a
// starting tool set in the chosen language, and a copy of that language's
// binding, so the folder builds on its own with `alterhost plugin build`.
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/internal/pluginbuild"
)

//go:embed templates
var templates embed.FS

// lang is what a language's scaffold is made of.
type lang struct {
	name string // as people write it
	// files maps a template under templates/ to the file it becomes.
	files map[string]string
	// binding is the binding folder under abi/ and where its sources go;
	// skip leaves some of its files out.
	bindingFrom, bindingTo string
	skip                   func(name string) bool
	// describe says what each written file is, for the README.
	describe []string
}

var langs = map[pluginbuild.Lang]lang{
	pluginbuild.C: {
		name:        "C",
		files:       map[string]string{"c/main.c.tmpl": "main.c"},
		bindingFrom: "c", bindingTo: ".",
		describe: []string{"`main.c`: the tools, one `ALTER_EXPORT(\"name\")` function each",
			"`alter.h`: the alterhost binding, a copy (freestanding: no libc, no WASI)"},
	},
	pluginbuild.AssemblyScript: {
		name: "AssemblyScript",
		files: map[string]string{"assemblyscript/index.ts.tmpl": "index.ts",
			"assemblyscript/package.json.tmpl": "package.json", "assemblyscript/gitignore.tmpl": ".gitignore"},
		bindingFrom: "assemblyscript/assembly", bindingTo: "alter",
		describe: []string{"`index.ts`: the tools, one exported `(): i32` function each",
			"`package.json`: pins the AssemblyScript compiler; run `npm install` once before building",
			"`alter/`: the alterhost binding, a copy, imported as `@alterhost/alter`"},
	},
	pluginbuild.Rust: {
		name:        "Rust",
		files:       map[string]string{"rust/lib.rs.tmpl": "lib.rs"},
		bindingFrom: "rust", bindingTo: ".",
		describe: []string{"`lib.rs`: the tools, one `#[no_mangle] extern \"C\"` function each",
			"`alter.rs`: the alterhost binding, a copy, built as the crate `alter`"},
	},
	pluginbuild.Go: {
		name:  "Go",
		files: map[string]string{"go/main.go.tmpl": "main.go", "go/go.mod.tmpl": "go.mod"},
		// The binding becomes the module's package NAME/alter.
		bindingFrom: "go", bindingTo: "alter",
		skip: func(name string) bool { return strings.HasSuffix(name, "_test.go") },
		describe: []string{"`main.go`: the tools, one `//go:wasmexport` function each",
			"`alter/`: the alterhost binding, a copy; replace it from a newer alterhost with `alterhost plugin new`"},
	},
}

// Langs lists the languages a plugin can be started in.
func Langs() []pluginbuild.Lang {
	var out []pluginbuild.Lang
	for l := range langs {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// New writes plugin name in language l into dir, which must not exist or
// be empty, and returns the files it wrote, relative to dir.
func New(dir, name string, l pluginbuild.Lang) ([]string, error) {
	spec, ok := langs[l]
	if !ok {
		return nil, fmt.Errorf("no plugin template for %q; choose one of %v", l, Langs())
	}
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("%q is not a plugin name: use 1-64 lower-case letters, digits, '_' or '-', starting with a letter", name)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s is not empty; choose a new folder", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	data := struct {
		Name, LangName string
		Files          []string
	}{Name: name, LangName: spec.name, Files: spec.describe}
	out := map[string][]byte{}
	render := func(tmpl, to string) error {
		src, err := templates.ReadFile(path.Join("templates", tmpl))
		if err != nil {
			return err
		}
		t, err := template.New(tmpl).Parse(string(src))
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return err
		}
		out[to] = b.Bytes()
		return nil
	}
	for tmpl, to := range spec.files {
		if err := render(tmpl, to); err != nil {
			return nil, err
		}
	}
	if err := render("manifest.json.tmpl", "alter.json"); err != nil {
		return nil, err
	}
	if err := render("README.md.tmpl", "README.md"); err != nil {
		return nil, err
	}
	err := fs.WalkDir(abi.Bindings, spec.bindingFrom, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (spec.skip != nil && spec.skip(d.Name())) {
			return err
		}
		b, err := abi.Bindings.ReadFile(p)
		if err != nil {
			return err
		}
		out[path.Join(spec.bindingTo, strings.TrimPrefix(p, spec.bindingFrom+"/"))] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copying the %s binding: %w", spec.name, err)
	}
	// The manifest must be valid as written: a template bug shows here,
	// not at the author's first build.
	if _, err := abi.ParseManifest("alter.json", out["alter.json"]); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range out {
			if !yield(k) {
				return
			}
		}
	})
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, out[n], 0o644); err != nil {
			return nil, err
		}
	}
	return names, nil
}
