// Package vault keeps people's upstream grants: it stores them sealed,
// refreshes them before they expire, hands a credential to the outbound
// path for one request at a time, and records every request in the audit
// trail. The egress guard that sends those requests is vault/egress.
package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/singleflight"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store"
)

// Linker mints Connect URLs. The oauth package implements it; the vault
// only needs to hand a fresh one to a person who lacks a grant.
type Linker interface {
	// ConnectURL returns a new single-use URL through which subject grants
	// scopes at provider.
	ConnectURL(ctx context.Context, subject, provider string, scopes []string) (string, error)
}

// Revoker is implemented by providers that can revoke a grant upstream;
// the provider picks which of the tokens to send.
type Revoker interface {
	RevokeGrant(ctx context.Context, t Token) error
}

// Vault is the grant keeper. It is safe for concurrent use.
type Vault struct {
	store     store.Store
	keys      *seal.Keyring
	providers Providers
	// Linker mints Connect URLs for grant_not_found and
	// scope_reauth_required; set it before serving.
	Linker Linker
	// Observer, if set before serving, hears of lookups and refreshes.
	Observer Observer
	logger   *slog.Logger
	now      func() time.Time
	// refreshEarly is how long before expiry a token is refreshed.
	refreshEarly time.Duration
	flight       singleflight.Group

	// cache keeps recently read grants, still sealed, so a call does not
	// read the database each time. An entry lives at most cacheFor, and
	// never into its grant's refresh window; changes made here drop it at
	// once, and so do changes by other instances when the store announces
	// them (see Watch); otherwise they show within cacheFor.
	cacheFor time.Duration
	cacheMu  sync.Mutex
	cache    map[string]cachedGrant
	// gen counts forgets, so a read that raced a change is not cached.
	gen uint64

	// revoking holds a slot per revocation of a replaced grant in flight;
	// revocations beyond its capacity are skipped, not queued.
	revoking chan struct{}
	// revokeTimeout bounds one such revocation.
	revokeTimeout time.Duration
}

type cachedGrant struct {
	g     store.Grant
	until time.Time
}

// New returns a Vault over st, sealing with keys.
func New(st store.Store, keys *seal.Keyring, providers Providers, logger *slog.Logger) *Vault {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Vault{store: st, keys: keys, providers: providers, logger: logger,
		now: time.Now, refreshEarly: time.Minute, cacheFor: 30 * time.Second, cache: map[string]cachedGrant{},
		revoking: make(chan struct{}, maxRevoking), revokeTimeout: 15 * time.Second}
}

// maxRevoking bounds the revocations of replaced grants in flight at once.
const maxRevoking = 8

// secrets is the sealed part of a grant.
type secrets struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// associatedData binds a sealed value to its row: a ciphertext copied into
// another person's or provider's grant does not open.
func associatedData(g store.Grant) []byte {
	return []byte("alterhost/grant/v1\x00" + g.Subject + "\x00" + g.Provider + "\x00" + g.ID)
}

func (v *Vault) seal(g *store.Grant, s secrets) error {
	plain, err := json.Marshal(s)
	if err != nil {
		return err
	}
	g.KeyID, g.Secret, err = v.keys.Seal(plain, associatedData(*g))
	return err
}

func (v *Vault) open(g store.Grant) (secrets, error) {
	var s secrets
	plain, err := v.keys.Open(g.KeyID, g.Secret, associatedData(g))
	if err != nil {
		return s, fmt.Errorf("grant %s of %s at %s: %w", g.ID, g.Subject, g.Provider, err)
	}
	return s, json.Unmarshal(plain, &s)
}

func cacheKey(subject, provider string) string { return subject + "\x00" + provider }

// grant returns subject's grant at provider, from the cache when it can
// (cached reports that it did), or from the store when fresh is set. Only
// active grants are cached.
func (v *Vault) grant(ctx context.Context, subject, provider string, fresh bool) (g store.Grant, cached bool, err error) {
	key := cacheKey(subject, provider)
	now := v.now()
	v.cacheMu.Lock()
	c, ok := v.cache[key]
	gen := v.gen
	v.cacheMu.Unlock()
	if ok && !fresh && now.Before(c.until) {
		return c.g, true, nil
	}
	g, err = v.store.GetGrant(ctx, subject, provider)
	if err != nil || g.Status != store.GrantActive {
		v.forget(subject, provider)
		return g, false, err
	}
	until := now.Add(v.cacheFor)
	if !g.ExpiresAt.IsZero() && g.ExpiresAt.Add(-v.refreshEarly).Before(until) {
		until = g.ExpiresAt.Add(-v.refreshEarly)
	}
	if until.After(now) {
		v.cacheMu.Lock()
		// A change announced while this read was on its way may be newer
		// than what it read.
		if v.gen == gen {
			v.cache[key] = cachedGrant{g: g, until: until}
		}
		v.cacheMu.Unlock()
	}
	return g, false, nil
}

// forget drops a grant from the cache after it changed; subject and
// provider both empty drop every grant.
func (v *Vault) forget(subject, provider string) {
	v.cacheMu.Lock()
	if subject == "" && provider == "" {
		clear(v.cache)
	} else {
		delete(v.cache, cacheKey(subject, provider))
	}
	v.gen++
	v.cacheMu.Unlock()
}

// Watch keeps the cache true to a store that several processes share: a
// grant any of them changes is forgotten here as soon as the store
// announces it. It runs until ctx ends; for a store of one process it
// returns nil at once.
func (v *Vault) Watch(ctx context.Context) error {
	w, ok := v.store.(store.GrantWatcher)
	if !ok {
		return nil
	}
	return w.WatchGrants(ctx, v.forget)
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Save stores a token that subject just granted at provider, replacing any
// earlier grant of theirs there. The replaced grant's tokens, unless the new
// grant shares them, are revoked upstream in the background where the
// provider can revoke (see revokeReplaced and WaitRevocations); that never
// delays or fails the Save.
func (v *Vault) Save(ctx context.Context, subject, provider string, tok Token) (store.Grant, error) {
	now := v.now()
	g := store.Grant{
		ID: newID(), Subject: subject, Provider: provider, AccountID: tok.AccountID,
		Scopes: slices.Clone(tok.Scopes), ExpiresAt: tok.Expiry, Status: store.GrantActive,
		CreatedAt: now, UpdatedAt: now,
	}
	if err := v.seal(&g, secrets{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken}); err != nil {
		return g, err
	}
	// Replace under the grant's lock, so the replaced grant is the one
	// stored at that moment (a refresh elsewhere either finished before,
	// and its new tokens are the ones revoked, or runs after on the new
	// grant).
	var (
		old      store.Grant
		replaced bool
	)
	_, err := v.store.UpdateGrant(ctx, subject, provider, func(cur store.Grant) (store.Grant, bool, error) {
		old, replaced = cur, true
		return g, true, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		replaced = false
		err = v.store.PutGrant(ctx, g)
	}
	v.forget(subject, provider)
	if err != nil {
		return g, err
	}
	v.logger.Info("grant saved", "subject", subject, "provider", provider, "scopes", g.Scopes)
	if replaced {
		v.revokeReplaced(ctx, old, tok)
	}
	return g, nil
}

// credential is Credential, unobserved.
func (v *Vault) credential(ctx context.Context, subject, provider string, scopes []string) (string, *abi.Error) {
	g, cached, err := v.grant(ctx, subject, provider, false)
	if cached && len(without(scopes, g.Scopes)) > 0 {
		// The cache may be behind a re-consent made through another
		// instance whose announcement has not arrived yet: before asking
		// the person to consent again, read the store once. (Only active
		// grants are cached, so a cached grant answers no other error.)
		g, _, err = v.grant(ctx, subject, provider, true)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", v.connectError(ctx, abi.CodeGrantNotFound, subject, provider, scopes, nil,
			fmt.Sprintf("no %s account is connected", provider))
	case err != nil:
		v.logger.Error("grant lookup failed", "subject", subject, "provider", provider, "error", err)
		return "", abi.Errorf(abi.CodeInternal, "the vault could not read the %s grant", provider)
	case g.Status == store.GrantBroken:
		return "", v.connectError(ctx, abi.CodeGrantNotFound, subject, provider, union(g.Scopes, scopes), nil,
			fmt.Sprintf("the %s connection has expired or was revoked", provider))
	}
	if missing := without(scopes, g.Scopes); len(missing) > 0 {
		return "", v.connectError(ctx, abi.CodeScopeReauthRequired, subject, provider, union(g.Scopes, scopes), missing,
			fmt.Sprintf("the %s connection lacks the scopes %v", provider, missing))
	}
	if v.expiring(g) {
		var aerr *abi.Error
		if g, aerr = v.refresh(ctx, subject, provider, scopes); aerr != nil {
			return "", aerr
		}
	}
	s, err := v.open(g)
	if err != nil {
		v.logger.Error("grant does not open", "subject", subject, "provider", provider, "error", err)
		return "", abi.Errorf(abi.CodeInternal, "the vault could not open the %s grant", provider)
	}
	return s.AccessToken, nil
}

// Connected reports whether subject has an active grant at provider that
// covers scopes. It reads the store, not this process's cache, so it sees
// a connection made through another instance at once.
func (v *Vault) Connected(ctx context.Context, subject, provider string, scopes []string) (bool, error) {
	g, err := v.store.GetGrant(ctx, subject, provider)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return g.Status == store.GrantActive && len(without(scopes, g.Scopes)) == 0, nil
}

func (v *Vault) expiring(g store.Grant) bool {
	return !g.ExpiresAt.IsZero() && v.now().Add(v.refreshEarly).After(g.ExpiresAt)
}

// refresh renews subject's grant at provider once, however many calls ask
// at the same time: concurrent callers in this process share one flight,
// and the store's row lock makes other processes wait and then see the
// refreshed grant instead of refreshing it again.
func (v *Vault) refresh(ctx context.Context, subject, provider string, scopes []string) (store.Grant, *abi.Error) {
	type result struct {
		g    store.Grant
		aerr *abi.Error
	}
	ctx, span := startSpan(ctx, "vault.refresh")
	r, _, shared := v.flight.Do(cacheKey(subject, provider), func() (any, error) {
		g, aerr := v.refreshLocked(context.WithoutCancel(ctx), subject, provider, scopes)
		v.forget(subject, provider)
		return result{g, aerr}, nil
	})
	res := r.(result)
	outcome := RefreshOK
	if res.aerr != nil {
		outcome = string(res.aerr.Code)
	}
	// shared: this caller waited for another's refresh instead of sending one.
	endSpan(span, provider, outcome, attribute.Bool("alterhost.refresh.shared", shared))
	return res.g, res.aerr
}

var errBroken = errors.New("grant broken")

func (v *Vault) refreshLocked(ctx context.Context, subject, provider string, scopes []string) (store.Grant, *abi.Error) {
	p, ok := v.providers.Provider(provider)
	if !ok {
		return store.Grant{}, abi.Errorf(abi.CodePolicyDenied, "provider %q is not configured on this alterhost", provider)
	}
	g, err := v.store.UpdateGrant(ctx, subject, provider, func(g store.Grant) (store.Grant, bool, error) {
		if g.Status == store.GrantBroken {
			return g, false, errBroken
		}
		if !v.expiring(g) {
			return g, false, nil // another process refreshed it while we waited
		}
		s, err := v.open(g)
		if err != nil {
			return g, false, err
		}
		if s.RefreshToken == "" {
			return g, false, nil // nothing to refresh with; use the token until the upstream refuses it
		}
		start := time.Now()
		tok, err := p.Refresh(ctx, s.RefreshToken)
		v.observeRefresh(provider, err, time.Since(start))
		if errors.Is(err, ErrInvalidGrant) {
			g.Status, g.UpdatedAt = store.GrantBroken, v.now()
			return g, true, nil
		}
		if err != nil {
			return g, false, err
		}
		if tok.RefreshToken == "" {
			tok.RefreshToken = s.RefreshToken
		}
		now := v.now()
		g.ExpiresAt, g.UpdatedAt, g.RefreshedAt = tok.Expiry, now, now
		if len(tok.Scopes) > 0 {
			g.Scopes = slices.Clone(tok.Scopes)
		}
		if err := v.seal(&g, secrets{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken}); err != nil {
			return g, false, err
		}
		return g, true, nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return g, v.connectError(ctx, abi.CodeGrantNotFound, subject, provider, scopes, nil,
			fmt.Sprintf("no %s account is connected", provider))
	case errors.Is(err, errBroken) || err == nil && g.Status == store.GrantBroken:
		v.logger.Warn("grant refused by the provider; marked broken", "subject", subject, "provider", provider)
		return g, v.connectError(ctx, abi.CodeGrantNotFound, subject, provider, union(g.Scopes, scopes), nil,
			fmt.Sprintf("the %s connection has expired or was revoked", provider))
	case err != nil:
		v.logger.Error("grant refresh failed", "subject", subject, "provider", provider, "error", err)
		return g, abi.Errorf(abi.CodeUpstreamUnreachable, "the %s token could not be refreshed; try again", provider)
	}
	v.logger.Info("grant refreshed", "subject", subject, "provider", provider)
	return g, nil
}

// connectError builds a grant or scope error carrying a fresh Connect URL.
func (v *Vault) connectError(ctx context.Context, code abi.Code, subject, provider string, scopes, missing []string, what string) *abi.Error {
	e := &abi.Error{Code: code, MissingScopes: missing}
	if v.Linker == nil {
		e.Message = what + "; this alterhost cannot connect accounts"
		return e
	}
	u, err := v.Linker.ConnectURL(ctx, subject, provider, scopes)
	if err != nil {
		v.logger.Error("cannot mint a Connect URL", "provider", provider, "error", err)
		e.Message = what + "; a Connect URL could not be made, try again"
		return e
	}
	e.ConnectURL, e.Message = u, what
	return e
}

// Disconnect revokes subject's grant at provider upstream, where the
// provider supports it, and deletes it.
func (v *Vault) Disconnect(ctx context.Context, subject, provider string) error {
	g, err := v.store.GetGrant(ctx, subject, provider)
	if err != nil {
		return err
	}
	if p, ok := v.providers.Provider(provider); ok {
		// Without a revocation endpoint, deleting is all we can do.
		if r, ok := canRevoke(p); ok {
			if s, err := v.open(g); err == nil {
				if err := r.RevokeGrant(ctx, Token{AccessToken: s.AccessToken, RefreshToken: s.RefreshToken}); err != nil {
					v.logger.Warn("upstream revocation failed; deleting the grant anyway", "provider", provider, "error", redact(err, s))
				}
			}
		}
	}
	err = v.store.DeleteGrant(ctx, subject, provider)
	v.forget(subject, provider)
	if err != nil {
		return err
	}
	v.logger.Info("grant deleted", "subject", subject, "provider", provider)
	return nil
}

// Rekey seals every grant again with the current key and returns how many
// changed. Run it after seal.Rotate.
func (v *Vault) Rekey(ctx context.Context) (int, error) {
	grants, err := v.store.ListGrants(ctx, "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range grants {
		if g.KeyID == v.keys.Current() {
			continue
		}
		_, err := v.store.UpdateGrant(ctx, g.Subject, g.Provider, func(g store.Grant) (store.Grant, bool, error) {
			if g.KeyID == v.keys.Current() {
				return g, false, nil
			}
			s, err := v.open(g)
			if err != nil {
				return g, false, err
			}
			err = v.seal(&g, s)
			return g, err == nil, err
		})
		v.forget(g.Subject, g.Provider)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func without(want, have []string) []string {
	var missing []string
	for _, s := range want {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
