// Package sqlite is the vault's embedded store: one SQLite file, through the
// pure-Go modernc.org/sqlite driver, so alterhost builds without cgo.
//
// A Store keeps two connection pools on the file. SQLite allows one writer
// at a time, so all writes go through a pool of a single connection: writers
// of one process queue there, in order and cancellably, instead of spinning
// in SQLite's busy handler. Reads use a small pool of read-only connections,
// which WAL lets run alongside the writer. Other processes on the same file
// are kept out by SQLite's file locks, and waited for up to busyTimeout.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/internal/migrate"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

const (
	// busyTimeout is how long a statement waits for another process's
	// write lock. UpdateGrant holds that lock while its fn refreshes a
	// token upstream, so it is longer than a refresh should take.
	busyTimeout = 10 * time.Second
	// readers caps the read connections. The vault's reads are short
	// point lookups and one audit page, so a few connections suffice; each
	// holds its own page cache.
	readers = 4
)

// Store is a store.Store in one SQLite file. It is safe for concurrent use,
// and several Stores, in one process or many, may open the same file.
type Store struct {
	w *sql.DB // the one writer connection
	r *sql.DB // read-only connections
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating it and its folder if need be
// (mode 0600 and 0700: the file holds sealed tokens and hashes of live
// links), and migrates its schema to the latest version.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// SQLite would create the file with the umask's mode; create it first.
	// Its -wal and -shm files take the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	f.Close()

	s := &Store{}
	s.w, err = sql.Open("sqlite", dsn(abs, url.Values{
		// WAL: readers do not block the writer nor it them.
		"_journal_mode": {"WAL"},
		// FULL: in WAL mode NORMAL may lose the last commits on power
		// loss. A lost commit can be a refreshed token whose upstream has
		// already revoked the old refresh token, which breaks the grant;
		// the vault writes rarely, so the fsync per commit is cheap.
		"_synchronous":  {"FULL"},
		"_foreign_keys": {"1"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	if err := s.migrate(ctx); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// Opened after migrating, so the file is already in WAL mode; query_only
	// guards against a write slipping into a read path.
	s.r, err = sql.Open("sqlite", dsn(abs, url.Values{"_query_only": {"1"}}))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	if err := s.r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	return s, nil
}

// dsn is a file: URI, so that any path (even with '?' or '#') is taken
// literally; the driver applies busy_timeout before the other pragmas.
func dsn(path string, pragmas url.Values) string {
	pragmas.Set("_busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10))
	return (&url.URL{Scheme: "file", Path: path, RawQuery: pragmas.Encode()}).String()
}

// Ping checks that the database file answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes the store's connections.
func (s *Store) Close() error {
	var errs []error
	for _, db := range []*sql.DB{s.r, s.w} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// tx runs fn in a write transaction on the writer connection and commits
// it if fn returns nil. BEGIN IMMEDIATE takes SQLite's write lock at once,
// so it is held across processes for all of fn, and a transaction never
// has to upgrade a read lock (which fails with SQLITE_BUSY, unretried).
// database/sql's BeginTx would issue a deferred BEGIN.
func (s *Store) tx(ctx context.Context, fn func(c *sql.Conn) error) error {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	done := false
	defer func() {
		if done {
			return
		}
		// Also after ctx ends or fn panics: the connection must not go back
		// to the pool inside a transaction. If even ROLLBACK fails, drop it.
		if _, err := c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			c.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if err := fn(c); err != nil {
		return err
	}
	// The work is done; a cancellation now must not undo it.
	if _, err := c.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		return err
	}
	done = true
	return nil
}

// notFound maps sql.ErrNoRows to store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate applies the migrations the database lacks, all in one write
// transaction: a second process starting at the same time waits for the
// lock, then finds them applied; a failed migration leaves no trace.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrate.Load(migrationFiles)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at INTEGER NOT NULL
		) STRICT`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var current int
		if err := c.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if current > len(ms) {
			return fmt.Errorf("migrate: the database is at schema version %d, newer than this alterhost knows (%d)", current, len(ms))
		}
		for _, m := range ms[current:] {
			if _, err := c.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.Name, err)
			}
			if _, err := c.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.Version, m.Name, time.Now().UnixMicro()); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.Name, err)
			}
		}
		return nil
	})
}
