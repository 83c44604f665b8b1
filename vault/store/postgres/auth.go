package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alterhost/alterhost/vault/store"
)

// This file is the store.AuthStore half: clients, authorization codes,
// token families and browser sessions.
//
// Redeeming a code (with storing the tokens it issues) and rotating a
// refresh token each read their row with SELECT ... FOR UPDATE, so a
// concurrent redeemer or rotator waits for the first to commit and then
// reads what it wrote. Every write that revokes or extends a token family
// (rotation, revocation) first takes the family's advisory lock
// (lockFamily), so that they happen one after the other: without it, a
// revocation's UPDATE, under READ COMMITTED, would not see a successor
// that a rotation running alongside inserts, and that successor would
// escape; and two reuses in one family could deadlock on each other's row
// locks.

// familyLock is the first key of the family advisory locks, in the
// two-key space, apart from migrationLock's ("altf" in ASCII).
const familyLock int32 = 0x616c7466

// lockFamily takes family's advisory lock until tx ends.
func lockFamily(ctx context.Context, tx pgx.Tx, familyID string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, familyLock, familyID)
	return err
}

// PutClient stores c, replacing a client with the same ID.
func (s *Store) PutClient(ctx context.Context, c store.Client) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO clients (id, secret_hash, metadata, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET
			secret_hash = excluded.secret_hash, metadata = excluded.metadata,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		c.ID, c.SecretHash, blob(c.Metadata), timestamp(c.CreatedAt), timestamp(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("postgres: put client: %w", err)
	}
	return nil
}

// GetClient returns the client with id, whether or not its cached
// metadata has expired.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	var c store.Client
	var expires *time.Time
	err := s.pool.QueryRow(ctx, `SELECT id, secret_hash, metadata, created_at, expires_at
		FROM clients WHERE id = $1`, id).
		Scan(&c.ID, &c.SecretHash, &c.Metadata, &c.CreatedAt, &expires)
	if err != nil {
		return store.Client{}, fmt.Errorf("postgres: get client: %w", notFound(err))
	}
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), utc(expires)
	return c, nil
}

const codeColumns = `code_hash, client_id, subject, redirect_uri, code_challenge, resource,
	scopes, created_at, expires_at, used_at, family_id`

const selectCode = `SELECT ` + codeColumns + ` FROM auth_codes WHERE code_hash = $1`

func scanCode(row pgx.Row) (store.AuthCode, error) {
	var c store.AuthCode
	var used *time.Time
	err := row.Scan(&c.CodeHash, &c.ClientID, &c.Subject, &c.RedirectURI, &c.CodeChallenge,
		&c.Resource, &c.Scopes, &c.CreatedAt, &c.ExpiresAt, &used, &c.FamilyID)
	if err != nil {
		return store.AuthCode{}, notFound(err)
	}
	c.Scopes = nilIfEmpty(c.Scopes)
	c.CreatedAt, c.ExpiresAt, c.UsedAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC(), utc(used)
	return c, nil
}

// PutAuthCode stores a new code; a code with the same hash is an error.
func (s *Store) PutAuthCode(ctx context.Context, c store.AuthCode) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_codes (`+codeColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		blob(c.CodeHash), c.ClientID, c.Subject, c.RedirectURI, c.CodeChallenge, c.Resource,
		scopes(c.Scopes), timestamp(c.CreatedAt), timestamp(c.ExpiresAt), timestamp(c.UsedAt), c.FamilyID)
	if err != nil {
		return fmt.Errorf("postgres: put code: %w", err)
	}
	return nil
}

// RedeemAuthCode redeems the code with codeHash and stores the tokens
// mint issues in one transaction, under the code's row lock, if the code
// is unexpired at now and unused. If mint fails, the code is marked used
// all the same and mint's error returned as is. Presented again, the code
// revokes the family it started and comes back with store.ErrReused; the
// revocation is committed although an error is returned.
//
// The new family takes no advisory lock: its tokens are unknown to anyone
// until this transaction commits, and a replay of the code, the only other
// way to reach the family, waits on the code's row lock until then.
func (s *Store) RedeemAuthCode(ctx context.Context, codeHash []byte, familyID string, now time.Time,
	mint func(store.AuthCode) ([]store.Token, error)) (store.AuthCode, error) {
	if familyID == "" {
		return store.AuthCode{}, errors.New("postgres: redeem code: empty family id")
	}
	if mint == nil {
		return store.AuthCode{}, errors.New("postgres: redeem code: no mint function")
	}
	var code store.AuthCode
	var mintErr error
	reused := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		code, err = scanCode(tx.QueryRow(ctx, selectCode+` FOR UPDATE`, blob(codeHash)))
		switch {
		case err != nil:
			return err
		case !code.ExpiresAt.After(now):
			return store.ErrNotFound
		case !code.UsedAt.IsZero():
			reused = true
			return revokeFamily(ctx, tx, code.FamilyID, now)
		}
		code, err = scanCode(tx.QueryRow(ctx, `UPDATE auth_codes SET used_at = $2, family_id = $3
			WHERE code_hash = $1 RETURNING `+codeColumns, blob(codeHash), now, familyID))
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
		return insertTokens(ctx, tx, ts)
	})
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("postgres: redeem code: %w", err)
	}
	if mintErr != nil {
		return code, mintErr
	}
	if reused {
		return code, fmt.Errorf("postgres: redeem code: %w", store.ErrReused)
	}
	return code, nil
}

const tokenColumns = `hash, kind, family_id, client_id, subject, resource, scopes,
	created_at, expires_at, rotated_at, revoked_at`

const selectToken = `SELECT ` + tokenColumns + ` FROM tokens WHERE hash = $1`

func scanToken(row pgx.Row) (store.Token, error) {
	var t store.Token
	var kind string
	var rotated, revoked *time.Time
	err := row.Scan(&t.Hash, &kind, &t.FamilyID, &t.ClientID, &t.Subject, &t.Resource,
		&t.Scopes, &t.CreatedAt, &t.ExpiresAt, &rotated, &revoked)
	if err != nil {
		return store.Token{}, notFound(err)
	}
	t.Kind = store.TokenKind(kind)
	t.Scopes = nilIfEmpty(t.Scopes)
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	t.RotatedAt, t.RevokedAt = utc(rotated), utc(revoked)
	return t, nil
}

// insertTokens stores ts in tx, in one batch.
func insertTokens(ctx context.Context, tx pgx.Tx, ts []store.Token) error {
	if len(ts) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, t := range ts {
		b.Queue(`INSERT INTO tokens (`+tokenColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			blob(t.Hash), string(t.Kind), t.FamilyID, t.ClientID, t.Subject, t.Resource,
			scopes(t.Scopes), timestamp(t.CreatedAt), timestamp(t.ExpiresAt),
			timestamp(t.RotatedAt), timestamp(t.RevokedAt))
	}
	return tx.SendBatch(ctx, &b).Close()
}

// PutTokens stores new tokens in one transaction: all of them, or, if one
// fails (a hash already stored, say), none.
func (s *Store) PutTokens(ctx context.Context, ts ...store.Token) error {
	if len(ts) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return insertTokens(ctx, tx, ts) })
	if err != nil {
		return fmt.Errorf("postgres: put tokens: %w", err)
	}
	return nil
}

// GetToken returns the token with hash if it is unrevoked and unexpired at
// now.
func (s *Store) GetToken(ctx context.Context, hash []byte, now time.Time) (store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, selectToken+` AND revoked_at IS NULL AND expires_at > $2`,
		blob(hash), now))
	if err != nil {
		return store.Token{}, fmt.Errorf("postgres: get token: %w", err)
	}
	return t, nil
}

// RotateRefresh exchanges the refresh token with hash for successors in
// one transaction, under its family's lock and its own row lock. It
// returns the old token as stored afterwards: RotatedAt is now after a
// first rotation, and stays the time of the first one on a retry within
// grace. Past grace, the family is revoked, committed, and the old token
// returned with store.ErrReused.
func (s *Store) RotateRefresh(ctx context.Context, hash []byte, now time.Time, grace time.Duration,
	successors []store.Token) (store.Token, error) {
	var old store.Token
	reused := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The family lock first, then the row: the order revokeFamily
		// takes them in. A token's family never changes.
		tag, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($2, hashtext(family_id))
			FROM tokens WHERE hash = $1`, blob(hash), familyLock)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		old, err = scanToken(tx.QueryRow(ctx, selectToken+` FOR UPDATE`, blob(hash)))
		if err != nil {
			return err // ErrNotFound if DeleteExpired took it meanwhile
		}
		if old.Kind != store.RefreshToken || !old.RevokedAt.IsZero() || !old.ExpiresAt.After(now) {
			return store.ErrNotFound
		}
		if err := store.CheckFamily(old.FamilyID, successors); err != nil {
			return err
		}
		switch {
		case old.RotatedAt.IsZero():
			old, err = scanToken(tx.QueryRow(ctx, `UPDATE tokens SET rotated_at = $2
				WHERE hash = $1 RETURNING `+tokenColumns, blob(hash), now))
			if err != nil {
				return err
			}
		case now.Sub(old.RotatedAt) < grace:
			// A retry after a lost response: successors again.
		default:
			reused = true
			old.RevokedAt = now.Truncate(time.Microsecond).UTC()
			return revokeFamily(ctx, tx, old.FamilyID, now)
		}
		return insertTokens(ctx, tx, successors)
	})
	if err != nil {
		return store.Token{}, fmt.Errorf("postgres: rotate refresh token: %w", err)
	}
	if reused {
		return old, fmt.Errorf("postgres: rotate refresh token: %w", store.ErrReused)
	}
	return old, nil
}

// revokeFamily sets revoked_at on the tokens of family not yet revoked,
// under the family's lock.
func revokeFamily(ctx context.Context, tx pgx.Tx, familyID string, now time.Time) error {
	if err := lockFamily(ctx, tx, familyID); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE tokens SET revoked_at = $2
		WHERE family_id = $1 AND revoked_at IS NULL`, familyID, now)
	return err
}

// RevokeFamily revokes every token of family at now; tokens revoked
// earlier keep their time. An unknown family is not an error.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return revokeFamily(ctx, tx, familyID, now) })
	if err != nil {
		return fmt.Errorf("postgres: revoke family: %w", err)
	}
	return nil
}

// PutSession stores a new browser session.
func (s *Store) PutSession(ctx context.Context, se store.Session) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sessions (hash, subject, name, csrf, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		blob(se.Hash), se.Subject, se.Name, se.CSRF, timestamp(se.CreatedAt), timestamp(se.ExpiresAt))
	if err != nil {
		return fmt.Errorf("postgres: put session: %w", err)
	}
	return nil
}

// GetSession returns the session with hash if it is unexpired at now.
func (s *Store) GetSession(ctx context.Context, hash []byte, now time.Time) (store.Session, error) {
	var se store.Session
	err := s.pool.QueryRow(ctx, `SELECT hash, subject, name, csrf, created_at, expires_at
		FROM sessions WHERE hash = $1 AND expires_at > $2`, blob(hash), now).
		Scan(&se.Hash, &se.Subject, &se.Name, &se.CSRF, &se.CreatedAt, &se.ExpiresAt)
	if err != nil {
		return store.Session{}, fmt.Errorf("postgres: get session: %w", notFound(err))
	}
	se.CreatedAt, se.ExpiresAt = se.CreatedAt.UTC(), se.ExpiresAt.UTC()
	return se, nil
}

// DeleteSession ends a session; a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, blob(hash)); err != nil {
		return fmt.Errorf("postgres: delete session: %w", err)
	}
	return nil
}
