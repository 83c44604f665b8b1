package sqlite

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/internal/migrate"
)

func openT(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "folder")
	path := filepath.Join(dir, "vault.db")
	s := openT(t, path)
	if err := s.PutLink(t.Context(), store.Link{TokenHash: []byte("h"), CreatedAt: time.Now(), ExpiresAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600, path + "-wal": 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(name), fi.Mode(), want)
		}
	}
}

func TestOpenOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "vault?.db")
	openT(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at the literal path: %v", err)
	}
}

func TestPragmas(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "vault.db"))
	for _, c := range []struct {
		db     string
		pragma string
		want   string
	}{
		{"w", "journal_mode", "wal"},
		{"w", "synchronous", "2"}, // FULL
		{"w", "foreign_keys", "1"},
		{"w", "busy_timeout", "10000"},
		{"w", "query_only", "0"},
		{"r", "journal_mode", "wal"},
		{"r", "busy_timeout", "10000"},
		{"r", "query_only", "1"},
	} {
		db := s.w
		if c.db == "r" {
			db = s.r
		}
		var got string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: PRAGMA %s = %s, want %s", c.db, c.pragma, got, c.want)
		}
	}
}

func versions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestMigrations(t *testing.T) {
	ms, err := migrate.Load(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vault.db")

	// Many stores opening one new file at once: each migration runs once.
	const n = 8
	stores := make([]*Store, n)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			s, err := Open(t.Context(), path)
			if err != nil {
				t.Errorf("concurrent Open: %v", err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	for _, s := range stores {
		if s != nil {
			s.Close()
		}
	}
	if t.Failed() {
		return
	}

	s := openT(t, path) // reopening applies nothing
	if got := versions(t, s); len(got) != len(ms) || got[len(got)-1] != len(ms) {
		t.Errorf("applied versions %v, want 1..%d", got, len(ms))
	}

	// A database from a newer alterhost is refused, not written to.
	if _, err := s.w.ExecContext(t.Context(), "INSERT INTO schema_migrations VALUES (?, 'future', 0)", len(ms)+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: %v, want an error", err)
	}
}

// childEnv names the database a child process of
// TestUpdateGrantAcrossProcesses increments the counter in.
const childEnv = "ALTERHOST_SQLITE_TEST_CHILD_DB"

const incrementsPerProcess = 10

func increment(ctx context.Context, s *Store) error {
	_, err := s.UpdateGrant(ctx, "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
		c, err := strconv.Atoi(g.AccountID)
		if err != nil {
			return g, false, err
		}
		time.Sleep(time.Millisecond)
		g.AccountID = strconv.Itoa(c + 1)
		return g, true, nil
	})
	return err
}

// await polls for a file the other processes create, as a barrier.
func await(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", filepath.Base(path))
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateGrantAcrossProcesses is storetest's lost-update check with the
// competitors in separate processes, where only SQLite's file locks keep
// them apart. The children are this test binary, run with childEnv set;
// files next to the database start everyone at once.
func TestUpdateGrantAcrossProcesses(t *testing.T) {
	if path := os.Getenv(childEnv); path != "" {
		s := openT(t, path)
		touch(t, path+".ready-"+strconv.Itoa(os.Getpid()))
		await(t, path+".go")
		for range incrementsPerProcess {
			if err := increment(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	path := filepath.Join(t.TempDir(), "vault.db")
	s := openT(t, path)
	now := time.Now()
	if err := s.PutGrant(t.Context(), store.Grant{ID: "g", Subject: "alice", Provider: "github",
		AccountID: "0", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	const children = 2
	var wg sync.WaitGroup
	for range children {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestUpdateGrantAcrossProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := cmd.Wait(); err != nil {
				t.Errorf("child: %v\n%s", err, out.String())
			}
		})
		defer wg.Wait()
		await(t, path+".ready-"+strconv.Itoa(cmd.Process.Pid))
	}
	touch(t, path+".go")
	for range incrementsPerProcess {
		if err := increment(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	g, err := s.GetGrant(t.Context(), "alice", "github")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa((children + 1) * incrementsPerProcess); g.AccountID != want {
		t.Errorf("counter = %s, want %s", g.AccountID, want)
	}
}
