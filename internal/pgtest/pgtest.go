// Package pgtest gives tests a PostgreSQL database of their own: the
// server named by $ALTERHOST_TEST_POSTGRES_URL, and a fresh schema per
// test, dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the test server's URL.
const EnvURL = "ALTERHOST_TEST_POSTGRES_URL"

// ServerURL returns the test server's URL. It skips the test when the
// variable is unset and fails it when the server does not answer: a CI run
// that set the variable must not pass by skipping.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		t.Skip(EnvURL + " is not set; skipping the PostgreSQL backend")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("%s is set but the server cannot be reached: %v", EnvURL, err)
	}
	conn.Close(ctx)
	return u
}

// Schema creates a schema for t alone, dropped when t ends, and returns
// base with its search_path set to it, so parallel tests and reruns never
// see each other's tables.
func Schema(t testing.TB, base string) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	name := "alterhost_test_" + hex.EncodeToString(b[:])
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA " + name + " CASCADE"); err != nil {
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

// URL is ServerURL then Schema: a database URL for t alone.
func URL(t testing.TB) string {
	t.Helper()
	return Schema(t, ServerURL(t))
}
