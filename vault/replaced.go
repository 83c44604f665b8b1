package vault

import (
	"context"
	"strings"

	"github.com/alterhost/alterhost/vault/store"
)

// ReplacedRevoker is implemented by providers that can say whether
// revoking one token there ends that token alone. Only then is a grant
// replaced by a new consent revoked: at some providers (GitHub's "delete
// an app authorization", Google's revocation endpoint, Keycloak's offline
// tokens) revoking any token ends every token the person granted the
// client, and the new grant would end with the old one. Killing the new
// grant is worse than leaving the old one, which alterhost no longer
// holds, to expire.
type ReplacedRevoker interface {
	RevokeReplaced() bool
	// RevokeReplacedGrant revokes a replaced grant's tokens, where one
	// token ends alone (which may be another endpoint than RevokeGrant's).
	RevokeReplacedGrant(ctx context.Context, t Token) error
}

// canRevoke returns p as a Revoker if it can revoke upstream.
func canRevoke(p Provider) (Revoker, bool) {
	if c, ok := p.(interface{ CanRevoke() bool }); ok && !c.CanRevoke() {
		return nil, false // the provider has no revocation endpoint
	}
	r, ok := p.(Revoker)
	return r, ok
}

// revokeReplaced revokes, in the background, the tokens of old, a grant
// that a new consent (whose token is now) just replaced. It is best
// effort: failures are logged, never returned, and a revocation that
// cannot start at once (too many in flight) is skipped. Nothing is
// revoked when that could end the new grant too:
//   - the new grant kept the old refresh token or access token (the
//     provider renewed one authorization rather than issuing another);
//   - the provider ends the whole authorization on any revocation, unless
//     the two grants are known to be of different upstream accounts.
func (v *Vault) revokeReplaced(ctx context.Context, old store.Grant, now Token) {
	subject, provider := old.Subject, old.Provider
	p, ok := v.providers.Provider(provider)
	if !ok {
		return
	}
	r, ok := canRevoke(p)
	if !ok {
		return
	}
	s, err := v.open(old)
	if err != nil {
		v.logger.Warn("the replaced grant does not open; it is not revoked upstream", "subject", subject, "provider", provider, "error", err)
		return
	}
	if s.AccessToken == now.AccessToken || s.RefreshToken != "" && s.RefreshToken == now.RefreshToken {
		v.logger.Info("the replaced grant shares a token with the new one; nothing revoked upstream", "subject", subject, "provider", provider)
		return
	}
	otherAccount := old.AccountID != "" && now.AccountID != "" && old.AccountID != now.AccountID
	a, alone := p.(ReplacedRevoker)
	alone = alone && a.RevokeReplaced()
	if !otherAccount && !alone {
		v.logger.Info("the replaced grant is not revoked upstream: this provider is not known to revoke one token alone (revoke_replaced)",
			"subject", subject, "provider", provider)
		return
	}
	sem := v.revoking
	select {
	case sem <- struct{}{}:
	default:
		v.logger.Warn("too many upstream revocations in flight; the replaced grant is not revoked upstream",
			"subject", subject, "provider", provider)
		return
	}
	// Off the request path: the person's page does not wait for the
	// provider. The context keeps the request's values (its trace), not
	// its end.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.revokeTimeout)
	go func() {
		defer func() { <-sem }()
		defer cancel()
		revoke := r.RevokeGrant
		if alone {
			revoke = a.RevokeReplacedGrant
		}
		if err := revoke(rctx, Token{AccessToken: s.AccessToken, RefreshToken: s.RefreshToken}); err != nil {
			v.logger.Warn("upstream revocation of the replaced grant failed", "subject", subject, "provider", provider,
				"error", redact(err, s))
			return
		}
		v.logger.Info("replaced grant revoked upstream", "subject", subject, "provider", provider)
	}()
}

// WaitRevocations waits until the revocations of replaced grants that
// Save started have finished, or ctx ends. Call it before exiting, so
// they are not cut short. It holds every revocation slot meanwhile: one
// that would start then is skipped (and logged), so the wait cannot be
// prolonged by new ones.
func (v *Vault) WaitRevocations(ctx context.Context) error {
	sem := v.revoking
	held := 0
	defer func() {
		for range held {
			<-sem
		}
	}()
	for range cap(sem) {
		select {
		case sem <- struct{}{}:
			held++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// redact is err's text without the tokens of s, should a provider have
// repeated one in its answer.
func redact(err error, s secrets) string {
	text := err.Error()
	for _, tok := range []string{s.AccessToken, s.RefreshToken} {
		if tok != "" {
			text = strings.ReplaceAll(text, tok, "[token]")
		}
	}
	return text
}
