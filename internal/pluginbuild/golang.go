package pluginbuild

import (
	"context"
	"path/filepath"
)

func init() { register(Go, buildGo) }

// buildGo builds a Go plugin: a wasip1 reactor (c-shared), so the Go
// runtime starts once when the instance is made, not on each call.
// -trimpath, no VCS stamp and no build ID make the same sources give the
// same bytes.
func buildGo(ctx context.Context, b *Build, _ string) error {
	gobin, err := need(Go, "go", "install Go 1.26 or later from https://go.dev/dl/")
	if err != nil {
		return err
	}
	out, err := filepath.Abs(b.Out)
	if err != nil {
		return err
	}
	return run(ctx, b.Dir, []string{"GOOS=wasip1", "GOARCH=wasm"}, gobin, "build", "-buildmode=c-shared",
		"-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o", out, ".")
}
