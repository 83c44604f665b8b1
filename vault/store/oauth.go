package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file holds what alterhost's own authorization server stores: the
// MCP clients it knows, authorization codes, access and refresh tokens,
// and browser sessions of people signed in to it. Codes, tokens and
// session ids are stored only as hashes.

// ErrReused is returned when a single-use credential (an authorization
// code, a refresh token past its grace window) is presented again. The
// store has already revoked everything issued from it.
var ErrReused = errors.New("already used")

// Client is an MCP client registered with alterhost's authorization
// server, by dynamic registration (RFC 7591) or, with an HTTPS URL as ID,
// from a client ID metadata document.
type Client struct {
	ID string
	// SecretHash is the hash of a confidential client's secret; nil for a
	// public client, which PKCE alone protects.
	SecretHash []byte
	// Metadata is the client's validated registration metadata, as JSON.
	Metadata  []byte
	CreatedAt time.Time
	// ExpiresAt is when a cached metadata document must be fetched again;
	// zero for registered clients, which do not expire.
	ExpiresAt time.Time
}

// AuthCode is an authorization code, stored by hash, bound to everything
// the token request must repeat.
type AuthCode struct {
	CodeHash      []byte
	ClientID      string
	Subject       string
	RedirectURI   string
	CodeChallenge string // PKCE S256 challenge
	Resource      string // RFC 8707 resource, the audience of its tokens
	Scopes        []string
	CreatedAt     time.Time
	ExpiresAt     time.Time
	// UsedAt and FamilyID are set when the code is redeemed: the family of
	// tokens it started, revoked if the code is replayed.
	UsedAt   time.Time
	FamilyID string
}

// TokenKind tells access from refresh tokens.
type TokenKind string

const (
	// AccessToken is a bearer token presented to alterhost's MCP endpoint.
	AccessToken TokenKind = "access"
	// RefreshToken is exchanged, once, for new tokens (RotateRefresh).
	RefreshToken TokenKind = "refresh"
)

// Token is an access or refresh token, stored by hash. Tokens issued from
// one authorization code form a family: refreshing adds to it, and reusing
// an old refresh token revokes all of it.
type Token struct {
	Hash      []byte
	Kind      TokenKind
	FamilyID  string
	ClientID  string
	Subject   string
	Resource  string
	Scopes    []string
	CreatedAt time.Time
	ExpiresAt time.Time
	// RotatedAt is when a refresh token was exchanged for its successor.
	RotatedAt time.Time
	// RevokedAt is when the token was revoked; zero while valid.
	RevokedAt time.Time
}

// Session is a person signed in to alterhost in a browser, stored by the
// hash of its cookie.
type Session struct {
	Hash    []byte
	Subject string
	// Name is what the person is called, shown to them (an e-mail address
	// in OIDC mode); empty when the subject says it.
	Name string
	// CSRF is the token forms of this session must carry.
	CSRF      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// AuthStore is the authorization server's part of the Store.
type AuthStore interface {
	// PutClient stores c, replacing a client with the same ID entirely:
	// a metadata document fetched again replaces its cached metadata and
	// ExpiresAt, and a zero field of c clears the stored one (a nil
	// SecretHash makes the client public, a zero ExpiresAt makes it never
	// expire). It is an upsert, so concurrent puts of one ID do not fail;
	// the last one wins.
	PutClient(ctx context.Context, c Client) error
	// GetClient returns the client with id, even past its ExpiresAt.
	GetClient(ctx context.Context, id string) (Client, error)

	// PutAuthCode stores a new code.
	PutAuthCode(ctx context.Context, c AuthCode) error
	// RedeemAuthCode redeems the code with codeHash and issues its tokens,
	// in one transaction. If the code exists, is unexpired at now and
	// unused, mint is called with it as it will be stored (UsedAt now,
	// FamilyID familyID) and returns the tokens the redemption issues, all
	// of family familyID; the code is marked used and the tokens stored
	// together, and the code is returned. A concurrent redemption or
	// replay of the code waits for this one to finish, so a replay always
	// finds the tokens, and only one of concurrent redemptions mints.
	//
	// If mint returns an error, the code is still marked used by familyID,
	// with no tokens stored, and the code is returned with mint's error,
	// not wrapped. A code is single use (RFC 6749 §4.1.2, §10.5): a failed
	// redemption (wrong client, redirect URI or PKCE verifier) spends it,
	// so a verifier cannot be guessed against one code, and presenting it
	// again is a replay. If mint returns a token of another family, or
	// storing its tokens fails, nothing changes and an error is returned.
	//
	// A used code: mint is not called, its family is revoked and ErrReused
	// returned (with the code as stored, of the first redemption's family).
	// Missing or expired, used or not: ErrNotFound. familyID must not be
	// empty, nor mint nil. mint runs inside the store's transaction, holding
	// its locks: it must be quick and must not call the store.
	RedeemAuthCode(ctx context.Context, codeHash []byte, familyID string, now time.Time,
		mint func(code AuthCode) ([]Token, error)) (AuthCode, error)

	// PutTokens stores new tokens in one transaction: if one fails (its
	// hash is already stored, say), none is stored.
	PutTokens(ctx context.Context, ts ...Token) error
	// GetToken returns the token with hash if it is unrevoked and unexpired
	// at now; otherwise ErrNotFound.
	GetToken(ctx context.Context, hash []byte, now time.Time) (Token, error)
	// RotateRefresh exchanges the refresh token with hash for successors,
	// atomically: if it is valid at now and was never rotated, it is
	// marked rotated and successors stored; if it was rotated less than
	// grace ago, successors are stored too (a client retrying after a lost
	// response); if it was rotated earlier, its whole family is revoked
	// and ErrReused returned. Revoked, expired, missing or not a refresh
	// token: ErrNotFound. Successors must share its family; if one does
	// not, nothing changes and an error is returned. The old token is
	// returned, also with ErrReused.
	RotateRefresh(ctx context.Context, hash []byte, now time.Time, grace time.Duration, successors []Token) (Token, error)
	// RevokeFamily revokes every token of family at now; tokens revoked
	// earlier keep their time, and an unknown family is not an error.
	RevokeFamily(ctx context.Context, familyID string, now time.Time) error

	// PutSession stores a browser session.
	PutSession(ctx context.Context, s Session) error
	// GetSession returns the session with hash if unexpired at now.
	GetSession(ctx context.Context, hash []byte, now time.Time) (Session, error)
	// DeleteSession ends a session; a missing one is not an error.
	DeleteSession(ctx context.Context, hash []byte) error
}

// CheckFamily refuses tokens outside familyID: what a redemption mints, or
// what a rotation stores as successors, must join the family it extends.
// Backends call it before writing; it is shared so both refuse alike.
func CheckFamily(familyID string, ts []Token) error {
	for i, t := range ts {
		if t.FamilyID != familyID {
			return fmt.Errorf("token %d is of family %q, not %q", i, t.FamilyID, familyID)
		}
	}
	return nil
}
