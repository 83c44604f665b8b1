package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/internal/pgtest"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/postgres"
	"github.com/alterhost/alterhost/vault/store/sqlite"
)

type fakeProvider struct {
	refreshes atomic.Int64
	invalid   atomic.Bool
	delay     time.Duration
}

func (p *fakeProvider) Name() string                { return "acme" }
func (p *fakeProvider) APIHosts() []abi.HostPattern { return []abi.HostPattern{"api.acme.test"} }
func (p *fakeProvider) Refresh(ctx context.Context, refresh string) (vault.Token, error) {
	n := p.refreshes.Add(1)
	time.Sleep(p.delay)
	if p.invalid.Load() {
		return vault.Token{}, fmt.Errorf("acme: %w", vault.ErrInvalidGrant)
	}
	return vault.Token{AccessToken: fmt.Sprintf("access-%d", n), RefreshToken: fmt.Sprintf("refresh-%d", n),
		Expiry: time.Now().Add(time.Hour)}, nil
}

type providers map[string]vault.Provider

func (ps providers) Provider(name string) (vault.Provider, bool) { p, ok := ps[name]; return p, ok }

type linker struct{ n atomic.Int64 }

func (l *linker) ConnectURL(_ context.Context, subject, provider string, scopes []string) (string, error) {
	return fmt.Sprintf("http://alterhost.test/connect/%s?link=%d&for=%s&scopes=%s", provider, l.n.Add(1), subject, strings.Join(scopes, "+")), nil
}

// eachStore runs test against every backend: SQLite always, PostgreSQL
// when $ALTERHOST_TEST_POSTGRES_URL names a server.
func eachStore(t *testing.T, test func(t *testing.T, openStore func(*testing.T) store.Store)) {
	open := func(t *testing.T, st store.Store, err error) store.Store {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	t.Run("sqlite", func(t *testing.T) {
		test(t, func(t *testing.T) store.Store {
			st, err := sqlite.Open(context.Background(), t.TempDir()+"/v.db")
			return open(t, st, err)
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.URL(t)
		test(t, func(t *testing.T) store.Store {
			st, err := postgres.Open(context.Background(), url)
			return open(t, st, err)
		})
	})
}

// testKeys is one keyring for the whole test binary, so vaults made in one
// test (as several processes would be) open each other's grants.
var testKeys = func() *seal.Keyring {
	k, err := seal.New(map[string][]byte{"test": make([]byte, 32)}, "test")
	if err != nil {
		panic(err)
	}
	return k
}()

func newVault(t *testing.T, st store.Store, p *fakeProvider) *vault.Vault {
	t.Helper()
	v := vault.New(st, testKeys, providers{"acme": p}, nil)
	v.Linker = &linker{}
	return v
}

func TestCredential(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := openStore(t)
		p := &fakeProvider{}
		v := newVault(t, st, p)

		_, aerr := v.Credential(ctx, "alice", "acme", []string{"read"})
		if aerr == nil || aerr.Code != abi.CodeGrantNotFound || !strings.Contains(aerr.ConnectURL, "for=alice") {
			t.Fatalf("no grant: %+v; want grant_not_found with a Connect URL for alice", aerr)
		}
		_, again := v.Credential(ctx, "alice", "acme", []string{"read"})
		if again.ConnectURL == aerr.ConnectURL {
			t.Error("two refusals carried the same Connect URL; each must be fresh")
		}

		if _, err := v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1",
			Scopes: []string{"read"}, Expiry: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if tok, aerr := v.Credential(ctx, "alice", "acme", []string{"read"}); aerr != nil || tok != "at-1" {
			t.Fatalf("credential = %q, %v", tok, aerr)
		}
		if _, aerr := v.Credential(ctx, "bob", "acme", nil); aerr == nil || aerr.Code != abi.CodeGrantNotFound {
			t.Errorf("bob used alice's grant: %v", aerr)
		}
		_, aerr = v.Credential(ctx, "alice", "acme", []string{"read", "write"})
		if aerr == nil || aerr.Code != abi.CodeScopeReauthRequired || strings.Join(aerr.MissingScopes, ",") != "write" ||
			!strings.Contains(aerr.ConnectURL, "scopes=read+write") {
			t.Errorf("missing scope: %+v; want scope_reauth_required for write, consenting to read+write", aerr)
		}

		// The token is stored sealed.
		g, _ := st.GetGrant(ctx, "alice", "acme")
		if bytes.Contains(g.Secret, []byte("at-1")) || bytes.Contains(g.Secret, []byte("rt-1")) {
			t.Error("a token is stored in the clear")
		}
		// A ciphertext moved to another person's row does not open.
		if _, err := v.Save(ctx, "mallory", "acme", vault.Token{AccessToken: "m", Scopes: []string{"read"}}); err != nil {
			t.Fatal(err)
		}
		st.UpdateGrant(ctx, "mallory", "acme", func(m store.Grant) (store.Grant, bool, error) {
			m.Secret, m.KeyID = g.Secret, g.KeyID
			return m, true, nil
		})
		if tok, aerr := v.Credential(ctx, "mallory", "acme", []string{"read"}); aerr == nil || tok != "" {
			t.Errorf("a sealed token moved to mallory's row opened: %q", tok)
		} else if strings.Contains(aerr.Message, "at-1") {
			t.Errorf("the error shows the secret: %v", aerr)
		}
	})
}

func TestRefreshOnceUnderConcurrency(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := openStore(t)
		p := &fakeProvider{delay: 20 * time.Millisecond}
		v := newVault(t, st, p)
		v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "old", RefreshToken: "rt", Scopes: []string{"read"},
			Expiry: time.Now().Add(10 * time.Second)}) // inside the refresh window

		var wg sync.WaitGroup
		tokens := make([]string, 50)
		for i := range tokens {
			wg.Go(func() {
				tok, aerr := v.Credential(ctx, "alice", "acme", []string{"read"})
				if aerr != nil {
					t.Error(aerr)
				}
				tokens[i] = tok
			})
		}
		wg.Wait()
		if n := p.refreshes.Load(); n != 1 {
			t.Errorf("%d upstream refreshes for 50 concurrent calls; want 1", n)
		}
		for _, tok := range tokens {
			if tok != "access-1" {
				t.Fatalf("a caller got %q; want the refreshed token", tok)
			}
		}

		// A second vault on the same store (as another process would be) sees
		// the fresh grant and does not refresh again.
		other := newVault(t, st, p)
		if _, aerr := other.Credential(ctx, "alice", "acme", []string{"read"}); aerr != nil || p.refreshes.Load() != 1 {
			t.Errorf("second vault: %v, refreshes %d", aerr, p.refreshes.Load())
		}
	})
}

func TestInvalidGrant(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := openStore(t)
		p := &fakeProvider{}
		p.invalid.Store(true)
		v := newVault(t, st, p)
		v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "old", RefreshToken: "rt", Scopes: []string{"read"},
			Expiry: time.Now().Add(-time.Minute)})
		_, aerr := v.Credential(ctx, "alice", "acme", []string{"read"})
		if aerr == nil || aerr.Code != abi.CodeGrantNotFound || aerr.ConnectURL == "" {
			t.Fatalf("refused refresh: %+v; want grant_not_found with a Connect URL", aerr)
		}
		g, _ := st.GetGrant(ctx, "alice", "acme")
		if g.Status != store.GrantBroken {
			t.Errorf("status = %s; want broken", g.Status)
		}
		// Broken stays broken without asking the provider again.
		before := p.refreshes.Load()
		if _, aerr := v.Credential(ctx, "alice", "acme", []string{"read"}); aerr == nil || aerr.Code != abi.CodeGrantNotFound || p.refreshes.Load() != before {
			t.Errorf("broken grant: %v, refreshes %d → %d", aerr, before, p.refreshes.Load())
		}
	})
}

func TestRekey(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := openStore(t)
		t.Setenv(seal.KeyEnv, "")
		dir := t.TempDir()
		keys, _ := seal.Load(dir)
		v := vault.New(st, keys, providers{}, nil)
		for _, s := range []string{"a", "b", "c"} {
			v.Save(ctx, s, "acme", vault.Token{AccessToken: "tok-" + s})
		}
		rotated, err := seal.Rotate(dir)
		if err != nil {
			t.Fatal(err)
		}
		v2 := vault.New(st, rotated, providers{}, nil)
		if n, err := v2.Rekey(ctx); err != nil || n != 3 {
			t.Fatalf("rekey = %d, %v; want 3", n, err)
		}
		gs, _ := st.ListGrants(ctx, "")
		for _, g := range gs {
			if g.KeyID != rotated.Current() {
				t.Errorf("grant of %s still sealed with %s", g.Subject, g.KeyID)
			}
		}
		if tok, aerr := v2.Credential(ctx, "b", "acme", nil); aerr != nil || tok != "tok-b" {
			t.Errorf("after rekey: %q, %v", tok, aerr)
		}
		if n, _ := v2.Rekey(ctx); n != 0 {
			t.Errorf("a second rekey changed %d grants; want 0", n)
		}
	})
}

func TestDisconnect(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		v := newVault(t, openStore(t), &fakeProvider{})
		if err := v.Disconnect(ctx, "alice", "acme"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("disconnect without a grant: %v", err)
		}
		v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "x"})
		if err := v.Disconnect(ctx, "alice", "acme"); err != nil {
			t.Fatal(err)
		}
		if _, aerr := v.Credential(ctx, "alice", "acme", nil); aerr == nil || aerr.Code != abi.CodeGrantNotFound {
			t.Errorf("after disconnect: %v", aerr)
		}
	})
}

func TestAuditor(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		st := openStore(t)
		a := vault.NewAuditor(st, nil)
		for i := range 1000 {
			a.Record(store.AuditRecord{Time: time.Now(), Subject: "alice", Plugin: "p", Tool: "t", Method: "GET",
				Host: "h", Path: fmt.Sprintf("/%d", i), Status: 200})
		}
		a.Close()
		recs, err := st.ListAudit(context.Background(), store.AuditFilter{Limit: 2000})
		if err != nil || len(recs) != 1000 {
			t.Fatalf("%d records, %v; want all 1000 after Close", len(recs), err)
		}
	})
}

// TestGrantCache checks that a cached grant serves calls without a read,
// that changes made through the same vault show at once, and that changes
// made by another instance show within the cache's lifetime.
func TestGrantCache(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := openStore(t)
		clock := time.Now()
		here, there := newVault(t, st, &fakeProvider{}), newVault(t, st, &fakeProvider{})
		here.SetClock(func() time.Time { return clock })
		here.Save(ctx, "alice", "acme", vault.Token{AccessToken: "one", Scopes: []string{"read"}})
		if tok, _ := here.Credential(ctx, "alice", "acme", nil); tok != "one" {
			t.Fatalf("credential = %q", tok)
		}
		// Through the same vault: seen at once.
		here.Save(ctx, "alice", "acme", vault.Token{AccessToken: "two", Scopes: []string{"read"}})
		if tok, _ := here.Credential(ctx, "alice", "acme", nil); tok != "two" {
			t.Errorf("after Save, credential = %q; want two", tok)
		}
		// By another instance: seen once the entry ages out.
		if err := there.Disconnect(ctx, "alice", "acme"); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(31 * time.Second)
		if _, aerr := here.Credential(ctx, "alice", "acme", nil); aerr == nil || aerr.Code != abi.CodeGrantNotFound {
			t.Errorf("31s after another instance disconnected: %v; want grant_not_found", aerr)
		}
		// An entry never outlives its grant's refresh window.
		p := &fakeProvider{}
		v := newVault(t, st, p)
		v.SetClock(func() time.Time { return clock })
		v.Save(ctx, "bob", "acme", vault.Token{AccessToken: "b", RefreshToken: "r", Expiry: clock.Add(70 * time.Second)})
		v.Credential(ctx, "bob", "acme", nil)
		clock = clock.Add(15 * time.Second) // inside the refresh window, before the 30s cache lifetime
		if tok, _ := v.Credential(ctx, "bob", "acme", nil); tok != "access-1" || p.refreshes.Load() != 1 {
			t.Errorf("in the refresh window: %q, %d refreshes; want a refreshed token", tok, p.refreshes.Load())
		}
	})
}

// TestGrantChangesAnnounced: on PostgreSQL, instances that share the
// database hear of each other's grant changes, so a grant disconnected
// through one is gone on the others at once, not after their cache ages.
func TestGrantChangesAnnounced(t *testing.T) {
	url := pgtest.URL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() store.Store {
		st, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	here, there := newVault(t, open(), &fakeProvider{}), newVault(t, open(), &fakeProvider{})
	watching := make(chan error, 1)
	go func() { watching <- here.Watch(ctx) }()
	if _, err := there.Save(ctx, "alice", "acme", vault.Token{AccessToken: "one", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	// here caches the grant (a save elsewhere may be heard first; wait for
	// the cached copy to be the saved one).
	deadline := time.Now().Add(5 * time.Second)
	for tok, _ := here.Credential(ctx, "alice", "acme", nil); tok != "one"; tok, _ = here.Credential(ctx, "alice", "acme", nil) {
		if time.Now().After(deadline) {
			t.Fatalf("credential = %q", tok)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the LISTEN is in place
	if _, err := there.Save(ctx, "alice", "acme", vault.Token{AccessToken: "two", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	for tok, _ := here.Credential(ctx, "alice", "acme", nil); tok != "two"; tok, _ = here.Credential(ctx, "alice", "acme", nil) {
		if time.Now().After(deadline) {
			t.Fatalf("after another instance saved, credential = %q; want two", tok)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := there.Disconnect(ctx, "alice", "acme"); err != nil {
		t.Fatal(err)
	}
	for {
		_, aerr := here.Credential(ctx, "alice", "acme", nil)
		if aerr != nil && aerr.Code == abi.CodeGrantNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after another instance disconnected: %v; want grant_not_found", aerr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-watching; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v", err)
	}
}

// countingStore counts grant reads.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) GetGrant(ctx context.Context, subject, provider string) (store.Grant, error) {
	c.gets.Add(1)
	return c.Store.GetGrant(ctx, subject, provider)
}

// TestStaleCacheReconsent: a re-consent made through another instance,
// not yet announced, is found by reading the store once before the person
// is asked to consent again; a call the cached grant covers reads nothing.
func TestStaleCacheReconsent(t *testing.T) {
	eachStore(t, func(t *testing.T, openStore func(*testing.T) store.Store) {
		ctx := context.Background()
		st := &countingStore{Store: openStore(t)}
		// Two instances on one store; neither watches, so here's cache
		// stays stale until it ages out.
		here, there := newVault(t, st, &fakeProvider{}), newVault(t, st, &fakeProvider{})
		if _, err := there.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-1", Scopes: []string{"read"}}); err != nil {
			t.Fatal(err)
		}
		if tok, aerr := here.Credential(ctx, "alice", "acme", []string{"read"}); aerr != nil || tok != "at-1" {
			t.Fatalf("credential = %q, %v", tok, aerr)
		}
		reads := func(what string, want int64, f func()) {
			t.Helper()
			before := st.gets.Load()
			f()
			if got := st.gets.Load() - before; got != want {
				t.Errorf("%s read the store %d times; want %d", what, got, want)
			}
		}
		reads("a cached grant with enough scopes", 0, func() {
			if tok, aerr := here.Credential(ctx, "alice", "acme", []string{"read"}); aerr != nil || tok != "at-1" {
				t.Errorf("cached credential = %q, %v", tok, aerr)
			}
		})

		// The re-consent, through the other instance.
		if _, err := there.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-2", Scopes: []string{"read", "write"}}); err != nil {
			t.Fatal(err)
		}
		reads("a cached grant lacking a scope", 1, func() {
			if tok, aerr := here.Credential(ctx, "alice", "acme", []string{"read", "write"}); aerr != nil || tok != "at-2" {
				t.Errorf("after a re-consent elsewhere: %q, %v; want at-2 without asking to consent again", tok, aerr)
			}
		})
		reads("the grant read again", 0, func() {
			if tok, aerr := here.Credential(ctx, "alice", "acme", []string{"write"}); aerr != nil || tok != "at-2" {
				t.Errorf("the re-read grant is not cached: %q, %v", tok, aerr)
			}
		})

		// The stored grant lacks the scope too: the person is asked, after
		// one read, with a Connect URL for everything.
		reads("a scope nobody granted", 1, func() {
			_, aerr := here.Credential(ctx, "alice", "acme", []string{"read", "admin"})
			if aerr == nil || aerr.Code != abi.CodeScopeReauthRequired || strings.Join(aerr.MissingScopes, ",") != "admin" ||
				!strings.Contains(aerr.ConnectURL, "scopes=read+write+admin") {
				t.Errorf("missing admin: %+v; want scope_reauth_required for admin, consenting to read+write+admin", aerr)
			}
		})

		// Disconnected elsewhere: the read finds no grant.
		if err := there.Disconnect(ctx, "alice", "acme"); err != nil {
			t.Fatal(err)
		}
		reads("a grant deleted elsewhere", 1, func() {
			_, aerr := here.Credential(ctx, "alice", "acme", []string{"admin"})
			if aerr == nil || aerr.Code != abi.CodeGrantNotFound || aerr.ConnectURL == "" {
				t.Errorf("after a disconnect elsewhere: %+v; want grant_not_found with a Connect URL", aerr)
			}
		})

		// Marked broken elsewhere: the read finds it broken.
		there.Save(ctx, "alice", "acme", vault.Token{AccessToken: "at-3", Scopes: []string{"read"}})
		if tok, _ := here.Credential(ctx, "alice", "acme", []string{"read"}); tok != "at-3" {
			t.Fatalf("credential = %q", tok)
		}
		st.UpdateGrant(ctx, "alice", "acme", func(g store.Grant) (store.Grant, bool, error) {
			g.Status = store.GrantBroken
			return g, true, nil
		})
		if _, aerr := here.Credential(ctx, "alice", "acme", []string{"write"}); aerr == nil || aerr.Code != abi.CodeGrantNotFound {
			t.Errorf("after the grant broke elsewhere: %+v; want grant_not_found", aerr)
		}
	})
}
