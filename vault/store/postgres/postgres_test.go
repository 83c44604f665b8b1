package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/storetest"
)

// serverURL returns the test server's URL, skipping the test when none is
// configured and failing it when the server does not answer: a CI run that
// set the variable must not pass by skipping.
func serverURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("ALTERHOST_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("ALTERHOST_TEST_POSTGRES_URL is not set; skipping the PostgreSQL backend")
	}
	conn, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatalf("ALTERHOST_TEST_POSTGRES_URL is set but the server cannot be reached: %v", err)
	}
	conn.Close(t.Context())
	return u
}

// freshSchema creates a schema for t alone, dropped when t ends, and
// returns base with its search_path set to it: parallel tests and reruns
// never see each other's tables.
func freshSchema(t *testing.T, base string) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	name := "alterhost_test_" + hex.EncodeToString(b[:])
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(t.Context(), "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already done here.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + name // keyword/value form
}

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
	ms, err := migrations()
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
