// Package store is the vault's persistence: one interface, implemented by
// an embedded SQLite backend (vault/store/sqlite) and a PostgreSQL backend
// (vault/store/postgres), both held to one conformance suite
// (vault/store/storetest).
//
// The store never sees a secret in the clear: grant tokens arrive sealed by
// the vault, and single-use link tokens and OAuth states arrive as hashes.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when the asked-for row does not exist, or, for
// single-use rows, has expired or was already taken.
var ErrNotFound = errors.New("not found")

// GrantStatus is the state of a grant.
type GrantStatus string

const (
	// GrantActive: the grant can be used.
	GrantActive GrantStatus = "active"
	// GrantBroken: the upstream refused its refresh token (invalid_grant);
	// the person must connect again.
	GrantBroken GrantStatus = "broken"
)

// Grant is one person's authorization at one upstream provider. There is at
// most one grant per (Subject, Provider).
type Grant struct {
	// ID is random and stable for the life of the grant; it is part of the
	// associated data of Secret, so a ciphertext cannot move between rows.
	ID        string
	Subject   string
	Provider  string
	AccountID string   // the upstream account, if the provider says
	Scopes    []string // granted scopes, as the provider reported them
	// KeyID names the vault key that sealed Secret.
	KeyID string
	// Secret is the sealed token bundle (access and refresh tokens).
	Secret []byte
	// ExpiresAt is when the access token expires; zero if it does not.
	ExpiresAt   time.Time
	Status      GrantStatus
	CreatedAt   time.Time
	UpdatedAt   time.Time
	RefreshedAt time.Time // zero until the first refresh
}

// Link is a single-use URL, stored by the hash of its token: a Connect
// URL, or, with Provider empty, a sign-in link for alterhost itself.
type Link struct {
	TokenHash []byte
	Subject   string
	Provider  string
	Scopes    []string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ConnectState is an authorization-code flow in progress, stored by the
// hash of its OAuth state parameter and bound to the browser that started
// it by the hash of a cookie.
type ConnectState struct {
	StateHash   []byte
	BrowserHash []byte
	Subject     string
	Provider    string
	Scopes      []string
	// Verifier is the PKCE code verifier; useless without the code, which
	// only the browser holds, and deleted when the flow ends.
	Verifier  string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// AuditRecord is one alter_request. It never holds query values, bodies or
// credentials.
type AuditRecord struct {
	ID          int64 // assigned by the store
	Time        time.Time
	Subject     string
	Agent       string
	ParentAgent string
	Plugin      string
	Tool        string
	Provider    string
	Method      string
	Host        string
	Path        string
	Status      int // upstream HTTP status; 0 if none
	Duration    time.Duration
	ErrorCode   string // an abi error code; "" on success
}

// AuditFilter selects audit records. Zero fields do not filter.
type AuditFilter struct {
	Subject  string
	Plugin   string
	Provider string
	Since    time.Time
	// Limit caps the rows returned, newest first; 0 means 100.
	Limit int
}

// GrantWatcher is implemented by stores that several processes share. The
// vault uses it to forget a cached grant as soon as any process changes it.
type GrantWatcher interface {
	// WatchGrants calls changed with the subject and provider of every
	// grant written or deleted, by any process, until ctx ends. When it may
	// have missed changes (its connection was lost and is back), it calls
	// changed("", ""): forget everything. It returns ctx's error, or an
	// error if it cannot watch at all.
	WatchGrants(ctx context.Context, changed func(subject, provider string)) error
}

// Store is the vault's storage. Implementations are safe for concurrent use
// by many goroutines and, for PostgreSQL, many processes.
type Store interface {
	// GetGrant returns the grant of subject at provider.
	GetGrant(ctx context.Context, subject, provider string) (Grant, error)
	// ListGrants returns subject's grants, or everyone's if subject is "",
	// ordered by subject then provider.
	ListGrants(ctx context.Context, subject string) ([]Grant, error)
	// PutGrant stores g, replacing any grant of the same subject and
	// provider (the replaced grant's ID is not kept).
	PutGrant(ctx context.Context, g Grant) error
	// UpdateGrant reads the grant of subject at provider while holding an
	// exclusive lock on it, across processes, and passes it to fn. If fn
	// returns write=true, the grant it returns replaces the stored one
	// before the lock is released. fn may make network calls; others who
	// want the same grant wait. UpdateGrant returns the stored grant as it
	// is when the lock is released.
	UpdateGrant(ctx context.Context, subject, provider string,
		fn func(g Grant) (updated Grant, write bool, err error)) (Grant, error)
	// DeleteGrant removes the grant of subject at provider.
	DeleteGrant(ctx context.Context, subject, provider string) error

	// PutLink stores a single-use Connect link.
	PutLink(ctx context.Context, l Link) error
	// TakeLink returns and deletes the link with tokenHash, in one step, if
	// it has not expired at now.
	TakeLink(ctx context.Context, tokenHash []byte, now time.Time) (Link, error)
	// PutConnectState stores a flow in progress.
	PutConnectState(ctx context.Context, s ConnectState) error
	// TakeConnectState returns and deletes the state with stateHash, in one
	// step, if it has not expired at now.
	TakeConnectState(ctx context.Context, stateHash []byte, now time.Time) (ConnectState, error)
	// DeleteExpired removes what expired before now (ExpiresAt at or
	// before now): links, states, authorization codes, sessions, tokens
	// (revoked or not: a revoked or rotated token is kept until it
	// expires, so that reuse detection keeps working until then), and
	// clients from a metadata document whose ExpiresAt is set and passed.
	DeleteExpired(ctx context.Context, now time.Time) error

	// AppendAudit stores records in one transaction.
	AppendAudit(ctx context.Context, records []AuditRecord) error
	// ListAudit returns matching records, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)

	// AuthStore holds alterhost's own authorization server's clients,
	// codes, tokens and sessions.
	AuthStore

	// Close releases the store's connections.
	Close() error
	// Ping checks that the database answers, for readiness checks.
	Ping(ctx context.Context) error
}
