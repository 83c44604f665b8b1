package pluginbuild

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alterhost/alterhost/abi"
)

// root is the repository root, two folders up.
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBuildExamples builds the Go and C examples and checks that each
// result is a plugin whose embedded manifest is the folder's alter.json.
func TestBuildExamples(t *testing.T) {
	r := root(t)
	for _, tc := range []struct {
		lang Lang
		dir  string
	}{{Go, "examples/go/sandbox"}, {C, "examples/c/text"}} {
		t.Run(string(tc.lang), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "p.wasm")
			dir := filepath.Join(r, tc.dir)
			if err := Run(context.Background(), Build{Lang: tc.lang, Dir: dir, Out: out, Root: r}); err != nil {
				t.Fatal(err)
			}
			wasm, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := abi.CustomSection(wasm, abi.ManifestSection)
			want, _ := os.ReadFile(filepath.Join(dir, "alter.json"))
			if err != nil || !ok || !bytes.Equal(got, want) {
				t.Fatalf("embedded manifest: ok=%v err=%v", ok, err)
			}
		})
	}
}

func TestBuildRefusals(t *testing.T) {
	r := root(t)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "p.wasm")
	if err := Run(ctx, Build{Lang: "cobol", Dir: r, Out: out, Root: r}); err == nil {
		t.Error("an unknown language was built")
	}
	if err := Run(ctx, Build{Lang: C, Dir: t.TempDir(), Out: out, Root: r}); err == nil {
		t.Error("a folder without alter.json was built")
	}
	// A broken manifest is refused before any compiler runs.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "alter.json"), []byte(`{"abi":"alter/v1"}`), 0o644)
	if err := Run(ctx, Build{Lang: C, Dir: bad, Out: out, Root: r}); err == nil {
		t.Error("a folder with a bad manifest was built")
	}
	// A missing toolchain names what to install.
	t.Setenv("PATH", t.TempDir())
	ok := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(r, "examples/c/text/alter.json"))
	os.WriteFile(filepath.Join(ok, "alter.json"), b, 0o644)
	var te *ToolchainError
	if err := Run(ctx, Build{Lang: C, Dir: ok, Out: out, Root: r}); !errors.As(err, &te) || te.Tool != "clang" {
		t.Errorf("without clang: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a failed build left a plugin behind")
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		files []string
		want  Lang
		err   string
	}{
		{[]string{"go.mod", "main.go", "alter.json"}, Go, ""},
		{[]string{"text.c", "alter.h"}, C, ""},
		{[]string{"lib.rs"}, Rust, ""},
		{[]string{"index.ts", "package.json"}, AssemblyScript, ""},
		{[]string{"alter.json"}, "", "no Go, C, Rust or AssemblyScript sources"},
		{[]string{"a.c", "b.rs"}, "", "say which to build with --lang"},
	} {
		dir := t.TempDir()
		for _, f := range tc.files {
			os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		got, err := Detect(dir)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: %s, %v; want %s, %q", tc.files, got, err, tc.want, tc.err)
		}
	}
	if FindRoot(".") == "" || FindRoot(t.TempDir()) != "" {
		t.Error("FindRoot does not tell the source tree from elsewhere")
	}
}
