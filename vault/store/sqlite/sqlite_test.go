package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/sqlite"
	"github.com/alterhost/alterhost/vault/store/storetest"
)

// open opens a store on path, closed when t ends.
func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "vault.db"))
	})
}

func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (a, b store.Store) {
		path := filepath.Join(t.TempDir(), "vault.db")
		return open(t, path), open(t, path)
	})
}
