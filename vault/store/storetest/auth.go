package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

// The store.AuthStore cases.

const resource = "https://alterhost.example/mcp"

func newClient(id string) store.Client {
	return store.Client{
		ID:         id,
		SecretHash: []byte{0, 's', 0xfe, 0xff, 0},
		// Not normalized JSON: spacing, key order, an escape and a
		// trailing newline must all survive.
		Metadata:  []byte(`{"redirect_uris": ["http://127.0.0.1:33418/cb"],  "client_name":"Z\u00e9d", "a":1}` + "\n"),
		CreatedAt: t0.In(elsewhere),
	}
}

func newCode(token string) store.AuthCode {
	return store.AuthCode{
		CodeHash:      []byte("code\x00" + token),
		ClientID:      "client-1",
		Subject:       "alice",
		RedirectURI:   "http://127.0.0.1:33418/callback?x=1",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Resource:      resource,
		Scopes:        []string{"mcp", `q"uote,{brace}\`},
		CreatedAt:     t0.Add(-time.Minute),
		ExpiresAt:     t0.Add(time.Minute).In(elsewhere),
	}
}

// newToken is a token of family; access tokens live an hour, refresh
// tokens a month.
func newToken(kind store.TokenKind, family, token string) store.Token {
	life := time.Hour
	if kind == store.RefreshToken {
		life = 30 * 24 * time.Hour
	}
	return store.Token{
		Hash:      []byte(string(kind) + "\x00" + family + "\x00" + token),
		Kind:      kind,
		FamilyID:  family,
		ClientID:  "client-1",
		Subject:   "alice",
		Resource:  resource,
		Scopes:    []string{"mcp", "with space"},
		CreatedAt: t0.Add(-time.Minute),
		ExpiresAt: t0.Add(life).In(elsewhere),
	}
}

func newSession(token string) store.Session {
	return store.Session{
		Hash:      []byte("session\x00" + token),
		Subject:   "alice",
		Name:      "alice@example.com ☃",
		CSRF:      "csrf-" + token,
		CreatedAt: t0.Add(-time.Minute),
		ExpiresAt: t0.Add(time.Hour).In(elsewhere),
	}
}

func putClients(t *testing.T, s store.Store, cs ...store.Client) {
	t.Helper()
	for _, c := range cs {
		if err := s.PutClient(t.Context(), c); err != nil {
			t.Fatalf("PutClient(%s): %v", c.ID, err)
		}
	}
}

func getClient(t *testing.T, s store.Store, id string) store.Client {
	t.Helper()
	c, err := s.GetClient(t.Context(), id)
	if err != nil {
		t.Fatalf("GetClient(%s): %v", id, err)
	}
	return c
}

func putCodes(t *testing.T, s store.Store, cs ...store.AuthCode) {
	t.Helper()
	for _, c := range cs {
		if err := s.PutAuthCode(t.Context(), c); err != nil {
			t.Fatalf("PutAuthCode(%q): %v", c.CodeHash, err)
		}
	}
}

func putTokens(t *testing.T, s store.Store, ts ...store.Token) {
	t.Helper()
	if err := s.PutTokens(t.Context(), ts...); err != nil {
		t.Fatalf("PutTokens: %v", err)
	}
}

// live checks that each token is valid at t0, on each of stores.
func live(t *testing.T, what string, ts []store.Token, stores ...store.Store) {
	t.Helper()
	for _, s := range stores {
		for _, tok := range ts {
			if _, err := s.GetToken(t.Context(), tok.Hash, t0); err != nil {
				t.Errorf("%s: GetToken(%q): %v, want the token", what, tok.Hash, err)
			}
		}
	}
}

// dead checks that each token is revoked, expired or missing at t0.
func dead(t *testing.T, what string, ts []store.Token, stores ...store.Store) {
	t.Helper()
	for _, s := range stores {
		for _, tok := range ts {
			_, err := s.GetToken(t.Context(), tok.Hash, t0)
			notFound(t, fmt.Sprintf("%s: GetToken(%q)", what, tok.Hash), err)
		}
	}
}

func reused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrReused) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: err = %v, want store.ErrReused", what, err)
	}
}

// otherError checks err is an error, but neither ErrNotFound nor
// ErrReused: a refused call, not an answer about the credential.
func otherError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrReused) {
		t.Errorf("%s: err = %v, want another error", what, err)
	}
}

func testClientRoundTrip(t *testing.T, s store.Store) {
	confidential := newClient("c-confidential")
	public := newClient("c-public")
	public.SecretHash = nil
	empty := newClient("c-empty")
	empty.SecretHash = []byte{}
	cimd := newClient("https://app.example/oauth/client.json")
	cimd.SecretHash = nil
	cimd.ExpiresAt = t0.Add(time.Hour).In(elsewhere)
	putClients(t, s, confidential, public, empty, cimd)

	for _, want := range []store.Client{confidential, public, empty, cimd} {
		got := getClient(t, s, want.ID)
		same(t, want.ID, got, want) // Metadata byte for byte
		if (got.SecretHash == nil) != (want.SecretHash == nil) {
			t.Errorf("%s: SecretHash %#v, want %#v: nil and empty are not the same", want.ID, got.SecretHash, want.SecretHash)
		}
	}
	if got := getClient(t, s, confidential.ID); !got.ExpiresAt.IsZero() {
		t.Errorf("zero ExpiresAt came back as %v", got.ExpiresAt)
	}
	_, err := s.GetClient(t.Context(), "c-missing")
	notFound(t, "GetClient of a missing client", err)
	_, err = s.GetClient(t.Context(), "HTTPS://app.example/oauth/client.json")
	notFound(t, "GetClient with another case", err)
}

func testClientReplace(t *testing.T, s store.Store) {
	c := newClient("https://app.example/client.json")
	c.ExpiresAt = t0.Add(time.Hour)
	putClients(t, s, c, newClient("other"))
	// Every column is replaced: to a public, registered client...
	c2 := store.Client{ID: c.ID, Metadata: []byte(`{}`), CreatedAt: t0.Add(time.Minute)}
	putClients(t, s, c2)
	got := getClient(t, s, c.ID)
	same(t, "replaced client", got, c2)
	if got.SecretHash != nil || !got.ExpiresAt.IsZero() {
		t.Errorf("replaced client kept SecretHash %v or ExpiresAt %v", got.SecretHash, got.ExpiresAt)
	}
	// ...and back.
	putClients(t, s, c)
	same(t, "client replaced again", getClient(t, s, c.ID), c)
	same(t, "other client", getClient(t, s, "other"), newClient("other"))

	// Instances that fetch one document at once each store it: none fails,
	// and one of them is what stays.
	var wg sync.WaitGroup
	puts := make([]store.Client, 8)
	for i := range puts {
		puts[i] = c
		puts[i].Metadata = []byte(fmt.Sprintf(`{"n":%d}`, i))
		puts[i].ExpiresAt = t0.Add(time.Duration(i+1) * time.Minute)
		wg.Go(func() {
			if err := s.PutClient(t.Context(), puts[i]); err != nil {
				t.Errorf("concurrent PutClient %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got = getClient(t, s, c.ID)
	if !slices.ContainsFunc(puts, func(p store.Client) bool {
		return string(p.Metadata) == string(got.Metadata) && p.ExpiresAt.Equal(got.ExpiresAt)
	}) {
		t.Errorf("after concurrent puts: %s expiring %v, which none of them stored", got.Metadata, got.ExpiresAt)
	}
}

// noTokens is a mint that issues nothing.
func noTokens(store.AuthCode) ([]store.Token, error) { return nil, nil }

// issuing is a mint that issues ts.
func issuing(ts ...store.Token) func(store.AuthCode) ([]store.Token, error) {
	return func(store.AuthCode) ([]store.Token, error) { return ts, nil }
}

// neverMint is a mint for redemptions that must not reach it.
func neverMint(t *testing.T, what string) func(store.AuthCode) ([]store.Token, error) {
	return func(store.AuthCode) ([]store.Token, error) {
		t.Errorf("%s: mint was called", what)
		return nil, errors.New("mint must not be called")
	}
}

func testCodeRedeem(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, other := newCode("one"), newCode("two")
	putCodes(t, s, c, other)
	dup := c
	dup.ClientID = "client-2"
	otherError(t, "PutAuthCode of a stored hash", s.PutAuthCode(ctx, dup))
	_, err := s.RedeemAuthCode(ctx, c.CodeHash, "", t0, neverMint(t, "empty family"))
	otherError(t, "RedeemAuthCode with an empty family", err)
	_, err = s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", t0, nil)
	otherError(t, "RedeemAuthCode without mint", err)

	want := c
	want.UsedAt, want.FamilyID = t0, "fam-1"
	calls := 0
	got, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", t0.In(elsewhere), func(code store.AuthCode) ([]store.Token, error) {
		calls++
		same(t, "code passed to mint", code, want) // as it will be stored
		return nil, nil
	})
	if err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	if calls != 1 {
		t.Errorf("mint called %d times, want once", calls)
	}
	same(t, "redeemed code", got, want)

	_, err = s.RedeemAuthCode(ctx, []byte("never stored"), "fam-x", t0, neverMint(t, "unknown hash"))
	notFound(t, "RedeemAuthCode of an unknown hash", err)
	_, err = s.RedeemAuthCode(ctx, other.CodeHash[:len(other.CodeHash)-1], "fam-x", t0, neverMint(t, "prefix"))
	notFound(t, "RedeemAuthCode of a prefix of a hash", err)
	got, err = s.RedeemAuthCode(ctx, other.CodeHash, "fam-2", t0.Add(time.Second), noTokens)
	if err != nil {
		t.Fatalf("RedeemAuthCode of the other code: %v", err)
	}
	if got.FamilyID != "fam-2" || !got.UsedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("other code: family %q used at %v", got.FamilyID, got.UsedAt)
	}
}

// testCodeReplay: a replay revokes what the first redemption minted, and
// nothing else.
func testCodeReplay(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := newCode("replayed")
	putCodes(t, s, c)
	family := []store.Token{
		newToken(store.AccessToken, "fam-1", "a"),
		newToken(store.RefreshToken, "fam-1", "r"),
	}
	if _, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", t0, issuing(family...)); err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	live(t, "the minted tokens", family, s)
	stranger := newToken(store.AccessToken, "fam-2", "a2")
	putTokens(t, s, stranger)

	want := c
	want.UsedAt, want.FamilyID = t0, "fam-1" // the first redemption's
	for i := range 2 {
		got, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-3", t0.Add(time.Second), neverMint(t, "replay"))
		reused(t, fmt.Sprintf("replay %d", i+1), err)
		same(t, "replayed code", got, want)
	}
	dead(t, "the replayed code's family", family, s)
	live(t, "another family", []store.Token{stranger}, s)
	_, err := s.RotateRefresh(ctx, family[1].Hash, t0, 0, nil)
	notFound(t, "RotateRefresh in a revoked family", err)
}

// testCodeMint: the tokens mint returns are stored with the redemption,
// all of them or, with the code left unused, none.
func testCodeMint(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := newCode("minted")
	putCodes(t, s, c)
	taken := newToken(store.AccessToken, "fam-0", "taken")
	putTokens(t, s, taken)
	access := newToken(store.AccessToken, "fam-1", "a")
	refresh := newToken(store.RefreshToken, "fam-1", "r")
	stray := newToken(store.RefreshToken, "fam-2", "r")

	// A token of another family: refused, nothing changes.
	_, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", t0, issuing(access, stray))
	otherError(t, "RedeemAuthCode minting another family's token", err)
	dead(t, "tokens of a refused redemption", []store.Token{access, stray}, s)
	// A hash already stored: nothing is stored.
	dupe := taken
	dupe.FamilyID = "fam-1"
	_, err = s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", t0, issuing(access, dupe))
	otherError(t, "RedeemAuthCode minting a stored hash", err)
	dead(t, "tokens of a failed redemption", []store.Token{access}, s)
	live(t, "the token whose hash was minted again", []store.Token{taken}, s)

	// Both left the code unused.
	got, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", t0, issuing(access, refresh))
	if err != nil {
		t.Fatalf("RedeemAuthCode after refused mints: %v", err)
	}
	if got.FamilyID != "fam-1" || !got.UsedAt.Equal(t0) {
		t.Errorf("redeemed code: family %q used at %v", got.FamilyID, got.UsedAt)
	}
	for _, want := range []store.Token{access, refresh} {
		tok, err := s.GetToken(ctx, want.Hash, t0)
		if err != nil {
			t.Fatalf("GetToken of a minted token: %v", err)
		}
		same(t, "minted token", tok, want)
	}
	_, err = s.RotateRefresh(ctx, refresh.Hash, t0, 0, []store.Token{newToken(store.RefreshToken, "fam-1", "r2")})
	if err != nil {
		t.Errorf("RotateRefresh of a minted refresh token: %v", err)
	}
}

// testCodeMintFails: a mint error spends the code, stores none of what
// mint returned, and comes back as is; presenting the code again is a
// replay.
func testCodeMintFails(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := newCode("failing")
	putCodes(t, s, c)
	tok := newToken(store.AccessToken, "fam-1", "a")
	refused := errors.New("code_verifier does not match")
	got, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", t0, func(store.AuthCode) ([]store.Token, error) {
		return []store.Token{tok}, refused
	})
	if err != refused {
		t.Fatalf("RedeemAuthCode with a failing mint: err = %v, want mint's error unwrapped", err)
	}
	want := c
	want.UsedAt, want.FamilyID = t0, "fam-1"
	same(t, "code of a failed redemption", got, want)
	dead(t, "tokens of a failed mint", []store.Token{tok}, s)

	// Spent: the right verifier cannot follow the wrong one.
	got, err = s.RedeemAuthCode(ctx, c.CodeHash, "fam-2", t0.Add(time.Second), neverMint(t, "after a failed mint"))
	reused(t, "redemption after a failed mint", err)
	same(t, "code replayed after a failed mint", got, want)
	// Each replay revokes the family the failed redemption named, like any
	// other, whatever was put in it since.
	putTokens(t, s, tok)
	_, err = s.RedeemAuthCode(ctx, c.CodeHash, "fam-3", t0.Add(time.Second), neverMint(t, "second replay"))
	reused(t, "second replay after a failed mint", err)
	dead(t, "family replayed after a failed mint", []store.Token{tok}, s)
}

func testCodeExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := newCode("expiring")
	putCodes(t, s, c)
	expires := c.ExpiresAt
	for _, now := range []time.Time{expires, expires.Add(time.Microsecond), expires.Add(time.Hour)} {
		what := fmt.Sprintf("RedeemAuthCode at expiry+%v", now.Sub(expires))
		_, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", now, neverMint(t, what))
		notFound(t, what, err)
	}
	// Refusing an expired code does not consume it for an earlier clock.
	tok := newToken(store.AccessToken, "fam-1", "a")
	if _, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-1", expires.Add(-time.Microsecond), issuing(tok)); err != nil {
		t.Fatalf("RedeemAuthCode just before expiry: %v", err)
	}
	// Replayed once expired, a used code is gone like any other: nothing
	// is revoked.
	_, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-2", expires, neverMint(t, "replay of an expired code"))
	notFound(t, "replay of an expired code", err)
	live(t, "family of an expired code", []store.Token{tok}, s)
}

func testTokenRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.PutTokens(ctx); err != nil {
		t.Fatalf("PutTokens of nothing: %v", err)
	}
	access := newToken(store.AccessToken, "fam", "a")
	refresh := newToken(store.RefreshToken, "fam", "r")
	refresh.Scopes = nil
	refresh.Resource = ""
	refresh.RotatedAt = t0.Add(-time.Second).In(elsewhere)
	revoked := newToken(store.RefreshToken, "fam", "revoked")
	revoked.RevokedAt = t0.Add(-time.Second)
	putTokens(t, s, access, refresh, revoked)

	for _, want := range []store.Token{access, refresh} {
		got, err := s.GetToken(ctx, want.Hash, t0)
		if err != nil {
			t.Fatalf("GetToken(%q): %v", want.Hash, err)
		}
		same(t, string(want.Hash), got, want)
	}
	_, err := s.GetToken(ctx, revoked.Hash, t0)
	notFound(t, "GetToken of a token stored revoked", err)
	_, err = s.GetToken(ctx, []byte("never stored"), t0)
	notFound(t, "GetToken of an unknown hash", err)
	_, err = s.GetToken(ctx, access.Hash[:len(access.Hash)-1], t0)
	notFound(t, "GetToken of a prefix of a hash", err)
}

func testTokenExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok := newToken(store.AccessToken, "fam", "a")
	putTokens(t, s, tok)
	expires := tok.ExpiresAt
	for _, now := range []time.Time{expires, expires.Add(time.Microsecond), expires.Add(time.Hour)} {
		_, err := s.GetToken(ctx, tok.Hash, now)
		notFound(t, fmt.Sprintf("GetToken at expiry+%v", now.Sub(expires)), err)
	}
	if _, err := s.GetToken(ctx, tok.Hash, expires.Add(-time.Microsecond)); err != nil {
		t.Errorf("GetToken just before expiry: %v", err)
	}
}

func testPutTokensAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newToken(store.AccessToken, "fam", "a")
	r := newToken(store.RefreshToken, "fam", "r")
	otherError(t, "PutTokens with a hash twice", s.PutTokens(ctx, a, r, a))
	dead(t, "tokens of a failed PutTokens", []store.Token{a, r}, s)
	putTokens(t, s, a)
	otherError(t, "PutTokens with a stored hash", s.PutTokens(ctx, r, a))
	dead(t, "tokens of a failed PutTokens", []store.Token{r}, s)
	live(t, "the stored token", []store.Token{a}, s)
}

func testRotate(t *testing.T, s store.Store) {
	ctx := t.Context()
	r0 := newToken(store.RefreshToken, "fam", "r0")
	a0 := newToken(store.AccessToken, "fam", "a0")
	putTokens(t, s, r0, a0)

	t1 := t0.Add(time.Minute)
	a1, r1 := newToken(store.AccessToken, "fam", "a1"), newToken(store.RefreshToken, "fam", "r1")
	a1.CreatedAt, r1.CreatedAt = t1, t1
	got, err := s.RotateRefresh(ctx, r0.Hash, t1.In(elsewhere), 0, []store.Token{a1, r1})
	if err != nil {
		t.Fatalf("RotateRefresh: %v", err)
	}
	want := r0
	want.RotatedAt = t1
	same(t, "old token", got, want)
	// A rotated token is still valid; only its reuse is refused.
	stored, err := s.GetToken(ctx, r0.Hash, t0)
	if err != nil {
		t.Fatalf("GetToken of the rotated token: %v", err)
	}
	same(t, "rotated token", stored, want)
	for _, tok := range []store.Token{a1, r1} {
		stored, err := s.GetToken(ctx, tok.Hash, t0)
		if err != nil {
			t.Fatalf("GetToken of a successor: %v", err)
		}
		same(t, "successor", stored, tok)
	}
	live(t, "the first access token", []store.Token{a0}, s)

	// The successor rotates in turn, without successors this time.
	t2 := t1.Add(time.Minute)
	got, err = s.RotateRefresh(ctx, r1.Hash, t2, 0, nil)
	if err != nil {
		t.Fatalf("RotateRefresh of the successor: %v", err)
	}
	if !got.RotatedAt.Equal(t2) {
		t.Errorf("successor rotated at %v, want %v", got.RotatedAt, t2)
	}
}

func testRotateNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	access := newToken(store.AccessToken, "fam", "a")
	refresh := newToken(store.RefreshToken, "fam", "r")
	revoked := newToken(store.RefreshToken, "fam", "revoked")
	revoked.RevokedAt = t0.Add(-time.Second)
	putTokens(t, s, access, refresh, revoked)
	succ := newToken(store.RefreshToken, "fam", "successor")
	for _, c := range []struct {
		what string
		hash []byte
		now  time.Time
	}{
		{"an unknown hash", []byte("never stored"), t0},
		{"a prefix of a hash", refresh.Hash[:len(refresh.Hash)-1], t0},
		{"an access token", access.Hash, t0},
		{"a revoked token", revoked.Hash, t0},
		{"a token at expiry", refresh.Hash, refresh.ExpiresAt},
		{"a token after expiry", refresh.Hash, refresh.ExpiresAt.Add(time.Microsecond)},
	} {
		_, err := s.RotateRefresh(ctx, c.hash, c.now, time.Hour, []store.Token{succ})
		notFound(t, "RotateRefresh of "+c.what, err)
	}
	dead(t, "successor of refused rotations", []store.Token{succ}, s)
	live(t, "the access token", []store.Token{access}, s)
	// None of that marked the token rotated.
	got, err := s.RotateRefresh(ctx, refresh.Hash, t0, 0, nil)
	if err != nil {
		t.Fatalf("RotateRefresh: %v", err)
	}
	if !got.RotatedAt.Equal(t0) {
		t.Errorf("rotated at %v, want %v", got.RotatedAt, t0)
	}
}

func testRotateFamilyMismatch(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newToken(store.RefreshToken, "fam", "r")
	putTokens(t, s, r)
	good := newToken(store.AccessToken, "fam", "good")
	bad := newToken(store.RefreshToken, "other", "bad")
	for _, successors := range [][]store.Token{{bad}, {good, bad}} {
		_, err := s.RotateRefresh(ctx, r.Hash, t0, 0, successors)
		otherError(t, "RotateRefresh with a successor of another family", err)
	}
	dead(t, "successors of a refused rotation", []store.Token{good, bad}, s)
	t1 := t0.Add(time.Minute)
	got, err := s.RotateRefresh(ctx, r.Hash, t1, 0, []store.Token{good})
	if err != nil {
		t.Fatalf("RotateRefresh: %v", err)
	}
	if !got.RotatedAt.Equal(t1) {
		t.Errorf("refused rotations marked the token rotated: rotated at %v, want %v", got.RotatedAt, t1)
	}
	live(t, "successor", []store.Token{good}, s)
}

func testRotateGrace(t *testing.T, s store.Store) {
	ctx := t.Context()
	const grace = 30 * time.Second
	r0 := newToken(store.RefreshToken, "fam", "r0")
	a0 := newToken(store.AccessToken, "fam", "a0")
	stranger := newToken(store.RefreshToken, "other", "r")
	putTokens(t, s, r0, a0, stranger)

	t1 := t0.Add(time.Minute)
	r1, r1b, r2 := newToken(store.RefreshToken, "fam", "r1"),
		newToken(store.RefreshToken, "fam", "r1b"), newToken(store.RefreshToken, "fam", "r2")
	if _, err := s.RotateRefresh(ctx, r0.Hash, t1, grace, []store.Token{r1}); err != nil {
		t.Fatalf("RotateRefresh: %v", err)
	}
	// A retry within grace gets successors too; the grace runs from the
	// first rotation.
	got, err := s.RotateRefresh(ctx, r0.Hash, t1.Add(grace-time.Microsecond), grace, []store.Token{r1b})
	if err != nil {
		t.Fatalf("RotateRefresh within grace: %v", err)
	}
	want := r0
	want.RotatedAt = t1
	same(t, "old token on a retry", got, want)
	live(t, "successors", []store.Token{r0, a0, r1, r1b}, s)

	// At grace, the old token is reused: the family goes.
	got, err = s.RotateRefresh(ctx, r0.Hash, t1.Add(grace), grace, []store.Token{r2})
	reused(t, "RotateRefresh at grace", err)
	if string(got.Hash) != string(r0.Hash) || got.FamilyID != "fam" {
		t.Errorf("RotateRefresh at grace returned %q of family %q, want the old token", got.Hash, got.FamilyID)
	}
	dead(t, "the reused token's family", []store.Token{r0, a0, r1, r1b, r2}, s)
	live(t, "another family", []store.Token{stranger}, s)
	_, err = s.RotateRefresh(ctx, r1.Hash, t1.Add(grace), grace, nil)
	notFound(t, "RotateRefresh of a revoked successor", err)
}

// testRotateReuse replays rotated refresh tokens: with no grace, even at
// the very instant of the rotation; and the first link of a chain, which
// revokes the last.
func testRotateReuse(t *testing.T, s store.Store) {
	ctx := t.Context()
	rotate := func(hash []byte, now time.Time, grace time.Duration, successors ...store.Token) {
		t.Helper()
		if _, err := s.RotateRefresh(ctx, hash, now, grace, successors); err != nil {
			t.Fatalf("RotateRefresh(%q): %v", hash, err)
		}
	}
	t1 := t0.Add(time.Minute)
	r0, r1 := newToken(store.RefreshToken, "fam", "r0"), newToken(store.RefreshToken, "fam", "r1")
	x := newToken(store.RefreshToken, "fam", "x")
	putTokens(t, s, r0)
	rotate(r0.Hash, t1, 0, r1)
	_, err := s.RotateRefresh(ctx, r0.Hash, t1, 0, []store.Token{x})
	reused(t, "RotateRefresh again at the same instant, no grace", err)
	dead(t, "family", []store.Token{r0, r1, x}, s)

	c0, c1 := newToken(store.RefreshToken, "chain", "c0"), newToken(store.RefreshToken, "chain", "c1")
	c2, ca := newToken(store.RefreshToken, "chain", "c2"), newToken(store.AccessToken, "chain", "ca")
	putTokens(t, s, c0)
	rotate(c0.Hash, t1, 0, c1)
	rotate(c1.Hash, t1.Add(time.Minute), 0, c2, ca)
	_, err = s.RotateRefresh(ctx, c0.Hash, t1.Add(2*time.Minute), time.Minute, nil)
	reused(t, "replay of the chain's first token", err)
	dead(t, "chain after the replay", []store.Token{c0, c1, c2, ca}, s)
}

func testRevokeFamily(t *testing.T, s store.Store) {
	ctx := t.Context()
	rotated := newToken(store.RefreshToken, "fam", "rotated")
	rotated.RotatedAt = t0.Add(-time.Minute)
	earlier := newToken(store.RefreshToken, "fam", "earlier")
	earlier.RevokedAt = t0.Add(-time.Minute)
	family := []store.Token{
		newToken(store.AccessToken, "fam", "a"),
		newToken(store.RefreshToken, "fam", "r"),
		rotated, earlier,
	}
	stranger := newToken(store.AccessToken, "other", "a")
	putTokens(t, s, append(family, stranger)...)
	if err := s.RevokeFamily(ctx, "fam", t0); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	dead(t, "revoked family", family, s)
	live(t, "another family", []store.Token{stranger}, s)
	if err := s.RevokeFamily(ctx, "fam", t0.Add(time.Second)); err != nil {
		t.Errorf("RevokeFamily again: %v", err)
	}
	if err := s.RevokeFamily(ctx, "unknown", t0); err != nil {
		t.Errorf("RevokeFamily of an unknown family: %v", err)
	}
	_, err := s.RotateRefresh(ctx, family[1].Hash, t0, time.Hour, nil)
	notFound(t, "RotateRefresh of a revoked token", err)
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	se, other := newSession("one"), newSession("two")
	for _, x := range []store.Session{se, other} {
		if err := s.PutSession(ctx, x); err != nil {
			t.Fatalf("PutSession: %v", err)
		}
	}
	got, err := s.GetSession(ctx, se.Hash, t0)
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	same(t, "session", got, se)
	expires := se.ExpiresAt
	for _, now := range []time.Time{expires, expires.Add(time.Microsecond)} {
		_, err := s.GetSession(ctx, se.Hash, now)
		notFound(t, fmt.Sprintf("GetSession at expiry+%v", now.Sub(expires)), err)
	}
	if _, err := s.GetSession(ctx, se.Hash, expires.Add(-time.Microsecond)); err != nil {
		t.Errorf("GetSession just before expiry: %v", err)
	}
	_, err = s.GetSession(ctx, []byte("never stored"), t0)
	notFound(t, "GetSession of an unknown hash", err)
	_, err = s.GetSession(ctx, se.Hash[:len(se.Hash)-1], t0)
	notFound(t, "GetSession of a prefix of a hash", err)

	if err := s.DeleteSession(ctx, se.Hash); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	_, err = s.GetSession(ctx, se.Hash, t0)
	notFound(t, "GetSession after DeleteSession", err)
	for _, h := range [][]byte{se.Hash, []byte("never stored")} {
		if err := s.DeleteSession(ctx, h); err != nil {
			t.Errorf("DeleteSession of a missing session: %v", err)
		}
	}
	if _, err := s.GetSession(ctx, other.Hash, t0); err != nil {
		t.Errorf("GetSession of the other session: %v", err)
	}
}

// testAuthSeparate stores a code, a token, a session and a link under one
// hash: each is found as what it is.
func testAuthSeparate(t *testing.T, s store.Store) {
	ctx := t.Context()
	h := []byte("one hash")
	c, tok, se, l := newCode("x"), newToken(store.RefreshToken, "fam", "x"), newSession("x"), newLink("x")
	c.CodeHash, tok.Hash, se.Hash, l.TokenHash = h, h, h, h
	putCodes(t, s, c)
	putTokens(t, s, tok)
	if err := s.PutSession(ctx, se); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemAuthCode(ctx, h, "fam", t0, noTokens); err != nil {
		t.Errorf("RedeemAuthCode: %v", err)
	}
	if _, err := s.RotateRefresh(ctx, h, t0, 0, nil); err != nil {
		t.Errorf("RotateRefresh: %v", err)
	}
	if _, err := s.GetSession(ctx, h, t0); err != nil {
		t.Errorf("GetSession: %v", err)
	}
	if _, err := s.TakeLink(ctx, h, t0); err != nil {
		t.Errorf("TakeLink: %v", err)
	}
}

func testDeleteExpiredAuth(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := t0.Add(time.Hour)
	// Read with an old clock: only a deleted row can be missing.
	before := t0.Add(-time.Hour)
	old, edge, later := now.Add(-time.Minute), now, now.Add(time.Microsecond)

	var codes []store.AuthCode
	var sessions []store.Session
	var tokens []store.Token
	for i, exp := range []time.Time{old, edge, later} {
		c, se, tok := newCode(fmt.Sprint(i)), newSession(fmt.Sprint(i)), newToken(store.RefreshToken, "fam", fmt.Sprint(i))
		c.CreatedAt, se.CreatedAt, tok.CreatedAt = before, before, before
		c.ExpiresAt, se.ExpiresAt, tok.ExpiresAt = exp, exp, exp
		putCodes(t, s, c)
		if err := s.PutSession(ctx, se); err != nil {
			t.Fatal(err)
		}
		codes, sessions, tokens = append(codes, c), append(sessions, se), append(tokens, tok)
	}
	// Revoked tokens go when they expire, not before; so do rotated ones.
	revokedOld := newToken(store.AccessToken, "fam", "revoked-old")
	revokedOld.ExpiresAt, revokedOld.RevokedAt = old, before
	revokedLive := newToken(store.AccessToken, "fam", "revoked-live")
	revokedLive.ExpiresAt, revokedLive.RevokedAt = later, before
	rotated := newToken(store.RefreshToken, "rotated", "r")
	rotated.RotatedAt = before
	putTokens(t, s, append(tokens, revokedOld, revokedLive, rotated)...)

	registered := newClient("registered")
	cimd := func(id string, exp time.Time) store.Client {
		c := newClient("https://app.example/" + id)
		c.ExpiresAt = exp
		return c
	}
	cimdOld, cimdEdge, cimdLive := cimd("old", old), cimd("edge", edge), cimd("live", later)
	putClients(t, s, registered, cimdOld, cimdEdge, cimdLive)

	if err := s.DeleteExpired(ctx, now); err != nil {
		t.Fatalf("DeleteExpired: %v", err)
	}
	if err := s.DeleteExpired(ctx, now); err != nil {
		t.Fatalf("DeleteExpired with nothing to delete: %v", err)
	}

	for i, c := range codes {
		_, err := s.RedeemAuthCode(ctx, c.CodeHash, "fam-new", before, noTokens)
		if i < 2 {
			notFound(t, "RedeemAuthCode of a deleted code", err)
		} else if err != nil {
			t.Errorf("DeleteExpired removed a live code: %v", err)
		}
	}
	for i, se := range sessions {
		_, err := s.GetSession(ctx, se.Hash, before)
		if i < 2 {
			notFound(t, "GetSession of a deleted session", err)
		} else if err != nil {
			t.Errorf("DeleteExpired removed a live session: %v", err)
		}
	}
	for i, tok := range tokens {
		_, err := s.GetToken(ctx, tok.Hash, before)
		if i < 2 {
			notFound(t, "GetToken of a deleted token", err)
		} else if err != nil {
			t.Errorf("DeleteExpired removed a live token: %v", err)
		}
	}
	// A hash still stored cannot be put again; a deleted one can.
	if err := s.PutTokens(ctx, revokedLive); err == nil {
		t.Error("DeleteExpired removed a revoked token before it expired")
	}
	if err := s.PutTokens(ctx, revokedOld); err != nil {
		t.Errorf("DeleteExpired kept an expired revoked token (PutTokens: %v)", err)
	}
	_, err := s.RotateRefresh(ctx, rotated.Hash, now, 0, nil)
	reused(t, "reuse of a rotated token after DeleteExpired", err)

	for _, c := range []store.Client{registered, cimdLive} {
		if _, err := s.GetClient(ctx, c.ID); err != nil {
			t.Errorf("DeleteExpired removed client %s: %v", c.ID, err)
		}
	}
	for _, c := range []store.Client{cimdOld, cimdEdge} {
		_, err := s.GetClient(ctx, c.ID)
		notFound(t, "GetClient of an expired client "+c.ID, err)
	}
}

// testRedeemOnce races redemptions of one code on both handles: exactly
// one mints, and wins; every other is a replay, told the winner's family,
// and revokes the tokens the winner minted, which were stored with its
// redemption.
func testRedeemOnce(t *testing.T, a, b store.Store) {
	c := newCode("raced")
	putCodes(t, a, c)
	const n = 10
	var won, lost, minted atomic.Int32
	var mu sync.Mutex
	var winner string
	var told []string
	var wg sync.WaitGroup
	start := make(chan struct{})
	tokens := make([][]store.Token, n)
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		family := fmt.Sprintf("fam-%d", i)
		tokens[i] = []store.Token{newToken(store.AccessToken, family, "a"), newToken(store.RefreshToken, family, "r")}
		wg.Go(func() {
			<-start
			got, err := s.RedeemAuthCode(t.Context(), c.CodeHash, family, t0, func(store.AuthCode) ([]store.Token, error) {
				minted.Add(1)
				return tokens[i], nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won.Add(1)
				winner = family
			case errors.Is(err, store.ErrReused):
				lost.Add(1)
				told = append(told, got.FamilyID)
			default:
				t.Errorf("RedeemAuthCode: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || lost.Load() != n-1 || minted.Load() != 1 {
		t.Fatalf("%d redemptions won, %d were replays and %d minted, want 1, %d and 1",
			won.Load(), lost.Load(), minted.Load(), n-1)
	}
	for _, f := range told {
		if f != winner {
			t.Errorf("a replay was told family %q, want the winner's %q", f, winner)
		}
	}
	// The winner's tokens revoked by the replays; the others never stored.
	for _, ts := range tokens {
		dead(t, "tokens after concurrent redemptions", ts, a, b)
	}
}

// testRotateOnce races rotations of one never-rotated refresh token with
// no grace on both handles: exactly one wins; the next is a reuse, and
// revokes the family, the winner's successor included; the others find
// the token revoked.
func testRotateOnce(t *testing.T, a, b store.Store) {
	r0 := newToken(store.RefreshToken, "fam", "r0")
	putTokens(t, a, r0)
	const n = 10
	t1 := t0.Add(time.Minute)
	var won, lost, gone atomic.Int32
	successors := make([]store.Token, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		successors[i] = newToken(store.RefreshToken, "fam", fmt.Sprintf("r1-%d", i))
		wg.Go(func() {
			<-start
			_, err := s.RotateRefresh(t.Context(), r0.Hash, t1, 0, successors[i:i+1])
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, store.ErrReused):
				lost.Add(1)
			case errors.Is(err, store.ErrNotFound):
				gone.Add(1)
			default:
				t.Errorf("RotateRefresh: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || lost.Load() != 1 || gone.Load() != n-2 {
		t.Fatalf("rotations: %d won, %d were reuses, %d found the token revoked; want 1, 1 and %d",
			won.Load(), lost.Load(), gone.Load(), n-2)
	}
	dead(t, "family after concurrent rotations", append(successors, r0), a, b)
}

// testReuseDuringRotation races the replay of an old refresh token against
// the rotation of the current one, in one family, in several families at
// once. In either order the whole family ends revoked: a successor stored
// alongside the revocation must not escape it.
func testReuseDuringRotation(t *testing.T, a, b store.Store) {
	const families = 12
	var all []store.Token
	type race struct{ old, cur, next store.Token }
	races := make([]race, families)
	for i := range races {
		family := fmt.Sprintf("fam-%d", i)
		r := race{
			old:  newToken(store.RefreshToken, family, "old"),
			cur:  newToken(store.RefreshToken, family, "cur"),
			next: newToken(store.RefreshToken, family, "next"),
		}
		r.old.RotatedAt = t0.Add(-time.Hour)
		races[i] = r
		all = append(all, r.old, r.cur)
	}
	putTokens(t, a, all...)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, r := range races {
		wg.Go(func() {
			<-start
			_, err := a.RotateRefresh(t.Context(), r.old.Hash, t0, time.Minute, nil)
			reused(t, "replay of the old token", err)
		})
		wg.Go(func() {
			<-start
			_, err := b.RotateRefresh(t.Context(), r.cur.Hash, t0, time.Minute, []store.Token{r.next})
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rotation of the current token: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, r := range races {
		dead(t, "family after a replay", []store.Token{r.old, r.cur, r.next}, a, b)
	}
}
