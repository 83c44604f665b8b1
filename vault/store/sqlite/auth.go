package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

// This file is the store.AuthStore half: clients, authorization codes,
// token families and browser sessions. The single-use steps, redeeming a
// code (with storing the tokens it issues) and rotating a refresh token,
// run in one BEGIN IMMEDIATE
// transaction (see tx), which holds SQLite's write lock from the first
// read: a concurrent redeemer or rotator, in any process, starts only once
// the first has committed, and sees what it wrote.

// PutClient stores c, replacing a client with the same ID.
func (s *Store) PutClient(ctx context.Context, c store.Client) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO clients (id, secret_hash, metadata, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET
			secret_hash = excluded.secret_hash, metadata = excluded.metadata,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		c.ID, nullBlob(c.SecretHash), blob(c.Metadata), micros(c.CreatedAt), micros(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlite: put client: %w", err)
	}
	return nil
}

// GetClient returns the client with id, whether or not its cached
// metadata has expired.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	var c store.Client
	var secret sql.Null[[]byte]
	var created, expires sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT id, secret_hash, metadata, created_at, expires_at
		FROM clients WHERE id = ?`, id).
		Scan(&c.ID, &secret, &c.Metadata, &created, &expires)
	if err != nil {
		return store.Client{}, fmt.Errorf("sqlite: get client: %w", notFound(err))
	}
	if secret.Valid { // an empty hash stays apart from a public client's nil
		c.SecretHash = blob(secret.V)
	}
	c.CreatedAt, c.ExpiresAt = fromMicros(created), fromMicros(expires)
	return c, nil
}

const codeColumns = `code_hash, client_id, subject, redirect_uri, code_challenge, resource,
	scopes, created_at, expires_at, used_at, family_id`

func scanCode(row scanner) (store.AuthCode, error) {
	var c store.AuthCode
	var scopes string
	var created, expires, used sql.NullInt64
	err := row.Scan(&c.CodeHash, &c.ClientID, &c.Subject, &c.RedirectURI, &c.CodeChallenge,
		&c.Resource, &scopes, &created, &expires, &used, &c.FamilyID)
	if err != nil {
		return store.AuthCode{}, notFound(err)
	}
	if c.Scopes, err = parseScopes(scopes); err != nil {
		return store.AuthCode{}, err
	}
	c.CreatedAt, c.ExpiresAt, c.UsedAt = fromMicros(created), fromMicros(expires), fromMicros(used)
	return c, nil
}

// PutAuthCode stores a new code; a code with the same hash is an error.
func (s *Store) PutAuthCode(ctx context.Context, c store.AuthCode) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO auth_codes (`+codeColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		blob(c.CodeHash), c.ClientID, c.Subject, c.RedirectURI, c.CodeChallenge, c.Resource,
		scopesText(c.Scopes), micros(c.CreatedAt), micros(c.ExpiresAt), micros(c.UsedAt), c.FamilyID)
	if err != nil {
		return fmt.Errorf("sqlite: put code: %w", err)
	}
	return nil
}

// RedeemAuthCode redeems the code with codeHash and stores the tokens
// mint issues in one write transaction, if the code is unexpired at now
// and unused. If mint fails, the code is marked used all the same and
// mint's error returned as is. Presented again, the code revokes the
// family it started and comes back with store.ErrReused; the revocation
// is committed although an error is returned.
func (s *Store) RedeemAuthCode(ctx context.Context, codeHash []byte, familyID string, now time.Time,
	mint func(store.AuthCode) ([]store.Token, error)) (store.AuthCode, error) {
	if familyID == "" {
		return store.AuthCode{}, errors.New("sqlite: redeem code: empty family id")
	}
	if mint == nil {
		return store.AuthCode{}, errors.New("sqlite: redeem code: no mint function")
	}
	var code store.AuthCode
	var mintErr error
	reused := false
	err := s.tx(ctx, func(c *sql.Conn) error {
		var err error
		code, err = scanCode(c.QueryRowContext(ctx, `SELECT `+codeColumns+` FROM auth_codes
			WHERE code_hash = ?`, blob(codeHash)))
		switch {
		case err != nil:
			return err
		case !code.ExpiresAt.After(now):
			return store.ErrNotFound
		case !code.UsedAt.IsZero():
			reused = true
			return revokeFamily(ctx, c, code.FamilyID, now)
		}
		code, err = scanCode(c.QueryRowContext(ctx, `UPDATE auth_codes SET used_at = ?, family_id = ?
			WHERE code_hash = ? RETURNING `+codeColumns, now.UnixMicro(), familyID, blob(codeHash)))
		if err != nil {
			return err
		}
		ts, err := mint(code)
		if err != nil {
			mintErr = err // commit the code as used, without tokens
			return nil
		}
		if err := store.CheckFamily(familyID, ts); err != nil {
			return err
		}
		return insertTokens(ctx, c, ts)
	})
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("sqlite: redeem code: %w", err)
	}
	if mintErr != nil {
		return code, mintErr
	}
	if reused {
		return code, fmt.Errorf("sqlite: redeem code: %w", store.ErrReused)
	}
	return code, nil
}

const tokenColumns = `hash, kind, family_id, client_id, subject, resource, scopes,
	created_at, expires_at, rotated_at, revoked_at`

const selectToken = `SELECT ` + tokenColumns + ` FROM tokens WHERE hash = ?`

func scanToken(row scanner) (store.Token, error) {
	var t store.Token
	var kind, scopes string
	var created, expires, rotated, revoked sql.NullInt64
	err := row.Scan(&t.Hash, &kind, &t.FamilyID, &t.ClientID, &t.Subject, &t.Resource,
		&scopes, &created, &expires, &rotated, &revoked)
	if err != nil {
		return store.Token{}, notFound(err)
	}
	if t.Scopes, err = parseScopes(scopes); err != nil {
		return store.Token{}, err
	}
	t.Kind = store.TokenKind(kind)
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	t.RotatedAt, t.RevokedAt = fromMicros(rotated), fromMicros(revoked)
	return t, nil
}

// insertTokens stores ts on c, inside the caller's transaction.
func insertTokens(ctx context.Context, c *sql.Conn, ts []store.Token) error {
	if len(ts) == 0 {
		return nil
	}
	stmt, err := c.PrepareContext(ctx, `INSERT INTO tokens (`+tokenColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, t := range ts {
		if _, err := stmt.ExecContext(ctx, blob(t.Hash), string(t.Kind), t.FamilyID, t.ClientID,
			t.Subject, t.Resource, scopesText(t.Scopes), micros(t.CreatedAt), micros(t.ExpiresAt),
			micros(t.RotatedAt), micros(t.RevokedAt)); err != nil {
			return err
		}
	}
	return nil
}

// PutTokens stores new tokens in one transaction: all of them, or, if one
// fails (a hash already stored, say), none.
func (s *Store) PutTokens(ctx context.Context, ts ...store.Token) error {
	if len(ts) == 0 {
		return nil
	}
	if err := s.tx(ctx, func(c *sql.Conn) error { return insertTokens(ctx, c, ts) }); err != nil {
		return fmt.Errorf("sqlite: put tokens: %w", err)
	}
	return nil
}

// GetToken returns the token with hash if it is unrevoked and unexpired at
// now.
func (s *Store) GetToken(ctx context.Context, hash []byte, now time.Time) (store.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, selectToken+` AND revoked_at IS NULL AND expires_at > ?`,
		blob(hash), now.UnixMicro()))
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: get token: %w", err)
	}
	return t, nil
}

// RotateRefresh exchanges the refresh token with hash for successors in
// one write transaction. It returns the old token as stored afterwards:
// RotatedAt is now after a first rotation, and stays the time of the
// first one on a retry within grace. Past grace, the family is revoked,
// committed, and the old token returned with store.ErrReused.
func (s *Store) RotateRefresh(ctx context.Context, hash []byte, now time.Time, grace time.Duration,
	successors []store.Token) (store.Token, error) {
	var old store.Token
	reused := false
	err := s.tx(ctx, func(c *sql.Conn) error {
		var err error
		old, err = scanToken(c.QueryRowContext(ctx, selectToken, blob(hash)))
		if err != nil {
			return err
		}
		if old.Kind != store.RefreshToken || !old.RevokedAt.IsZero() || !old.ExpiresAt.After(now) {
			return store.ErrNotFound
		}
		if err := store.CheckFamily(old.FamilyID, successors); err != nil {
			return err
		}
		switch {
		case old.RotatedAt.IsZero():
			old, err = scanToken(c.QueryRowContext(ctx, `UPDATE tokens SET rotated_at = ?
				WHERE hash = ? RETURNING `+tokenColumns, now.UnixMicro(), blob(hash)))
			if err != nil {
				return err
			}
		case now.Sub(old.RotatedAt) < grace:
			// A retry after a lost response: successors again.
		default:
			reused = true
			old.RevokedAt = time.UnixMicro(now.UnixMicro()).UTC()
			return revokeFamily(ctx, c, old.FamilyID, now)
		}
		return insertTokens(ctx, c, successors)
	})
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: rotate refresh token: %w", err)
	}
	if reused {
		return old, fmt.Errorf("sqlite: rotate refresh token: %w", store.ErrReused)
	}
	return old, nil
}

// execer is a *sql.DB or a *sql.Conn.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// revokeFamily sets revoked_at on the tokens of family not yet revoked.
func revokeFamily(ctx context.Context, db execer, familyID string, now time.Time) error {
	_, err := db.ExecContext(ctx, `UPDATE tokens SET revoked_at = ?
		WHERE family_id = ? AND revoked_at IS NULL`, now.UnixMicro(), familyID)
	return err
}

// RevokeFamily revokes every token of family at now; tokens revoked
// earlier keep their time. An unknown family is not an error.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	if err := revokeFamily(ctx, s.w, familyID, now); err != nil {
		return fmt.Errorf("sqlite: revoke family: %w", err)
	}
	return nil
}

// PutSession stores a new browser session.
func (s *Store) PutSession(ctx context.Context, se store.Session) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO sessions (hash, subject, name, csrf, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		blob(se.Hash), se.Subject, se.Name, se.CSRF, micros(se.CreatedAt), micros(se.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlite: put session: %w", err)
	}
	return nil
}

// GetSession returns the session with hash if it is unexpired at now.
func (s *Store) GetSession(ctx context.Context, hash []byte, now time.Time) (store.Session, error) {
	var se store.Session
	var created, expires sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT hash, subject, name, csrf, created_at, expires_at
		FROM sessions WHERE hash = ? AND expires_at > ?`, blob(hash), now.UnixMicro()).
		Scan(&se.Hash, &se.Subject, &se.Name, &se.CSRF, &created, &expires)
	if err != nil {
		return store.Session{}, fmt.Errorf("sqlite: get session: %w", notFound(err))
	}
	se.CreatedAt, se.ExpiresAt = fromMicros(created), fromMicros(expires)
	return se, nil
}

// DeleteSession ends a session; a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE hash = ?`, blob(hash)); err != nil {
		return fmt.Errorf("sqlite: delete session: %w", err)
	}
	return nil
}

// nullBlob is b, or NULL for nil: unlike blob, it keeps nil and empty
// apart.
func nullBlob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}
