package vault

import (
	"context"
	"errors"
	"time"

	"github.com/alterhost/alterhost/abi"
)

// Token is what an upstream authorization server issues.
type Token struct {
	AccessToken  string
	RefreshToken string
	// Expiry is when AccessToken expires; zero if the provider did not say.
	Expiry time.Time
	// Scopes are the scopes granted, when the provider reports them.
	Scopes []string
	// AccountID identifies the upstream account, when known.
	AccountID string
}

// ErrInvalidGrant is returned by Provider.Refresh when the upstream refuses
// the refresh token for good (OAuth error "invalid_grant"): the person must
// connect again.
var ErrInvalidGrant = errors.New("the provider refused the refresh token (invalid_grant)")

// Provider is what the vault needs of an upstream: where its credentials
// may be sent, and how to refresh them. The oauth package implements it for
// the built-in presets, configured providers and the sandbox.
type Provider interface {
	// Name is the provider id manifests use, e.g. "github".
	Name() string
	// APIHosts are the hosts the provider's credentials may be sent to.
	APIHosts() []abi.HostPattern
	// Refresh trades a refresh token for a new token. It returns an error
	// wrapping ErrInvalidGrant when the refresh token is no longer valid.
	// The returned token's RefreshToken is empty if the provider kept the
	// old one.
	Refresh(ctx context.Context, refreshToken string) (Token, error)
}

// Providers looks up providers by name.
type Providers interface {
	Provider(name string) (Provider, bool)
}
