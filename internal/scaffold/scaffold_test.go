package scaffold

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alterhost/alterhost/internal/pluginbuild"
)

func TestNew(t *testing.T) {
	for _, l := range Langs() {
		t.Run(string(l), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "p")
			files, err := New(dir, "p", l)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(files, "alter.json") || !slices.Contains(files, "README.md") {
				t.Fatalf("files: %v", files)
			}
			for _, f := range files {
				if strings.HasSuffix(f, "_test.go") {
					t.Errorf("a test file was copied: %s", f)
				}
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Error(err)
				}
			}
			// What was written is recognised as the language it is in.
			if got, err := pluginbuild.Detect(dir); err != nil || got != l {
				t.Errorf("Detect: %s, %v", got, err)
			}
		})
	}
}

func TestNewRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, plugin string
		lang         pluginbuild.Lang
		want         string
	}{
		{"bad name", "My Plugin", pluginbuild.Go, "is not a plugin name"},
		{"path in name", "../x", pluginbuild.Go, "is not a plugin name"},
		{"unknown language", "p", "cobol", `no plugin template for "cobol"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(filepath.Join(dir, "x"), tc.plugin, tc.lang); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "keep.txt"), []byte("mine"), 0o644)
	if _, err := New(full, "p", pluginbuild.Go); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("into a folder with files: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(full, "keep.txt")); string(b) != "mine" {
		t.Fatal("an existing file was touched")
	}
}
