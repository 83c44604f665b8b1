package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

const grantColumns = `id, subject, provider, account_id, scopes, key_id, secret,
	expires_at, status, created_at, updated_at, refreshed_at`

// upsertGrant is PutGrant, and UpdateGrant's write: the row of the same
// subject and provider takes every column of the new grant, ID included.
const upsertGrant = `INSERT INTO grants (` + grantColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (subject, provider) DO UPDATE SET
		id = excluded.id, account_id = excluded.account_id,
		scopes = excluded.scopes, key_id = excluded.key_id,
		secret = excluded.secret, expires_at = excluded.expires_at,
		status = excluded.status, created_at = excluded.created_at,
		updated_at = excluded.updated_at, refreshed_at = excluded.refreshed_at`

const selectGrant = `SELECT ` + grantColumns + ` FROM grants WHERE subject = ? AND provider = ?`

func grantArgs(g store.Grant) []any {
	return []any{g.ID, g.Subject, g.Provider, g.AccountID, scopesText(g.Scopes),
		g.KeyID, blob(g.Secret), micros(g.ExpiresAt), string(g.Status),
		micros(g.CreatedAt), micros(g.UpdatedAt), micros(g.RefreshedAt)}
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanGrant(row scanner) (store.Grant, error) {
	var g store.Grant
	var scopes, status string
	var expires, created, updated, refreshed sql.NullInt64
	err := row.Scan(&g.ID, &g.Subject, &g.Provider, &g.AccountID, &scopes, &g.KeyID,
		&g.Secret, &expires, &status, &created, &updated, &refreshed)
	if err != nil {
		return store.Grant{}, notFound(err)
	}
	if g.Scopes, err = parseScopes(scopes); err != nil {
		return store.Grant{}, err
	}
	g.Status = store.GrantStatus(status)
	g.ExpiresAt, g.CreatedAt = fromMicros(expires), fromMicros(created)
	g.UpdatedAt, g.RefreshedAt = fromMicros(updated), fromMicros(refreshed)
	return g, nil
}

// GetGrant returns the grant of subject at provider.
func (s *Store) GetGrant(ctx context.Context, subject, provider string) (store.Grant, error) {
	g, err := scanGrant(s.r.QueryRowContext(ctx, selectGrant, subject, provider))
	if err != nil {
		return store.Grant{}, fmt.Errorf("sqlite: get grant: %w", err)
	}
	return g, nil
}

// ListGrants returns subject's grants, or everyone's if subject is "",
// ordered by subject then provider.
func (s *Store) ListGrants(ctx context.Context, subject string) ([]store.Grant, error) {
	q, args := `SELECT `+grantColumns+` FROM grants ORDER BY subject, provider`, []any(nil)
	if subject != "" {
		q, args = `SELECT `+grantColumns+` FROM grants WHERE subject = ? ORDER BY provider`, []any{subject}
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list grants: %w", err)
	}
	defer rows.Close()
	var gs []store.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list grants: %w", err)
		}
		gs = append(gs, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list grants: %w", err)
	}
	return gs, nil
}

// PutGrant stores g, replacing any grant of the same subject and provider.
func (s *Store) PutGrant(ctx context.Context, g store.Grant) error {
	if _, err := s.w.ExecContext(ctx, upsertGrant, grantArgs(g)...); err != nil {
		return fmt.Errorf("sqlite: put grant: %w", err)
	}
	return nil
}

// UpdateGrant runs fn on the grant of subject at provider inside a write
// transaction, so that every other writer, in this process or another,
// waits until it is done. fn must not call the Store's write methods: they
// would wait for the lock fn holds.
func (s *Store) UpdateGrant(ctx context.Context, subject, provider string,
	fn func(g store.Grant) (updated store.Grant, write bool, err error)) (store.Grant, error) {
	var out store.Grant
	var fnErr error
	err := s.tx(ctx, func(c *sql.Conn) error {
		g, err := scanGrant(c.QueryRowContext(ctx, selectGrant, subject, provider))
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
			return nil
		}
		if updated.Subject != subject || updated.Provider != provider {
			return errors.New("fn changed the grant's subject or provider")
		}
		// fn may have refreshed the token upstream: the write must not be
		// lost to a cancellation now.
		out, err = scanGrant(c.QueryRowContext(context.WithoutCancel(ctx),
			upsertGrant+` RETURNING `+grantColumns, grantArgs(updated)...))
		return err
	})
	if fnErr != nil {
		return out, fnErr // nothing was written: out is the stored grant
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("sqlite: update grant: %w", err)
	}
	return out, nil
}

// DeleteGrant removes the grant of subject at provider.
func (s *Store) DeleteGrant(ctx context.Context, subject, provider string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM grants WHERE subject = ? AND provider = ?`, subject, provider)
	if err != nil {
		return fmt.Errorf("sqlite: delete grant: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: delete grant: %w", err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: delete grant: %w", store.ErrNotFound)
	}
	return nil
}

// micros is t as Unix microseconds, or NULL for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// blob keeps an empty byte slice from binding as NULL.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func scopesText(scopes []string) string {
	if len(scopes) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(scopes) // cannot fail for strings
	return string(b)
}

func parseScopes(text string) ([]string, error) {
	var scopes []string
	if err := json.Unmarshal([]byte(text), &scopes); err != nil {
		return nil, fmt.Errorf("scopes: %w", err)
	}
	if len(scopes) == 0 {
		return nil, nil
	}
	return scopes, nil
}
