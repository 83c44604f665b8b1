package vault_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/sqlite"
)

// events records what an observer hears, as "kind provider outcome".
type events struct {
	mu   sync.Mutex
	seen []string
	lost int
	full int
}

func (e *events) add(s string) { e.mu.Lock(); e.seen = append(e.seen, s); e.mu.Unlock() }

func (e *events) CredentialLookup(provider, outcome string) {
	e.add("lookup " + provider + " " + outcome)
}
func (e *events) Refresh(provider, outcome string, took time.Duration) {
	if took <= 0 {
		e.add("refresh without a duration")
	}
	e.add("refresh " + provider + " " + outcome)
}
func (e *events) AuditQueueFull() { e.mu.Lock(); e.full++; e.mu.Unlock() }
func (e *events) AuditWritten(records int, err error) {
	if err != nil {
		e.mu.Lock()
		e.lost += records
		e.mu.Unlock()
	}
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.seen
	e.seen = nil
	return s
}

func TestObserver(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/v.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := &fakeProvider{delay: time.Millisecond}
	v := newVault(t, st, p)
	ev := &events{}
	v.Observer = ev
	check := func(what string, want ...string) {
		t.Helper()
		got := ev.take()
		if len(got) != len(want) {
			t.Fatalf("%s: heard %q; want %q", what, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: heard %q; want %q", what, got, want)
			}
		}
	}

	v.Credential(ctx, "alice", "acme", []string{"read"})
	check("no grant", "lookup acme grant_not_found")
	v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "old", RefreshToken: "rt", Scopes: []string{"read"},
		Expiry: time.Now().Add(10 * time.Second)})
	v.Credential(ctx, "alice", "acme", []string{"read"})
	check("refreshed", "refresh acme ok", "lookup acme ok")
	v.Credential(ctx, "alice", "acme", []string{"read", "write"})
	check("narrow grant", "lookup acme scope_reauth_required")
	v.Save(ctx, "alice", "acme", vault.Token{AccessToken: "old", RefreshToken: "rt", Scopes: []string{"read"},
		Expiry: time.Now().Add(-time.Minute)})
	p.invalid.Store(true)
	v.Credential(ctx, "alice", "acme", []string{"read"})
	check("refused refresh", "refresh acme invalid_grant", "lookup acme grant_not_found")
}

// blockedStore holds audit writes until release closes, then refuses
// them.
type blockedStore struct {
	store.Store
	release chan struct{}
}

func (s blockedStore) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	<-s.release
	return errors.New("refused")
}

func TestAuditObserver(t *testing.T) {
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/v.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bs := blockedStore{Store: st, release: make(chan struct{})}
	a := vault.NewAuditor(bs, nil)
	ev := &events{}
	a.Observe(ev)
	// One batch in the blocked writer, a full queue behind it, and one
	// more record that must wait.
	const total = 512 + 8*512 + 1
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range total {
			a.Record(store.AuditRecord{Time: time.Now(), Subject: "alice", Plugin: "p", Tool: "t", Method: "GET", Host: "h"})
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev.mu.Lock()
		full := ev.full
		ev.mu.Unlock()
		if full > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no full queue heard; %d queued", a.Queued())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a.Queued() == 0 {
		t.Error("a full queue reports no records queued")
	}
	close(bs.release)
	<-done
	a.Close()
	if ev.lost != total {
		t.Errorf("%d records reported lost; want all %d", ev.lost, total)
	}
}
