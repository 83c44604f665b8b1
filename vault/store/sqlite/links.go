package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

// PutLink stores a single-use Connect link.
func (s *Store) PutLink(ctx context.Context, l store.Link) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO links
		(token_hash, subject, provider, scopes, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		blob(l.TokenHash), l.Subject, l.Provider, scopesText(l.Scopes),
		micros(l.CreatedAt), micros(l.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlite: put link: %w", err)
	}
	return nil
}

// TakeLink deletes and returns the link with tokenHash if it is live at
// now (now before ExpiresAt). One DELETE ... RETURNING does both, so two
// takers cannot both get it.
func (s *Store) TakeLink(ctx context.Context, tokenHash []byte, now time.Time) (store.Link, error) {
	var l store.Link
	var scopes string
	var created, expires sql.NullInt64
	err := s.w.QueryRowContext(ctx, `DELETE FROM links WHERE token_hash = ? AND expires_at > ?
		RETURNING token_hash, subject, provider, scopes, created_at, expires_at`,
		blob(tokenHash), now.UnixMicro()).
		Scan(&l.TokenHash, &l.Subject, &l.Provider, &scopes, &created, &expires)
	if err == nil {
		l.Scopes, err = parseScopes(scopes)
	}
	if err != nil {
		return store.Link{}, fmt.Errorf("sqlite: take link: %w", notFound(err))
	}
	l.CreatedAt, l.ExpiresAt = fromMicros(created), fromMicros(expires)
	return l, nil
}

// PutConnectState stores a flow in progress.
func (s *Store) PutConnectState(ctx context.Context, st store.ConnectState) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO connect_states
		(state_hash, browser_hash, subject, provider, scopes, verifier, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		blob(st.StateHash), blob(st.BrowserHash), st.Subject, st.Provider,
		scopesText(st.Scopes), st.Verifier, micros(st.CreatedAt), micros(st.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlite: put connect state: %w", err)
	}
	return nil
}

// TakeConnectState deletes and returns the state with stateHash if it is
// live at now, in one statement, like TakeLink.
func (s *Store) TakeConnectState(ctx context.Context, stateHash []byte, now time.Time) (store.ConnectState, error) {
	var st store.ConnectState
	var scopes string
	var created, expires sql.NullInt64
	err := s.w.QueryRowContext(ctx, `DELETE FROM connect_states WHERE state_hash = ? AND expires_at > ?
		RETURNING state_hash, browser_hash, subject, provider, scopes, verifier, created_at, expires_at`,
		blob(stateHash), now.UnixMicro()).
		Scan(&st.StateHash, &st.BrowserHash, &st.Subject, &st.Provider, &scopes, &st.Verifier, &created, &expires)
	if err == nil {
		st.Scopes, err = parseScopes(scopes)
	}
	if err != nil {
		return store.ConnectState{}, fmt.Errorf("sqlite: take connect state: %w", notFound(err))
	}
	st.CreatedAt, st.ExpiresAt = fromMicros(created), fromMicros(expires)
	return st, nil
}

// DeleteExpired removes, in one transaction, what is no longer live at
// now: links, states, authorization codes, sessions and tokens (revoked
// or not) with expires_at <= now, and clients whose cached metadata
// expired; a registered client's expires_at is NULL, which no comparison
// matches.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) error {
	err := s.tx(ctx, func(c *sql.Conn) error {
		for _, table := range []string{"links", "connect_states", "auth_codes", "sessions", "tokens", "clients"} {
			if _, err := c.ExecContext(ctx, `DELETE FROM `+table+` WHERE expires_at <= ?`, now.UnixMicro()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete expired: %w", err)
	}
	return nil
}
