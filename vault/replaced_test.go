package vault_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/store"
)

// revokingProvider is a fakeProvider that can revoke: it records the
// tokens it was asked to revoke, and can fail, or hang until its context
// ends.
type revokingProvider struct {
	fakeProvider
	revokeReplaced bool
	fail           bool
	hang           bool

	mu      sync.Mutex
	revoked []vault.Token
	alone   int // of revoked, through RevokeReplacedGrant
	started chan struct{}
	release chan struct{} // closing it ends a hanging revocation
}

func (p *revokingProvider) RevokeGrant(ctx context.Context, t vault.Token) error {
	p.mu.Lock()
	p.revoked = append(p.revoked, t)
	p.mu.Unlock()
	if p.started != nil {
		p.started <- struct{}{}
	}
	if p.hang {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.release:
			return errors.New("released")
		}
	}
	if p.fail {
		// A careless provider that repeats the token in its error.
		return errors.New("acme: revoke: HTTP 500: cannot revoke " + t.RefreshToken)
	}
	return nil
}

func (p *revokingProvider) RevokeReplaced() bool { return p.revokeReplaced }

// RevokeReplacedGrant counts the revocations made as one token's alone.
func (p *revokingProvider) RevokeReplacedGrant(ctx context.Context, t vault.Token) error {
	p.mu.Lock()
	p.alone++
	p.mu.Unlock()
	return p.RevokeGrant(ctx, t)
}

func (p *revokingProvider) got() []vault.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]vault.Token(nil), p.revoked...)
}

func newRevokingVault(t *testing.T, st store.Store, p *revokingProvider) (*vault.Vault, *proctest.Buffer) {
	t.Helper()
	logs := &proctest.Buffer{}
	v := vault.New(st, testKeys, providers{"acme": p}, slog.New(slog.NewTextHandler(logs, nil)))
	v.Linker = &linker{}
	return v, logs
}

func waitRevocations(t *testing.T, v *vault.Vault) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitRevocations(ctx); err != nil {
		t.Fatalf("revocations still running after 10s: %v", err)
	}
}

// noTokens fails t if the log shows any of the tokens.
func noTokens(t *testing.T, logs *proctest.Buffer, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the log shows the token %q:\n%s", tok, logs.String())
		}
	}
}

// TestReplacedGrantRevoked: a grant replaced by a new consent has its
// tokens revoked upstream, once the Save has returned; nothing is revoked
// when there was no grant, or when revoking could end the new grant too.
func TestReplacedGrantRevoked(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := openStore(t)
		p := &revokingProvider{revokeReplaced: true}
		v, logs := newRevokingVault(t, st, p)
		save := func(subject string, tok vault.Token) {
			t.Helper()
			if _, err := v.Save(ctx, subject, "acme", tok); err != nil {
				t.Fatal(err)
			}
			waitRevocations(t, v)
		}
		want := func(what string, tokens ...vault.Token) {
			t.Helper()
			got := p.got()
			if len(got) != len(tokens) {
				t.Fatalf("%s: revoked %+v; want %+v", what, got, tokens)
			}
			for i := range got {
				if got[i].AccessToken != tokens[i].AccessToken || got[i].RefreshToken != tokens[i].RefreshToken {
					t.Fatalf("%s: revoked %+v; want %+v", what, got, tokens)
				}
			}
		}

		save("alice", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1", Scopes: []string{"read"}})
		want("the first consent")
		save("alice", vault.Token{AccessToken: "at-2", RefreshToken: "rt-2", Scopes: []string{"read", "write"}})
		want("a re-consent", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1"})
		p.mu.Lock()
		if p.alone != 1 {
			t.Errorf("%d revocations made as one token's alone; want 1 (RevokeReplacedGrant, not RevokeGrant)", p.alone)
		}
		p.mu.Unlock()
		if tok, aerr := v.Credential(ctx, "alice", "acme", []string{"write"}); aerr != nil || tok != "at-2" {
			t.Errorf("after the re-consent: %q, %v; want at-2", tok, aerr)
		}
		if !strings.Contains(logs.String(), "replaced grant revoked upstream") {
			t.Errorf("the revocation is not logged:\n%s", logs)
		}
		// Another person's consent replaces nothing of alice's.
		save("bob", vault.Token{AccessToken: "bob-1", RefreshToken: "bob-r1"})
		want("bob's first consent", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1"})

		// The provider kept the refresh token (one authorization renewed),
		// or handed the same access token back: revoking the old grant
		// would end the new one.
		save("alice", vault.Token{AccessToken: "at-3", RefreshToken: "rt-2"})
		save("alice", vault.Token{AccessToken: "at-3", RefreshToken: "rt-4"})
		want("re-consents sharing a token", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1"})

		// At a provider not known to revoke one token alone (where any
		// revocation may end the whole authorization), only another
		// account's grant is revoked.
		p.revokeReplaced = false
		save("carol", vault.Token{AccessToken: "c-1", RefreshToken: "cr-1", AccountID: "u-1"})
		save("carol", vault.Token{AccessToken: "c-2", RefreshToken: "cr-2", AccountID: "u-1"})
		save("carol", vault.Token{AccessToken: "c-3", RefreshToken: "cr-3"})
		want("the same account again", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1"})
		save("carol", vault.Token{AccessToken: "c-4", RefreshToken: "cr-4", AccountID: "u-2"})
		save("carol", vault.Token{AccessToken: "c-5", RefreshToken: "cr-5", AccountID: "u-9"})
		want("another account", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1"},
			vault.Token{AccessToken: "c-4", RefreshToken: "cr-4"})
		noTokens(t, logs, "at-1", "rt-1", "at-2", "rt-2", "at-3", "rt-4", "c-1", "cr-1", "c-4", "cr-4", "c-5", "cr-5")

		// A provider that cannot revoke: the grant is replaced all the same.
		plain := newVault(t, st, &fakeProvider{})
		if _, err := plain.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-9", Scopes: []string{"read"}}); err != nil {
			t.Fatal(err)
		}
		if tok, _ := plain.Credential(ctx, "alice", "acme", nil); tok != "at-9" {
			t.Errorf("credential = %q; want at-9", tok)
		}
	})
}

// TestReplacedGrantRevokeFails: a revocation that fails, hangs, or finds
// too many in flight neither fails nor delays the Save, is logged without
// a token, and ends within its time bound.
func TestReplacedGrantRevokeFails(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := openStore(t)

		// The provider refuses, repeating the token in its error.
		p := &revokingProvider{revokeReplaced: true, fail: true}
		v, logs := newRevokingVault(t, st, p)
		v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1"})
		if _, err := v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-2", RefreshToken: "rt-2"}); err != nil {
			t.Fatalf("a failed revocation failed the save: %v", err)
		}
		waitRevocations(t, v)
		if len(p.got()) != 1 || !strings.Contains(logs.String(), "upstream revocation of the replaced grant failed") {
			t.Errorf("revoked %+v; the failure is not logged:\n%s", p.got(), logs)
		}
		if tok, aerr := v.Credential(ctx, "alice", "acme", nil); aerr != nil || tok != "at-2" {
			t.Errorf("after a failed revocation: %q, %v; want at-2", tok, aerr)
		}
		noTokens(t, logs, "at-1", "rt-1", "at-2", "rt-2")

		// The provider hangs: Save returns at once, one revocation runs
		// at a time here, and the time bound ends it.
		p = &revokingProvider{revokeReplaced: true, hang: true, started: make(chan struct{}, 4), release: make(chan struct{})}
		v, logs = newRevokingVault(t, st, p)
		v.SetRevokeLimits(1, 300*time.Millisecond)
		start := time.Now()
		v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-3", RefreshToken: "rt-3"})
		<-p.started // the revocation of at-2 hangs at the provider
		if _, err := v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-4", RefreshToken: "rt-4"}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Errorf("the saves took %v; the hanging revocation held them up", d)
		}
		if tok, _ := v.Credential(ctx, "alice", "acme", nil); tok != "at-4" {
			t.Errorf("credential = %q; want at-4", tok)
		}
		waitRevocations(t, v)
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("the hanging revocation ended after %v, before its 300ms bound", d)
		}
		got := p.got()
		if len(got) != 1 || got[0].AccessToken != "at-2" {
			t.Errorf("revoked %+v; want only at-2 (at-3's revocation found no room)", got)
		}
		if !strings.Contains(logs.String(), "too many upstream revocations in flight") ||
			!strings.Contains(logs.String(), "context deadline exceeded") {
			t.Errorf("the skipped and the timed-out revocations are not logged:\n%s", logs)
		}
		noTokens(t, logs, "at-1", "rt-1", "at-2", "rt-2", "at-3", "rt-3", "at-4", "rt-4")

		// WaitRevocations gives up when its context ends.
		v.SetRevokeLimits(1, time.Minute)
		v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-5", RefreshToken: "rt-5"})
		<-p.started
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := v.WaitRevocations(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitRevocations with a hanging revocation: %v; want the deadline", err)
		}
		close(p.release)
		waitRevocations(t, v)
	})
}
