package vault

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/postgres"
	"github.com/alterhost/alterhost/vault/store/sqlite"
)

// DatabaseFile is the embedded database's name inside the data directory.
const DatabaseFile = "alterhost.db"

// OpenStore opens the store named by databaseURL: a postgres:// or
// postgresql:// URL for PostgreSQL, a sqlite:PATH URL, or "" for the
// embedded SQLite file in dataDir. Migrations are applied before it
// returns.
func OpenStore(ctx context.Context, databaseURL, dataDir string) (store.Store, error) {
	switch {
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		return postgres.Open(ctx, databaseURL)
	case strings.HasPrefix(databaseURL, "sqlite:"):
		return sqlite.Open(ctx, strings.TrimPrefix(strings.TrimPrefix(databaseURL, "sqlite:"), "//"))
	case databaseURL == "":
		return sqlite.Open(ctx, filepath.Join(dataDir, DatabaseFile))
	}
	return nil, errUnknownDatabase(databaseURL)
}

type errUnknownDatabase string

func (e errUnknownDatabase) Error() string {
	scheme, _, _ := strings.Cut(string(e), ":")
	return "--database-url: scheme " + scheme + " is not supported; use postgres://... or sqlite:PATH"
}
