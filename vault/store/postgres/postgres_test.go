package postgres

import (
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/alterhost/alterhost/internal/pgtest"
	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/internal/migrate"
	"github.com/alterhost/alterhost/vault/store/storetest"
)

// serverURL and freshSchema give each test its own schema on the test
// server; see internal/pgtest.
var (
	serverURL   = pgtest.ServerURL
	freshSchema = pgtest.Schema
)

// open opens a store on url, closed when t ends.
func open(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	base := serverURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, freshSchema(t, base))
	})
}

func TestConformanceShared(t *testing.T) {
	base := serverURL(t)
	storetest.RunShared(t, func(t *testing.T) (a, b store.Store) {
		u := freshSchema(t, base)
		return open(t, u), open(t, u)
	})
}

func TestMigrations(t *testing.T) {
	u := freshSchema(t, serverURL(t))
	ms, err := migrate.Load(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}

	// Many instances starting at once on a new schema: each migration runs
	// once, the others wait on the advisory lock and find nothing to do.
	const n = 6
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			s, err := Open(t.Context(), u)
			if err != nil {
				t.Errorf("concurrent Open: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	s := open(t, u) // reopening applies nothing
	rows, err := s.pool.Query(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ms) || int(got[len(got)-1]) != len(ms) {
		t.Errorf("applied versions %v, want 1..%d", got, len(ms))
	}

	// A database from a newer alterhost is refused, not written to.
	if _, err := s.pool.Exec(t.Context(), "INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')", len(ms)+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), u); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: %v, want an error", err)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	// Nothing listens on port 1; the error must not carry the password.
	_, err := Open(t.Context(), "postgres://alterhost:hunter2-secret@127.0.0.1:1/db?connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("the error shows the password: %v", err)
	}
}

// TestGrantKeysCollateC checks what the conformance suite cannot on a
// server whose default collation is already bytewise: ListGrants's order
// does not depend on the database's collation.
func TestGrantKeysCollateC(t *testing.T) {
	s := open(t, freshSchema(t, serverURL(t)))
	rows, err := s.pool.Query(t.Context(), `SELECT column_name || ' ' || coalesce(collation_name, '')
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'grants'
			AND column_name IN ('subject', 'provider') ORDER BY column_name`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"provider C", "subject C"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("collations %q, want %q", got, want)
	}
}
