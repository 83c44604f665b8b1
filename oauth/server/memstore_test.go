package server

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/sqlite"
)

// testStore returns the SQLite store in a temporary directory once it
// keeps the authorization server's rows, and until then memStore, an
// in-memory stand-in that follows store.AuthStore's documented contract.
func testStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "alterhost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, ok := any(st).(authStore); ok {
		return st
	}
	return newMemStore()
}

// memStore implements what the server uses of store.Store in memory. Its
// embedded nil Store panics on anything else, which would be a bug here.
type memStore struct {
	store.Store
	mu       sync.Mutex
	links    map[string]store.Link
	clients  map[string]store.Client
	codes    map[string]store.AuthCode
	tokens   map[string]store.Token
	sessions map[string]store.Session
}

func newMemStore() *memStore {
	return &memStore{links: map[string]store.Link{}, clients: map[string]store.Client{},
		codes: map[string]store.AuthCode{}, tokens: map[string]store.Token{}, sessions: map[string]store.Session{}}
}

func (m *memStore) Close() error { return nil }

func (m *memStore) PutLink(_ context.Context, l store.Link) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.links[string(l.TokenHash)] = l
	return nil
}

func (m *memStore) TakeLink(_ context.Context, h []byte, now time.Time) (store.Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[string(h)]
	if !ok || !now.Before(l.ExpiresAt) {
		return store.Link{}, store.ErrNotFound
	}
	delete(m.links, string(h))
	return l, nil
}

func (m *memStore) PutClient(_ context.Context, c store.Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients[c.ID] = c
	return nil
}

func (m *memStore) GetClient(_ context.Context, id string) (store.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}

func (m *memStore) PutAuthCode(_ context.Context, c store.AuthCode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.codes[string(c.CodeHash)] = c
	return nil
}

func (m *memStore) RedeemAuthCode(_ context.Context, h []byte, family string, now time.Time) (store.AuthCode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[string(h)]
	if !ok || !now.Before(c.ExpiresAt) {
		return store.AuthCode{}, store.ErrNotFound
	}
	if !c.UsedAt.IsZero() {
		m.revokeLocked(c.FamilyID, now)
		return c, store.ErrReused
	}
	c.UsedAt, c.FamilyID = now, family
	m.codes[string(h)] = c
	return c, nil
}

func (m *memStore) PutTokens(_ context.Context, ts ...store.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range ts {
		m.tokens[string(t.Hash)] = t
	}
	return nil
}

func (m *memStore) GetToken(_ context.Context, h []byte, now time.Time) (store.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[string(h)]
	if !ok || !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) {
		return store.Token{}, store.ErrNotFound
	}
	return t, nil
}

func (m *memStore) RotateRefresh(_ context.Context, h []byte, now time.Time, grace time.Duration, successors []store.Token) (store.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[string(h)]
	if !ok || t.Kind != store.RefreshToken || !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) {
		return store.Token{}, store.ErrNotFound
	}
	if !t.RotatedAt.IsZero() && now.Sub(t.RotatedAt) >= grace {
		m.revokeLocked(t.FamilyID, now)
		return t, store.ErrReused
	}
	for _, s := range successors {
		if s.FamilyID != t.FamilyID {
			panic("successor in another family")
		}
	}
	if t.RotatedAt.IsZero() {
		t.RotatedAt = now
		m.tokens[string(h)] = t
	}
	for _, s := range successors {
		m.tokens[string(s.Hash)] = s
	}
	return t, nil
}

func (m *memStore) RevokeFamily(_ context.Context, family string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revokeLocked(family, now)
	return nil
}

func (m *memStore) revokeLocked(family string, now time.Time) {
	if family == "" {
		return
	}
	for k, t := range m.tokens {
		if t.FamilyID == family && t.RevokedAt.IsZero() {
			t.RevokedAt = now
			m.tokens[k] = t
		}
	}
}

func (m *memStore) PutSession(_ context.Context, s store.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[string(s.Hash)] = s
	return nil
}

func (m *memStore) GetSession(_ context.Context, h []byte, now time.Time) (store.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(h)]
	if !ok || !now.Before(s.ExpiresAt) {
		return store.Session{}, store.ErrNotFound
	}
	return s, nil
}

func (m *memStore) DeleteSession(_ context.Context, h []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, string(h))
	return nil
}
