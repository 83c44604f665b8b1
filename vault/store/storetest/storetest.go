// Package storetest is the conformance suite for store.Store: every backend's
// tests call Run, and RunShared where two handles can open one database, so
// that all backends behave the same way.
//
// Semantics the suite pins down beyond the interface's comments:
//   - times round-trip at microsecond precision (the suite only uses such
//     times), in any location, compared with time.Equal; zero stays zero;
//   - nil and empty Scopes and Secret are the same;
//   - ListGrants orders bytewise, as Go compares strings;
//   - a link or state is live while now is before ExpiresAt: TakeLink at
//     exactly ExpiresAt fails, and DeleteExpired at now removes it;
//   - audit records with equal times list in reverse order of appending;
//     AuditFilter.Since is inclusive; Limit 0 means 100 and larger limits are
//     honoured;
//   - UpdateGrant returns fn's error as is, with the stored grant; it refuses
//     an fn that changes the grant's Subject or Provider, and survives an fn
//     that panics;
//   - a client's nil SecretHash (public) and empty SecretHash stay apart, and
//     its Metadata comes back byte for byte, not re-encoded;
//   - codes, tokens and sessions are live while now is before ExpiresAt, like
//     links; an expired code is ErrNotFound even if used, and revokes nothing;
//   - RedeemAuthCode returns the code with UsedAt now and FamilyID set, and
//     passes mint the code so; a replay returns the stored code, of the
//     first redemption's family, and never calls mint; it refuses an empty
//     familyID and a nil mint; mint's error comes back unwrapped (==);
//   - a failed mint spends the code (it is used, of familyID, with no
//     tokens) and stores nothing it returned; a minted token of another
//     family, or whose hash is stored, changes nothing, the code included;
//   - of concurrent redemptions of one code, exactly one calls mint;
//   - PutAuthCode and PutTokens refuse a hash already stored;
//   - RotateRefresh returns the old token as stored afterwards: RotatedAt is
//     now after the first rotation and stays so on retries; a retry at
//     exactly RotatedAt+grace is a reuse (grace 0: any retry is); a token
//     rotated or revoked but unexpired survives DeleteExpired;
//   - of concurrent rotations of one token with grace 0, one wins, the next
//     is a reuse and revokes the family (the winner's successors included),
//     and the rest find the token revoked: ErrNotFound.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

// Run runs the whole suite. open must return a new, empty store each time
// it is called, and arrange its own cleanup with t.Cleanup; it is called
// from parallel subtests.
// testPing: an open store answers; a closed one says so.
func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	s.Close()
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping on a closed store: nil")
	}
}

func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, open(t))
		})
	}
	// With one handle, the shared cases still prove the store is safe for
	// many goroutines.
	for _, c := range sharedCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			c.run(t, s, s)
		})
	}
}

// RunShared runs the cases that matter across connections and processes
// (locking, single use, visibility) with two separate handles. open must
// return two stores opened independently on one new, empty database, and
// arrange their cleanup.
func RunShared(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	for _, c := range sharedCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, b := open(t)
			c.run(t, a, b)
		})
	}
}

var cases = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"Ping", testPing},
	{"GrantRoundTrip", testGrantRoundTrip},
	{"GrantNotFound", testGrantNotFound},
	{"GrantReplace", testGrantReplace},
	{"GrantList", testGrantList},
	{"GrantDelete", testGrantDelete},
	{"UpdateGrantMissing", testUpdateGrantMissing},
	{"UpdateGrantNoWrite", testUpdateGrantNoWrite},
	{"UpdateGrantWrite", testUpdateGrantWrite},
	{"UpdateGrantError", testUpdateGrantError},
	{"UpdateGrantKeyChange", testUpdateGrantKeyChange},
	{"UpdateGrantPanic", testUpdateGrantPanic},
	{"LinkTake", testLinkTake},
	{"LinkExpiry", testLinkExpiry},
	{"ConnectStateTake", testConnectStateTake},
	{"ConnectStateExpiry", testConnectStateExpiry},
	{"LinkStateSeparate", testSeparate},
	{"DeleteExpired", testDeleteExpired},
	{"AuditRoundTrip", testAuditRoundTrip},
	{"AuditOrder", testAuditOrder},
	{"AuditFilters", testAuditFilters},
	{"AuditLimit", testAuditLimit},
	{"ClientRoundTrip", testClientRoundTrip},
	{"ClientReplace", testClientReplace},
	{"CodeRedeem", testCodeRedeem},
	{"CodeReplay", testCodeReplay},
	{"CodeMint", testCodeMint},
	{"CodeMintFails", testCodeMintFails},
	{"CodeExpiry", testCodeExpiry},
	{"TokenRoundTrip", testTokenRoundTrip},
	{"TokenExpiry", testTokenExpiry},
	{"PutTokensAtomic", testPutTokensAtomic},
	{"Rotate", testRotate},
	{"RotateNotFound", testRotateNotFound},
	{"RotateFamilyMismatch", testRotateFamilyMismatch},
	{"RotateGrace", testRotateGrace},
	{"RotateReuse", testRotateReuse},
	{"RevokeFamily", testRevokeFamily},
	{"Sessions", testSessions},
	{"AuthSeparate", testAuthSeparate},
	{"DeleteExpiredAuth", testDeleteExpiredAuth},
}

var sharedCases = []struct {
	name string
	run  func(t *testing.T, a, b store.Store)
}{
	{"SharedVisibility", testSharedVisibility},
	{"SharedUpdateGrantExclusive", testUpdateGrantExclusive},
	{"SharedTakeLinkOnce", testTakeLinkOnce},
	{"SharedTakeConnectStateOnce", testTakeConnectStateOnce},
	{"SharedRedeemOnce", testRedeemOnce},
	{"SharedRotateOnce", testRotateOnce},
	{"SharedReuseDuringRotation", testReuseDuringRotation},
}

// t0 is the suite's clock: microsecond precision, so every backend can
// store it exactly.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC)

// elsewhere is a zone that is not UTC, to show the location does not matter.
var elsewhere = time.FixedZone("UTC+05:30", 5*3600+1800)

func newGrant(subject, provider string) store.Grant {
	return store.Grant{
		ID:          "g-" + subject + "-" + provider,
		Subject:     subject,
		Provider:    provider,
		AccountID:   "acct-" + subject,
		Scopes:      []string{"repo", "read:user", "with space", `q"uote,{brace}\`},
		KeyID:       "k1",
		Secret:      []byte{0, 1, 2, 0xfe, 0xff, 0, 'x'},
		ExpiresAt:   t0.Add(time.Hour).In(elsewhere),
		Status:      store.GrantActive,
		CreatedAt:   t0,
		UpdatedAt:   t0.Add(time.Second),
		RefreshedAt: t0.Add(2 * time.Second),
	}
}

func put(t *testing.T, s store.Store, gs ...store.Grant) {
	t.Helper()
	for _, g := range gs {
		if err := s.PutGrant(t.Context(), g); err != nil {
			t.Fatalf("PutGrant(%s, %s): %v", g.Subject, g.Provider, err)
		}
	}
}

func get(t *testing.T, s store.Store, subject, provider string) store.Grant {
	t.Helper()
	g, err := s.GetGrant(t.Context(), subject, provider)
	if err != nil {
		t.Fatalf("GetGrant(%s, %s): %v", subject, provider, err)
	}
	return g
}

// normal makes equal values DeepEqual: UTC times, and nil for empty slices.
func normal[T any](v T) T {
	rv := reflect.ValueOf(&v).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		switch x := f.Interface().(type) {
		case time.Time:
			if !x.IsZero() {
				f.Set(reflect.ValueOf(x.UTC()))
			}
		case []string:
			if len(x) == 0 {
				f.Set(reflect.Zero(f.Type()))
			}
		case []byte:
			if len(x) == 0 {
				f.Set(reflect.Zero(f.Type()))
			}
		}
	}
	return v
}

func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if g, w := normal(got), normal(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func notFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: err = %v, want store.ErrNotFound", what, err)
	}
}

func testGrantRoundTrip(t *testing.T, s store.Store) {
	full := newGrant("alice", "github")
	bare := store.Grant{ // zero optional times, no scopes, another status
		ID: "g-bare", Subject: "alice", Provider: "google", KeyID: "k2",
		Secret: []byte("sealed"), Status: store.GrantBroken,
		CreatedAt: t0.In(elsewhere), UpdatedAt: t0,
	}
	put(t, s, full, bare)
	same(t, "full grant", get(t, s, "alice", "github"), full)
	got := get(t, s, "alice", "google")
	same(t, "bare grant", got, bare)
	if !got.ExpiresAt.IsZero() || !got.RefreshedAt.IsZero() {
		t.Errorf("zero times came back as %v, %v", got.ExpiresAt, got.RefreshedAt)
	}
}

func testGrantNotFound(t *testing.T, s store.Store) {
	_, err := s.GetGrant(t.Context(), "nobody", "github")
	notFound(t, "GetGrant of a missing grant", err)
	put(t, s, newGrant("alice", "github"))
	_, err = s.GetGrant(t.Context(), "alice", "gitlab")
	notFound(t, "GetGrant at another provider", err)
	_, err = s.GetGrant(t.Context(), "Alice", "github")
	notFound(t, "GetGrant with another case", err)
}

func testGrantReplace(t *testing.T, s store.Store) {
	put(t, s, newGrant("alice", "github"))
	g := newGrant("alice", "github")
	g.ID = "g-new"
	g.Scopes = []string{"gist"}
	g.Secret = []byte("new secret")
	g.KeyID = "k2"
	g.AccountID = ""
	g.ExpiresAt = time.Time{}
	g.RefreshedAt = time.Time{}
	g.Status = store.GrantBroken
	g.CreatedAt = t0.Add(time.Minute)
	put(t, s, g)
	same(t, "replaced grant", get(t, s, "alice", "github"), g)
	all, err := s.ListGrants(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Errorf("after replacing, %d grants are listed, want 1", len(all))
	}
}

func testGrantList(t *testing.T, s store.Store) {
	// Bytewise order: upper case before lower, "bob" before "bob-2".
	want := []store.Grant{
		newGrant("Bob", "github"),
		newGrant("alice", "Google"),
		newGrant("alice", "github"),
		newGrant("alice", "gitlab"),
		newGrant("bob", "github"),
		newGrant("bob-2", "github"),
	}
	for _, i := range []int{3, 5, 0, 2, 4, 1} { // not in order
		put(t, s, want[i])
	}
	list := func(subject string) []store.Grant {
		t.Helper()
		gs, err := s.ListGrants(t.Context(), subject)
		if err != nil {
			t.Fatalf("ListGrants(%q): %v", subject, err)
		}
		return gs
	}
	sameList(t, "all grants", list(""), want)
	sameList(t, "alice's grants", list("alice"), want[1:4])
	if gs := list("carol"); len(gs) != 0 {
		t.Errorf("ListGrants(carol) = %d grants, want none", len(gs))
	}
}

func sameList(t *testing.T, what string, got, want []store.Grant) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d grants, want %d", what, len(got), len(want))
		return
	}
	for i := range got {
		same(t, fmt.Sprintf("%s[%d]", what, i), got[i], want[i])
	}
}

func testGrantDelete(t *testing.T, s store.Store) {
	put(t, s, newGrant("alice", "github"), newGrant("alice", "gitlab"), newGrant("bob", "github"))
	if err := s.DeleteGrant(t.Context(), "alice", "github"); err != nil {
		t.Fatalf("DeleteGrant: %v", err)
	}
	_, err := s.GetGrant(t.Context(), "alice", "github")
	notFound(t, "GetGrant after DeleteGrant", err)
	notFound(t, "DeleteGrant again", s.DeleteGrant(t.Context(), "alice", "github"))
	notFound(t, "DeleteGrant of a missing grant", s.DeleteGrant(t.Context(), "carol", "github"))
	get(t, s, "alice", "gitlab")
	get(t, s, "bob", "github")
}

func testUpdateGrantMissing(t *testing.T, s store.Store) {
	called := false
	_, err := s.UpdateGrant(t.Context(), "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
		called = true
		return g, true, nil
	})
	notFound(t, "UpdateGrant of a missing grant", err)
	if called {
		t.Error("UpdateGrant called fn for a missing grant")
	}
	if _, err := s.GetGrant(t.Context(), "alice", "github"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateGrant of a missing grant created it (GetGrant: %v)", err)
	}
}

func testUpdateGrantNoWrite(t *testing.T, s store.Store) {
	orig := newGrant("alice", "github")
	put(t, s, orig)
	got, err := s.UpdateGrant(t.Context(), "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
		same(t, "fn's grant", g, orig)
		g.Secret = []byte("not written")
		return g, false, nil
	})
	if err != nil {
		t.Fatalf("UpdateGrant: %v", err)
	}
	same(t, "UpdateGrant's result", got, orig)
	same(t, "stored grant", get(t, s, "alice", "github"), orig)
}

func testUpdateGrantWrite(t *testing.T, s store.Store) {
	put(t, s, newGrant("alice", "github"), newGrant("alice", "gitlab"))
	var want store.Grant
	got, err := s.UpdateGrant(t.Context(), "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
		g.Secret = []byte("refreshed")
		g.KeyID = "k2"
		g.Scopes = nil
		g.AccountID = "acct-2"
		g.ExpiresAt = t0.Add(2 * time.Hour)
		g.RefreshedAt = t0.Add(time.Hour).In(elsewhere)
		g.UpdatedAt = t0.Add(time.Hour)
		g.Status = store.GrantBroken
		want = g
		return g, true, nil
	})
	if err != nil {
		t.Fatalf("UpdateGrant: %v", err)
	}
	same(t, "UpdateGrant's result", got, want)
	same(t, "stored grant", get(t, s, "alice", "github"), want)
	same(t, "other grant", get(t, s, "alice", "gitlab"), newGrant("alice", "gitlab"))
}

func testUpdateGrantError(t *testing.T, s store.Store) {
	orig := newGrant("alice", "github")
	put(t, s, orig)
	boom := errors.New("boom")
	got, err := s.UpdateGrant(t.Context(), "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
		g.Secret = []byte("must not be written")
		return g, true, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("UpdateGrant returned %v, want fn's error", err)
	}
	// The grant as it is when the lock is released: the one fn was given.
	same(t, "UpdateGrant's result", got, orig)
	same(t, "stored grant", get(t, s, "alice", "github"), orig)
	mustUpdate(t, s, "alice", "github") // the lock was released
}

// mustUpdate writes the grant back unchanged, failing if it cannot.
func mustUpdate(t *testing.T, s store.Store, subject, provider string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := s.UpdateGrant(ctx, subject, provider, func(g store.Grant) (store.Grant, bool, error) {
		return g, true, nil
	})
	if err != nil {
		t.Fatalf("UpdateGrant afterwards: %v", err)
	}
}

func testUpdateGrantKeyChange(t *testing.T, s store.Store) {
	orig := newGrant("alice", "github")
	put(t, s, orig)
	for _, change := range []func(*store.Grant){
		func(g *store.Grant) { g.Subject = "bob" },
		func(g *store.Grant) { g.Provider = "gitlab" },
	} {
		_, err := s.UpdateGrant(t.Context(), "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
			change(&g)
			return g, true, nil
		})
		if err == nil {
			t.Error("UpdateGrant accepted a change of subject or provider")
		}
	}
	same(t, "stored grant", get(t, s, "alice", "github"), orig)
	if all, err := s.ListGrants(t.Context(), ""); err != nil || len(all) != 1 {
		t.Errorf("ListGrants = %d grants, %v; want 1", len(all), err)
	}
}

func testUpdateGrantPanic(t *testing.T, s store.Store) {
	orig := newGrant("alice", "github")
	put(t, s, orig)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("fn's panic did not reach the caller")
			}
		}()
		s.UpdateGrant(t.Context(), "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
			panic("fn panics")
		})
	}()
	same(t, "stored grant", get(t, s, "alice", "github"), orig)
	mustUpdate(t, s, "alice", "github")
}

// testUpdateGrantExclusive has goroutines on both handles increment a
// counter kept in AccountID, sleeping while they hold the lock; a lost
// update shows as a final count below the number of goroutines.
func testUpdateGrantExclusive(t *testing.T, a, b store.Store) {
	g := newGrant("alice", "github")
	g.AccountID = "0"
	put(t, a, g)
	const n = 20
	var inside atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			_, err := s.UpdateGrant(t.Context(), "alice", "github", func(g store.Grant) (store.Grant, bool, error) {
				if k := inside.Add(1); k != 1 {
					t.Errorf("%d goroutines hold the lock at once", k)
				}
				defer inside.Add(-1)
				c, err := strconv.Atoi(g.AccountID)
				if err != nil {
					return g, false, err
				}
				time.Sleep(time.Millisecond)
				g.AccountID = strconv.Itoa(c + 1)
				return g, true, nil
			})
			if err != nil {
				t.Errorf("UpdateGrant: %v", err)
			}
		})
	}
	wg.Wait()
	for _, s := range []store.Store{a, b} {
		if got := get(t, s, "alice", "github").AccountID; got != strconv.Itoa(n) {
			t.Errorf("counter = %s after %d increments", got, n)
		}
	}
}

func testSharedVisibility(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	g := newGrant("alice", "github")
	put(t, a, g)
	same(t, "grant from the other handle", get(t, b, "alice", "github"), g)
	if err := b.DeleteGrant(ctx, "alice", "github"); err != nil {
		t.Fatal(err)
	}
	_, err := a.GetGrant(ctx, "alice", "github")
	notFound(t, "GetGrant after the other handle deleted", err)

	l := newLink("visible")
	if err := a.PutLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	got, err := b.TakeLink(ctx, l.TokenHash, t0)
	if err != nil {
		t.Fatalf("TakeLink from the other handle: %v", err)
	}
	same(t, "link from the other handle", got, l)

	if err := b.AppendAudit(ctx, []store.AuditRecord{newRecord(0)}); err != nil {
		t.Fatal(err)
	}
	if rs, err := a.ListAudit(ctx, store.AuditFilter{}); err != nil || len(rs) != 1 {
		t.Errorf("ListAudit from the other handle = %d records, %v; want 1", len(rs), err)
	}
}

func newLink(token string) store.Link {
	return store.Link{
		TokenHash: []byte("hash\x00" + token),
		Subject:   "alice",
		Provider:  "github",
		Scopes:    []string{"repo", "gist"},
		CreatedAt: t0.Add(-time.Minute),
		ExpiresAt: t0.Add(10 * time.Minute).In(elsewhere),
	}
}

func newState(token string) store.ConnectState {
	return store.ConnectState{
		StateHash:   []byte("state\x00" + token),
		BrowserHash: []byte{0xff, 0, 1},
		Subject:     "alice",
		Provider:    "github",
		Scopes:      []string{"repo"},
		Verifier:    "verifier-" + token,
		CreatedAt:   t0.Add(-time.Minute),
		ExpiresAt:   t0.Add(10 * time.Minute),
	}
}

// The link and state cases share their shape; ops adapts each kind.
type singleUse[T any] struct {
	make func(token string) T
	put  func(context.Context, store.Store, T) error
	take func(context.Context, store.Store, []byte, time.Time) (T, error)
	key  func(T) []byte
}

var links = singleUse[store.Link]{
	make: newLink,
	put:  func(ctx context.Context, s store.Store, l store.Link) error { return s.PutLink(ctx, l) },
	take: func(ctx context.Context, s store.Store, h []byte, now time.Time) (store.Link, error) {
		return s.TakeLink(ctx, h, now)
	},
	key: func(l store.Link) []byte { return l.TokenHash },
}

var states = singleUse[store.ConnectState]{
	make: newState,
	put: func(ctx context.Context, s store.Store, st store.ConnectState) error {
		return s.PutConnectState(ctx, st)
	},
	take: func(ctx context.Context, s store.Store, h []byte, now time.Time) (store.ConnectState, error) {
		return s.TakeConnectState(ctx, h, now)
	},
	key: func(st store.ConnectState) []byte { return st.StateHash },
}

func testLinkTake(t *testing.T, s store.Store)         { testTake(t, s, links) }
func testConnectStateTake(t *testing.T, s store.Store) { testTake(t, s, states) }
func testLinkExpiry(t *testing.T, s store.Store)       { testExpiry(t, s, links) }
func testConnectStateExpiry(t *testing.T, s store.Store) {
	testExpiry(t, s, states)
}
func testTakeLinkOnce(t *testing.T, a, b store.Store)         { testTakeOnce(t, a, b, links) }
func testTakeConnectStateOnce(t *testing.T, a, b store.Store) { testTakeOnce(t, a, b, states) }

func testTake[T any](t *testing.T, s store.Store, k singleUse[T]) {
	ctx := t.Context()
	one, two := k.make("one"), k.make("two")
	for _, v := range []T{one, two} {
		if err := k.put(ctx, s, v); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	got, err := k.take(ctx, s, k.key(one), t0)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	same(t, "taken", got, one)
	_, err = k.take(ctx, s, k.key(one), t0)
	notFound(t, "second take", err)
	_, err = k.take(ctx, s, []byte("never stored"), t0)
	notFound(t, "take of an unknown hash", err)
	_, err = k.take(ctx, s, k.key(one)[:len(k.key(one))-1], t0)
	notFound(t, "take of a prefix of a hash", err)
	got, err = k.take(ctx, s, k.key(two), t0)
	if err != nil {
		t.Fatalf("take of the other one: %v", err)
	}
	same(t, "taken", got, two)
}

// testSeparate shows links and states are apart: neither can be taken as
// the other, even with the same hash.
func testSeparate(t *testing.T, s store.Store) {
	ctx := t.Context()
	l, st := newLink("x"), newState("x")
	st.StateHash = l.TokenHash
	if err := s.PutLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	_, err := s.TakeConnectState(ctx, l.TokenHash, t0)
	notFound(t, "TakeConnectState of a link's hash", err)
	if err := s.PutConnectState(ctx, st); err != nil {
		t.Fatalf("PutConnectState with a link's hash: %v", err)
	}
	if _, err := s.TakeLink(ctx, l.TokenHash, t0); err != nil {
		t.Errorf("TakeLink: %v", err)
	}
	_, err = s.TakeLink(ctx, l.TokenHash, t0)
	notFound(t, "TakeLink of a state's hash", err)
}

func testExpiry[T any](t *testing.T, s store.Store, k singleUse[T]) {
	ctx := t.Context()
	v := k.make("expiring")
	if err := k.put(ctx, s, v); err != nil {
		t.Fatal(err)
	}
	expires := t0.Add(10 * time.Minute)
	for _, now := range []time.Time{expires, expires.Add(time.Microsecond), expires.Add(time.Hour)} {
		_, err := k.take(ctx, s, k.key(v), now)
		notFound(t, fmt.Sprintf("take at expiry+%v", now.Sub(expires)), err)
	}
	// Refusing an expired take does not consume it for an earlier clock.
	if _, err := k.take(ctx, s, k.key(v), expires.Add(-time.Microsecond)); err != nil {
		t.Errorf("take just before expiry: %v", err)
	}
}

// testTakeOnce races takes of one link on both handles: exactly one wins.
func testTakeOnce[T any](t *testing.T, a, b store.Store, k singleUse[T]) {
	v := k.make("raced")
	if err := k.put(t.Context(), a, v); err != nil {
		t.Fatal(err)
	}
	const n = 10
	var won, lost atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			_, err := k.take(t.Context(), s, k.key(v), t0)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, store.ErrNotFound):
				lost.Add(1)
			default:
				t.Errorf("take: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || lost.Load() != n-1 {
		t.Errorf("%d takes won and %d lost, want 1 and %d", won.Load(), lost.Load(), n-1)
	}
}

func testDeleteExpired(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := t0.Add(time.Hour)
	at := func(token string, expires time.Time) (store.Link, store.ConnectState) {
		l, st := newLink(token), newState(token)
		l.ExpiresAt, st.ExpiresAt = expires, expires
		if err := s.PutLink(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := s.PutConnectState(ctx, st); err != nil {
			t.Fatal(err)
		}
		return l, st
	}
	oldL, oldS := at("old", now.Add(-time.Minute))
	edgeL, edgeS := at("edge", now)
	liveL, liveS := at("live", now.Add(time.Microsecond))
	if err := s.DeleteExpired(ctx, now); err != nil {
		t.Fatalf("DeleteExpired: %v", err)
	}
	if err := s.DeleteExpired(ctx, now); err != nil {
		t.Fatalf("DeleteExpired with nothing to delete: %v", err)
	}
	// Take with an old clock: only a deleted row can be missing.
	before := t0.Add(-time.Hour)
	for _, h := range [][]byte{oldL.TokenHash, edgeL.TokenHash} {
		_, err := s.TakeLink(ctx, h, before)
		notFound(t, "TakeLink of a deleted link", err)
	}
	for _, h := range [][]byte{oldS.StateHash, edgeS.StateHash} {
		_, err := s.TakeConnectState(ctx, h, before)
		notFound(t, "TakeConnectState of a deleted state", err)
	}
	if _, err := s.TakeLink(ctx, liveL.TokenHash, before); err != nil {
		t.Errorf("DeleteExpired removed a live link: %v", err)
	}
	if _, err := s.TakeConnectState(ctx, liveS.StateHash, before); err != nil {
		t.Errorf("DeleteExpired removed a live state: %v", err)
	}
}

func newRecord(i int) store.AuditRecord {
	return store.AuditRecord{
		Time:        t0.Add(time.Duration(i) * time.Second),
		Subject:     "alice",
		Agent:       "agent",
		ParentAgent: "parent",
		Plugin:      "notes",
		Tool:        "list",
		Provider:    "github",
		Method:      "GET",
		Host:        "api.github.com",
		Path:        "/user/repos",
		Status:      200,
		Duration:    1234567891 * time.Nanosecond,
	}
}

func listAudit(t *testing.T, s store.Store, f store.AuditFilter) []store.AuditRecord {
	t.Helper()
	rs, err := s.ListAudit(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	return rs
}

func appendAudit(t *testing.T, s store.Store, rs ...store.AuditRecord) {
	t.Helper()
	if err := s.AppendAudit(t.Context(), rs); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
}

func testAuditRoundTrip(t *testing.T, s store.Store) {
	if err := s.AppendAudit(t.Context(), nil); err != nil {
		t.Fatalf("AppendAudit of nothing: %v", err)
	}
	if rs := listAudit(t, s, store.AuditFilter{}); len(rs) != 0 {
		t.Fatalf("empty log lists %d records", len(rs))
	}
	full := newRecord(0)
	full.Time = full.Time.In(elsewhere)
	full.ID = 999 // the store assigns IDs
	bare := store.AuditRecord{Time: t0.Add(time.Second), Subject: "bob", ErrorCode: "denied"}
	appendAudit(t, s, full, bare)
	rs := listAudit(t, s, store.AuditFilter{})
	if len(rs) != 2 {
		t.Fatalf("listed %d records, want 2", len(rs))
	}
	if rs[0].ID == 0 || rs[1].ID == 0 || rs[0].ID <= rs[1].ID {
		t.Errorf("IDs %d, %d: want nonzero, later appends higher", rs[0].ID, rs[1].ID)
	}
	full.ID, bare.ID = rs[1].ID, rs[0].ID
	same(t, "newest record", rs[0], bare)
	same(t, "oldest record", rs[1], full)
}

func testAuditOrder(t *testing.T, s store.Store) {
	// Order is by time, then by appending for equal times.
	r := func(sec int, tool string) store.AuditRecord {
		rec := newRecord(sec)
		rec.Tool = tool
		return rec
	}
	appendAudit(t, s, r(2, "a"), r(0, "b"), r(1, "c"))
	appendAudit(t, s, r(1, "d"), r(3, "e"))
	var tools []string
	for _, rec := range listAudit(t, s, store.AuditFilter{}) {
		tools = append(tools, rec.Tool)
	}
	if want := []string{"e", "a", "d", "c", "b"}; !slices.Equal(tools, want) {
		t.Errorf("order %v, want %v", tools, want)
	}
}

func testAuditFilters(t *testing.T, s store.Store) {
	var all []store.AuditRecord
	for i, k := range []struct{ subject, plugin, provider string }{
		{"alice", "notes", "github"},
		{"alice", "notes", "google"},
		{"alice", "mail", "google"},
		{"bob", "notes", "github"},
		{"bob", "mail", ""},
		{"Alice", "Notes", "GitHub"},
	} {
		rec := newRecord(i)
		rec.Subject, rec.Plugin, rec.Provider = k.subject, k.plugin, k.provider
		all = append(all, rec)
	}
	appendAudit(t, s, all...)
	for _, c := range []struct {
		f    store.AuditFilter
		want []int // indexes into all, newest first
	}{
		{store.AuditFilter{}, []int{5, 4, 3, 2, 1, 0}},
		{store.AuditFilter{Subject: "alice"}, []int{2, 1, 0}},
		{store.AuditFilter{Plugin: "notes"}, []int{3, 1, 0}},
		{store.AuditFilter{Provider: "google"}, []int{2, 1}},
		{store.AuditFilter{Since: all[3].Time}, []int{5, 4, 3}},
		{store.AuditFilter{Since: all[3].Time.Add(time.Microsecond).In(elsewhere)}, []int{5, 4}},
		{store.AuditFilter{Subject: "bob", Plugin: "notes"}, []int{3}},
		{store.AuditFilter{Subject: "alice", Provider: "google", Since: all[2].Time}, []int{2}},
		{store.AuditFilter{Subject: "alice", Provider: "google", Limit: 1}, []int{2}},
		{store.AuditFilter{Subject: "carol"}, nil},
		{store.AuditFilter{Since: all[5].Time.Add(time.Second)}, nil},
	} {
		got := listAudit(t, s, c.f)
		var gotIdx []int
		for _, rec := range got {
			gotIdx = append(gotIdx, slices.IndexFunc(all, func(r store.AuditRecord) bool {
				return r.Time.Equal(rec.Time)
			}))
		}
		if !slices.Equal(gotIdx, c.want) {
			t.Errorf("ListAudit(%+v) = records %v, want %v", c.f, gotIdx, c.want)
		}
	}
}

func testAuditLimit(t *testing.T, s store.Store) {
	const n = 105
	rs := make([]store.AuditRecord, n)
	for i := range rs {
		rs[i] = newRecord(i)
	}
	appendAudit(t, s, rs...)
	for _, c := range []struct{ limit, want int }{{0, 100}, {3, 3}, {100, 100}, {n + 10, n}} {
		got := listAudit(t, s, store.AuditFilter{Limit: c.limit})
		if len(got) != c.want {
			t.Errorf("Limit %d: %d records, want %d", c.limit, len(got), c.want)
			continue
		}
		if !got[0].Time.Equal(rs[n-1].Time) || !got[c.want-1].Time.Equal(rs[n-c.want].Time) {
			t.Errorf("Limit %d: not the newest records (%v .. %v)", c.limit, got[0].Time, got[c.want-1].Time)
		}
	}
}
