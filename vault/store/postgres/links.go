package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

// PutLink stores a single-use Connect link.
func (s *Store) PutLink(ctx context.Context, l store.Link) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO links
		(token_hash, subject, provider, scopes, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		blob(l.TokenHash), l.Subject, l.Provider, scopes(l.Scopes),
		timestamp(l.CreatedAt), timestamp(l.ExpiresAt))
	if err != nil {
		return fmt.Errorf("postgres: put link: %w", err)
	}
	return nil
}

// TakeLink deletes and returns the link with tokenHash if it is live at
// now (now before ExpiresAt). One DELETE ... RETURNING does both: a second
// taker waits for the first one's row lock, then finds the row gone.
func (s *Store) TakeLink(ctx context.Context, tokenHash []byte, now time.Time) (store.Link, error) {
	var l store.Link
	err := s.pool.QueryRow(ctx, `DELETE FROM links WHERE token_hash = $1 AND expires_at > $2
		RETURNING token_hash, subject, provider, scopes, created_at, expires_at`,
		blob(tokenHash), now).
		Scan(&l.TokenHash, &l.Subject, &l.Provider, &l.Scopes, &l.CreatedAt, &l.ExpiresAt)
	if err != nil {
		return store.Link{}, fmt.Errorf("postgres: take link: %w", notFound(err))
	}
	l.Scopes = nilIfEmpty(l.Scopes)
	l.CreatedAt, l.ExpiresAt = l.CreatedAt.UTC(), l.ExpiresAt.UTC()
	return l, nil
}

// PutConnectState stores a flow in progress.
func (s *Store) PutConnectState(ctx context.Context, st store.ConnectState) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO connect_states
		(state_hash, browser_hash, subject, provider, scopes, verifier, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		blob(st.StateHash), blob(st.BrowserHash), st.Subject, st.Provider,
		scopes(st.Scopes), st.Verifier, timestamp(st.CreatedAt), timestamp(st.ExpiresAt))
	if err != nil {
		return fmt.Errorf("postgres: put connect state: %w", err)
	}
	return nil
}

// TakeConnectState deletes and returns the state with stateHash if it is
// live at now, in one statement, like TakeLink.
func (s *Store) TakeConnectState(ctx context.Context, stateHash []byte, now time.Time) (store.ConnectState, error) {
	var st store.ConnectState
	err := s.pool.QueryRow(ctx, `DELETE FROM connect_states WHERE state_hash = $1 AND expires_at > $2
		RETURNING state_hash, browser_hash, subject, provider, scopes, verifier, created_at, expires_at`,
		blob(stateHash), now).
		Scan(&st.StateHash, &st.BrowserHash, &st.Subject, &st.Provider, &st.Scopes,
			&st.Verifier, &st.CreatedAt, &st.ExpiresAt)
	if err != nil {
		return store.ConnectState{}, fmt.Errorf("postgres: take connect state: %w", notFound(err))
	}
	st.Scopes = nilIfEmpty(st.Scopes)
	st.CreatedAt, st.ExpiresAt = st.CreatedAt.UTC(), st.ExpiresAt.UTC()
	return st, nil
}

// DeleteExpired removes, in one statement, what is no longer live at now:
// links, states, authorization codes, sessions and tokens (revoked or
// not) with expires_at <= now, and clients whose cached metadata expired;
// a registered client's expires_at is NULL, which no comparison matches.
//
// Codes and tokens locked by a redemption, rotation or revocation are
// skipped, left for the next call: those transactions lock several rows,
// and a DELETE waiting on one of them while holding another could
// deadlock with them.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) error {
	_, err := s.pool.Exec(ctx, `WITH
		links AS (DELETE FROM links WHERE expires_at <= $1),
		states AS (DELETE FROM connect_states WHERE expires_at <= $1),
		codes AS (DELETE FROM auth_codes WHERE code_hash IN (SELECT code_hash
			FROM auth_codes WHERE expires_at <= $1 FOR UPDATE SKIP LOCKED)),
		tokens AS (DELETE FROM tokens WHERE hash IN (SELECT hash
			FROM tokens WHERE expires_at <= $1 FOR UPDATE SKIP LOCKED)),
		sessions AS (DELETE FROM sessions WHERE expires_at <= $1)
		DELETE FROM clients WHERE expires_at <= $1`, now)
	if err != nil {
		return fmt.Errorf("postgres: delete expired: %w", err)
	}
	return nil
}
