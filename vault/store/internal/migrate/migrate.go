// Package migrate reads a store backend's embedded schema migrations:
// files migrations/NNNN_description.sql whose versions run 1, 2, 3...
// Each backend applies them in its own way, under its own lock.
package migrate

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Migration is one migration file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load returns the migrations in fsys's "migrations" folder in order,
// checking that their versions run 1, 2, 3... without gaps.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for i, e := range entries { // sorted by name
		prefix, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", e.Name(), i+1)
		}
		b, err := fs.ReadFile(fsys, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	return ms, nil
}
