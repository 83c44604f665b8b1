package vault_test

// Tests with the vault in several OS processes on one database, as several
// alterhost instances (or a restarted one) would be. The children are this
// test binary run again with proctest.RoleEnv set; TestHelperProcess is
// their entry point and does nothing in the parent.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store"
)

// What the parent tells a child, besides seal.KeyEnv.
const (
	procDBEnv       = "ALTERHOST_PROCTEST_DB"       // a --database-url: sqlite:PATH or postgres://...
	procUpstreamEnv = "ALTERHOST_PROCTEST_UPSTREAM" // the fake provider's base URL
	procCallsEnv    = "ALTERHOST_PROCTEST_CALLS"    // concurrent Credential calls to make
)

const (
	procSubject      = "alice"
	procProvider     = "acme"
	procClientID     = "client-1"
	procClientSecret = "client-secret-never-printed"
	procCalls        = 25
)

// TestHelperProcess is the entry point of the child processes. In the
// parent test run it does nothing.
func TestHelperProcess(t *testing.T) {
	switch role := proctest.Role(); role {
	case "":
		return
	case "vault-credential":
		procCredentialChild(t)
	default:
		t.Fatalf("unknown role %q", role)
	}
}

// procCredentialChild opens the vault the parent named, says "ready",
// waits for "go", then makes $ALTERHOST_PROCTEST_CALLS concurrent
// Credential calls and reports each result as "token T" or "error ...".
func procCredentialChild(t *testing.T) {
	ctx := context.Background()
	if os.Getenv(seal.KeyEnv) == "" {
		t.Fatalf("the parent did not set %s", seal.KeyEnv)
	}
	keys, err := seal.Load(t.TempDir()) // from the environment
	if err != nil {
		t.Fatal(err)
	}
	st, err := vault.OpenStore(ctx, os.Getenv(procDBEnv), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := vault.New(st, keys, procProviders(t, os.Getenv(procUpstreamEnv)), nil)
	n, err := strconv.Atoi(os.Getenv(procCallsEnv))
	if err != nil {
		t.Fatal(err)
	}
	proctest.Printf("ready")
	if line, err := proctest.ReadLine(); err != nil || line != "go" {
		t.Fatalf("waiting for go: %q, %v", line, err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			tok, aerr := v.Credential(ctx, procSubject, procProvider, []string{"read"})
			if aerr != nil {
				proctest.Printf("error %s: %s", aerr.Code, aerr.Message)
				return
			}
			proctest.Printf("token %s", tok)
		})
	}
	wg.Wait()
	proctest.Printf("done %v", time.Since(start).Round(time.Millisecond))
}

// procProviders is the registry both parent and children use: one real
// provider.Provider whose token endpoint is the parent's fake.
func procProviders(t *testing.T, upstream string) *provider.Registry {
	t.Helper()
	p, err := provider.New(provider.Config{
		Name: procProvider, DisplayName: "Acme", AuthURL: upstream + "/authorize", TokenURL: upstream + "/token",
		ClientID: procClientID, APIHosts: []abi.HostPattern{"api.acme.test"},
	}, provider.WithClientSecret(procClientSecret))
	if err != nil {
		t.Fatal(err)
	}
	return provider.NewRegistry(p)
}

// tokenEndpoint is a fake provider's token endpoint on 127.0.0.1 that
// counts refreshes. Each refresh sleeps delay; while block is set, a
// refresh instead reports on arrived and hangs until its client goes away.
type tokenEndpoint struct {
	*httptest.Server
	t         *testing.T
	delay     time.Duration
	block     atomic.Bool
	arrived   chan struct{}
	release   chan struct{}
	refreshes atomic.Int64

	mu   sync.Mutex
	seen []string // the refresh tokens sent, in order
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	e := &tokenEndpoint{t: t, arrived: make(chan struct{}, 16), release: make(chan struct{})}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	t.Cleanup(func() { close(e.release) }) // runs first: no handler outlives the test
	return e
}

func (e *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	id, secret, basic := r.BasicAuth()
	if r.Method != http.MethodPost || r.URL.Path != "/token" || r.ParseForm() != nil ||
		!basic || id != procClientID || secret != procClientSecret {
		e.t.Errorf("token endpoint: unexpected %s %s (client auth %v)", r.Method, r.URL.Path, basic)
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "refresh_token" {
		e.t.Errorf("token endpoint: grant_type %q", gt)
		http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
		return
	}
	n := e.refreshes.Add(1)
	e.mu.Lock()
	e.seen = append(e.seen, r.PostForm.Get("refresh_token"))
	e.mu.Unlock()
	if e.block.Load() {
		e.arrived <- struct{}{}
		select {
		case <-r.Context().Done(): // the client died
		case <-e.release:
		case <-time.After(proctest.Timeout):
			e.t.Errorf("token endpoint: a blocked refresh was never abandoned")
		}
		return
	}
	time.Sleep(e.delay) // so that the processes' refreshes overlap
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("at-new-%d", n),
		"refresh_token": fmt.Sprintf("rt-new-%d", n), "token_type": "Bearer", "expires_in": 3600})
}

func (e *tokenEndpoint) seenTokens() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.seen)
}

// procOpen opens db's store, closed when t ends.
func procOpen(t *testing.T, db proctest.DB) store.Store {
	t.Helper()
	st, err := vault.OpenStore(t.Context(), db.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// procKeys returns a new keyring and the same keys as seal.KeyEnv wants
// them ("ID:BASE64KEY"), for the children.
func procKeys(t *testing.T) (*seal.Keyring, string) {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	keys, err := seal.New(map[string][]byte{"proc": key}, "proc")
	if err != nil {
		t.Fatal(err)
	}
	return keys, seal.KeyEnv + "=proc:" + base64.StdEncoding.EncodeToString(key)
}

// procSetup stores alice's grant, about to expire (inside the vault's
// refresh window), in db and returns it and the children's environment.
func procSetup(t *testing.T, db proctest.DB, up *tokenEndpoint, keys *seal.Keyring, keyEnv string, calls int) (store.Grant, []string) {
	t.Helper()
	st, err := vault.OpenStore(t.Context(), db.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := vault.New(st, keys, procProviders(t, up.URL), nil)
	g, err := v.Save(t.Context(), procSubject, procProvider, vault.Token{AccessToken: "at-old", RefreshToken: "rt-old",
		Scopes: []string{"read"}, Expiry: time.Now().Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return g, []string{keyEnv, procDBEnv + "=" + db.URL, procUpstreamEnv + "=" + up.URL,
		procCallsEnv + "=" + strconv.Itoa(calls)}
}

// within runs f and fails t if it takes longer than proctest.Timeout (the
// vault refreshes on a context that is never cancelled, so a lock held
// forever would otherwise hang the test).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(proctest.Timeout):
		t.Fatalf("%s did not finish within %v", what, proctest.Timeout)
	}
}

// TestProcessesRefreshOnce: two processes sharing a database, each making
// 25 concurrent calls for an expiring grant, refresh it once between them,
// and every call gets the new token.
func TestProcessesRefreshOnce(t *testing.T) {
	proctest.ForEachDB(t, func(t *testing.T, db proctest.DB) {
		up := newTokenEndpoint(t)
		up.delay = 100 * time.Millisecond
		keys, keyEnv := procKeys(t)
		_, env := procSetup(t, db, up, keys, keyEnv, procCalls)

		children := []*proctest.Child{
			proctest.Start(t, "vault-credential", env...),
			proctest.Start(t, "vault-credential", env...),
		}
		for _, c := range children {
			c.Expect(t, "ready")
		}
		start := time.Now()
		for _, c := range children {
			c.Send(t, "go")
		}
		var tokens []string
		for _, c := range children {
			for range procCalls {
				tokens = append(tokens, c.Expect(t, "token"))
			}
			t.Logf("child %d: %d calls took %s", c.Pid(), procCalls, c.Expect(t, "done"))
			c.CloseStdin()
			if err := c.Wait(t); err != nil {
				t.Errorf("child %d: %v\n%s", c.Pid(), err, c.Output())
			}
		}
		t.Logf("%d calls in 2 processes took %v", len(tokens), time.Since(start).Round(time.Millisecond))

		if n := up.refreshes.Load(); n != 1 {
			t.Errorf("%d refresh requests reached the provider for %d calls in 2 processes; want 1 (sent %q)",
				n, len(tokens), up.seenTokens())
		}
		if seen := up.seenTokens(); len(seen) > 0 && seen[0] != "rt-old" {
			t.Errorf("the refresh sent refresh token %q, want rt-old", seen[0])
		}
		if len(tokens) != 2*procCalls {
			t.Fatalf("%d results, want %d", len(tokens), 2*procCalls)
		}
		for i, tok := range tokens {
			if tok != "at-new-1" {
				t.Fatalf("call %d got %q; want the refreshed token at-new-1 (all: %q)", i, tok, tokens)
			}
		}

		// The refreshed grant is stored: a third vault uses it as it is.
		v := vault.New(procOpen(t, db), keys, procProviders(t, up.URL), nil)
		if tok, aerr := v.Credential(t.Context(), procSubject, procProvider, []string{"read"}); aerr != nil || tok != "at-new-1" {
			t.Errorf("after the children: %q, %v; want at-new-1", tok, aerr)
		}
		if n := up.refreshes.Load(); n != 1 {
			t.Errorf("the parent refreshed again (%d refreshes)", n)
		}
	})
}

// noDelete is a view of a store whose grants cannot be deleted, so that
// Vault.Disconnect can be used to read a grant's tokens without losing it.
type noDelete struct{ store.Store }

var errNoDelete = errors.New("read-only view")

func (noDelete) DeleteGrant(context.Context, string, string) error { return errNoDelete }

// tokenCatcher is a provider that records the tokens Disconnect revokes.
type tokenCatcher struct{ got []vault.Token }

func (c *tokenCatcher) Name() string                { return procProvider }
func (c *tokenCatcher) APIHosts() []abi.HostPattern { return []abi.HostPattern{"api.acme.test"} }
func (c *tokenCatcher) Refresh(context.Context, string) (vault.Token, error) {
	return vault.Token{}, errors.New("tokenCatcher does not refresh")
}
func (c *tokenCatcher) RevokeGrant(_ context.Context, tok vault.Token) error {
	c.got = append(c.got, tok)
	return nil
}

type catcherProviders struct{ p *tokenCatcher }

func (c catcherProviders) Provider(name string) (vault.Provider, bool) {
	return c.p, name == procProvider
}

// storedTokens opens subject's grant with a fresh vault on keys and
// returns its tokens, leaving the grant in place.
func storedTokens(t *testing.T, st store.Store, keys *seal.Keyring) vault.Token {
	t.Helper()
	c := &tokenCatcher{}
	err := vault.New(noDelete{st}, keys, catcherProviders{c}, nil).Disconnect(t.Context(), procSubject, procProvider)
	if !errors.Is(err, errNoDelete) || len(c.got) != 1 {
		t.Fatalf("reading the grant's tokens: %v, %d tokens; the grant does not open", err, len(c.got))
	}
	return c.got[0]
}

// TestProcessKilledDuringRefresh: a process killed while its refresh is at
// the provider leaves the grant as it was, usable, and the database sound;
// the lock it held is released and the next refresh succeeds.
func TestProcessKilledDuringRefresh(t *testing.T) {
	proctest.ForEachDB(t, func(t *testing.T, db proctest.DB) {
		up := newTokenEndpoint(t)
		up.block.Store(true)
		keys, keyEnv := procKeys(t)
		saved, env := procSetup(t, db, up, keys, keyEnv, 1)

		c := proctest.Start(t, "vault-credential", env...)
		c.Expect(t, "ready")
		c.Send(t, "go")
		select { // the child's refresh holds the grant's lock and waits at the provider
		case <-up.arrived:
		case <-c.Done():
			t.Fatalf("the child exited (%v) before its refresh reached the provider:\n%s", c.Cmd.ProcessState, c.Output())
		case <-time.After(proctest.Timeout):
			t.Fatalf("the child's refresh did not reach the provider within %v:\n%s", proctest.Timeout, c.Output())
		}
		c.Kill(t) // mid-refresh, holding the grant's lock
		up.block.Store(false)

		if db.File != "" {
			proctest.IntegrityCheck(t, db.File)
		}
		st := procOpen(t, db)
		g, err := st.GetGrant(t.Context(), procSubject, procProvider)
		if err != nil {
			t.Fatalf("the grant is gone after the crash: %v", err)
		}
		if g.ID != saved.ID || g.Status != store.GrantActive || g.KeyID != saved.KeyID ||
			!bytes.Equal(g.Secret, saved.Secret) || !g.ExpiresAt.Equal(saved.ExpiresAt.Truncate(time.Microsecond)) ||
			!g.RefreshedAt.IsZero() {
			t.Errorf("the grant changed in the crash:\n got %+v\nwant %+v", g, saved)
		}
		if tok := storedTokens(t, st, keys); tok.AccessToken != "at-old" || tok.RefreshToken != "rt-old" {
			t.Errorf("a fresh vault opens the grant to %q/%q; want the old at-old/rt-old", tok.AccessToken, tok.RefreshToken)
		}

		// The next refresh, here, succeeds: the dead process's lock is gone.
		v := vault.New(st, keys, procProviders(t, up.URL), nil)
		var tok string
		var aerr *abi.Error
		within(t, "the refresh after the crash", func() {
			tok, aerr = v.Credential(t.Context(), procSubject, procProvider, []string{"read"})
		})
		if aerr != nil || tok != "at-new-2" {
			t.Fatalf("refresh after the crash: %q, %v; want at-new-2", tok, aerr)
		}
		if seen := up.seenTokens(); !slices.Equal(seen, []string{"rt-old", "rt-old"}) {
			t.Errorf("refresh tokens sent: %q; want rt-old twice (the killed attempt, then this one)", seen)
		}
		g, err = st.GetGrant(t.Context(), procSubject, procProvider)
		if err != nil || g.Status != store.GrantActive || g.RefreshedAt.IsZero() || g.ID != saved.ID {
			t.Errorf("after the refresh: %+v, %v", g, err)
		}
		if tok := storedTokens(t, st, keys); tok.AccessToken != "at-new-2" || tok.RefreshToken != "rt-new-2" {
			t.Errorf("after the refresh the grant holds %q/%q; want at-new-2/rt-new-2", tok.AccessToken, tok.RefreshToken)
		}
		if db.File != "" {
			proctest.IntegrityCheck(t, db.File)
		}
	})
}
