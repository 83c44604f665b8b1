package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alterhost/alterhost/vault/store"
)

// writeTimeout bounds UpdateGrant's write and commit, which run even after
// the caller's context ends.
const writeTimeout = 10 * time.Second

const grantColumns = `id, subject, provider, account_id, scopes, key_id, secret,
	expires_at, status, created_at, updated_at, refreshed_at`

// upsertGrant is PutGrant, and UpdateGrant's write: the row of the same
// subject and provider takes every column of the new grant, ID included.
const upsertGrant = `INSERT INTO grants (` + grantColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
	ON CONFLICT (subject, provider) DO UPDATE SET
		id = excluded.id, account_id = excluded.account_id,
		scopes = excluded.scopes, key_id = excluded.key_id,
		secret = excluded.secret, expires_at = excluded.expires_at,
		status = excluded.status, created_at = excluded.created_at,
		updated_at = excluded.updated_at, refreshed_at = excluded.refreshed_at`

const selectGrant = `SELECT ` + grantColumns + ` FROM grants WHERE subject = $1 AND provider = $2`

func grantArgs(g store.Grant) []any {
	return []any{g.ID, g.Subject, g.Provider, g.AccountID, scopes(g.Scopes),
		g.KeyID, blob(g.Secret), timestamp(g.ExpiresAt), string(g.Status),
		timestamp(g.CreatedAt), timestamp(g.UpdatedAt), timestamp(g.RefreshedAt)}
}

func scanGrant(row pgx.Row) (store.Grant, error) {
	var g store.Grant
	var status string
	var expires, created, updated, refreshed *time.Time
	err := row.Scan(&g.ID, &g.Subject, &g.Provider, &g.AccountID, &g.Scopes, &g.KeyID,
		&g.Secret, &expires, &status, &created, &updated, &refreshed)
	if err != nil {
		return store.Grant{}, notFound(err)
	}
	g.Scopes = nilIfEmpty(g.Scopes)
	g.Status = store.GrantStatus(status)
	g.ExpiresAt, g.CreatedAt = utc(expires), utc(created)
	g.UpdatedAt, g.RefreshedAt = utc(updated), utc(refreshed)
	return g, nil
}

// GetGrant returns the grant of subject at provider.
func (s *Store) GetGrant(ctx context.Context, subject, provider string) (store.Grant, error) {
	g, err := scanGrant(s.pool.QueryRow(ctx, selectGrant, subject, provider))
	if err != nil {
		return store.Grant{}, fmt.Errorf("postgres: get grant: %w", err)
	}
	return g, nil
}

// ListGrants returns subject's grants, or everyone's if subject is "",
// ordered by subject then provider.
func (s *Store) ListGrants(ctx context.Context, subject string) ([]store.Grant, error) {
	q, args := `SELECT `+grantColumns+` FROM grants ORDER BY subject, provider`, []any(nil)
	if subject != "" {
		q, args = `SELECT `+grantColumns+` FROM grants WHERE subject = $1 ORDER BY provider`, []any{subject}
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list grants: %w", err)
	}
	gs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Grant, error) { return scanGrant(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list grants: %w", err)
	}
	return gs, nil
}

// PutGrant stores g, replacing any grant of the same subject and provider.
func (s *Store) PutGrant(ctx context.Context, g store.Grant) error {
	if _, err := s.pool.Exec(ctx, upsertGrant, grantArgs(g)...); err != nil {
		return fmt.Errorf("postgres: put grant: %w", err)
	}
	return nil
}

// UpdateGrant runs fn on the grant of subject at provider in a transaction
// that holds the row with SELECT ... FOR UPDATE, so that every other
// UpdateGrant, PutGrant or DeleteGrant of that grant, in any process,
// waits until it is done. fn must not write that grant through the Store.
func (s *Store) UpdateGrant(ctx context.Context, subject, provider string,
	fn func(g store.Grant) (updated store.Grant, write bool, err error)) (store.Grant, error) {
	var out store.Grant
	var fnErr error
	err := func() error {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) // after Commit, a no-op
		g, err := scanGrant(tx.QueryRow(ctx, selectGrant+` FOR UPDATE`, subject, provider))
		if err != nil {
			return err
		}
		out = g // unless written below
		updated, write, err := fn(g)
		if err != nil {
			fnErr = err
			return err
		}
		if !write {
			return tx.Commit(ctx)
		}
		if updated.Subject != subject || updated.Provider != provider {
			return errors.New("fn changed the grant's subject or provider")
		}
		// fn may have refreshed the token upstream: the write must not be
		// lost to a cancellation now.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		defer cancel()
		out, err = scanGrant(tx.QueryRow(wctx, upsertGrant+` RETURNING `+grantColumns, grantArgs(updated)...))
		if err != nil {
			return err
		}
		return tx.Commit(wctx)
	}()
	if fnErr != nil {
		return out, fnErr // nothing was written: out is the stored grant
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("postgres: update grant: %w", err)
	}
	return out, nil
}

// DeleteGrant removes the grant of subject at provider.
func (s *Store) DeleteGrant(ctx context.Context, subject, provider string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM grants WHERE subject = $1 AND provider = $2`, subject, provider)
	if err != nil {
		return fmt.Errorf("postgres: delete grant: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete grant: %w", store.ErrNotFound)
	}
	return nil
}

// timestamp is t, or NULL for the zero time.
func timestamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// utc is *t in UTC, or the zero time for NULL.
func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// blob and scopes keep empty slices from binding as NULL.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func scopes(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
