package jwtverify

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/alterhost/alterhost/oauth/jwtverify/jwttest"
)

const audience = "https://alterhost.example/mcp"

func newVerifier(t *testing.T, is *jwttest.Issuer) *Verifier {
	t.Helper()
	v, err := New(context.Background(), Options{Issuer: is.URL, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustRefuse(t *testing.T, v *Verifier, token, why string) {
	t.Helper()
	info, err := v.Verify(context.Background(), token, nil)
	if err == nil {
		t.Fatalf("%s: accepted, subject %q", why, info.UserID)
	}
	if !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("%s: error %v does not wrap auth.ErrInvalidToken", why, err)
	}
}

func TestValid(t *testing.T) {
	is := jwttest.New(t)
	v := newVerifier(t, is)
	if v.JWKSURL() != is.URL+"/jwks" {
		t.Fatalf("JWKS URL %q from discovery", v.JWKSURL())
	}
	c := is.Claims("alice", audience)
	c["aud"] = []string{"other", audience}
	info, err := v.Verify(context.Background(), is.Token(t, c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.UserID != "alice" || info.Expiration.IsZero() || time.Until(info.Expiration) < 59*time.Minute {
		t.Fatalf("info %+v", info)
	}
	// An ES256 key works too, once the keys may be fetched again.
	k := is.AddEC(t, "ec")
	v.now = func() time.Time { return time.Now().Add(refetchEvery) }
	if _, err := v.Verify(context.Background(), jwttest.Sign(t, k, is.Claims("bob", audience)), nil); err != nil {
		t.Fatal(err)
	}
}

func TestRefusals(t *testing.T) {
	is := jwttest.New(t)
	v := newVerifier(t, is)
	with := func(edit func(map[string]any)) string {
		c := is.Claims("alice", audience)
		edit(c)
		return is.Token(t, c)
	}
	hour := time.Hour
	mustRefuse(t, v, with(func(c map[string]any) { c["iss"] = "https://evil.example" }), "wrong issuer")
	mustRefuse(t, v, with(func(c map[string]any) { delete(c, "iss") }), "no issuer")
	mustRefuse(t, v, with(func(c map[string]any) { c["aud"] = "https://other.example/mcp" }), "wrong audience")
	mustRefuse(t, v, with(func(c map[string]any) { delete(c, "aud") }), "no audience")
	mustRefuse(t, v, with(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }), "expired")
	mustRefuse(t, v, with(func(c map[string]any) { delete(c, "exp") }), "no exp")
	mustRefuse(t, v, with(func(c map[string]any) { c["nbf"] = time.Now().Add(hour / 2).Unix() }), "not yet valid")
	mustRefuse(t, v, with(func(c map[string]any) { c["iat"] = time.Now().Add(hour / 2).Unix() }), "issued in the future")
	mustRefuse(t, v, with(func(c map[string]any) { delete(c, "sub") }), "no subject")
	mustRefuse(t, v, with(func(c map[string]any) { c["sub"] = "" }), "empty subject")
	mustRefuse(t, v, "", "empty")
	mustRefuse(t, v, "not.a.jwt", "garbage")

	// Within the leeway, expiry and nbf are tolerated.
	ok := with(func(c map[string]any) {
		c["exp"] = time.Now().Add(-10 * time.Second).Unix()
		c["nbf"] = time.Now().Add(10 * time.Second).Unix()
	})
	if _, err := v.Verify(context.Background(), ok, nil); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestAlgNone(t *testing.T) {
	is := jwttest.New(t)
	v := newVerifier(t, is)
	claims := b64(is.Claims("alice", audience))
	mustRefuse(t, v, b64(map[string]string{"alg": "none", "typ": "JWT"})+"."+claims+".", "alg none")
	mustRefuse(t, v, b64(map[string]string{"alg": "none", "kid": "k1"})+"."+claims+".", "alg none with kid")
}

// TestHMACConfusion signs with HS256, using the issuer's public key as the
// shared secret: a verifier that let the token choose the algorithm would
// accept it.
func TestHMACConfusion(t *testing.T) {
	is := jwttest.New(t)
	v := newVerifier(t, is)
	k1 := is.Key("k1")
	pub := k1.Public()
	der, err := x509.MarshalPKIXPublicKey(pub.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{der, []byte(b64(pub))} {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256,
			Key: jose.JSONWebKey{Key: secret, KeyID: "k1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(signer).Claims(is.Claims("alice", audience)).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, v, tok, "HS256 with the public key")
	}
}

func TestTampered(t *testing.T) {
	is := jwttest.New(t)
	v := newVerifier(t, is)
	parts := strings.Split(is.Token(t, is.Claims("alice", audience)), ".")
	parts[1] = b64(is.Claims("mallory", audience))
	mustRefuse(t, v, strings.Join(parts, "."), "tampered payload")
	// A token signed by a key the issuer does not publish, under its kid.
	other := jwttest.New(t)
	mustRefuse(t, v, other.Token(t, is.Claims("alice", audience)), "foreign key")
}

func TestRotation(t *testing.T) {
	is := jwttest.New(t)
	v := newVerifier(t, is)
	now := time.Now()
	v.now = func() time.Time { return now }
	if _, err := v.Verify(context.Background(), is.Token(t, is.Claims("alice", audience)), nil); err != nil {
		t.Fatal(err)
	}
	if n := is.JWKSFetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	// A token under a kid the issuer has not published: refused, and the
	// keys are fetched again only once a minute however often it comes.
	rogue := jwttest.New(t).AddRSA(t, "k2")
	for range 5 {
		mustRefuse(t, v, jwttest.Sign(t, rogue, is.Claims("alice", audience)), "unknown kid")
	}
	if n := is.JWKSFetches.Load(); n != 1 {
		t.Fatalf("%d fetches within a minute of the first, want 1", n)
	}
	// The issuer rotates to k2: picked up once a minute has passed.
	k2 := is.AddRSA(t, "k2")
	tok := jwttest.Sign(t, k2, is.Claims("alice", audience))
	mustRefuse(t, v, tok, "new key, fetched too recently")
	now = now.Add(refetchEvery)
	if _, err := v.Verify(context.Background(), tok, nil); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := is.JWKSFetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestScopes(t *testing.T) {
	is := jwttest.New(t)
	v := newVerifier(t, is)
	for _, tc := range []struct {
		claims map[string]any
		want   []string
	}{
		{map[string]any{"scope": "mcp read  write"}, []string{"mcp", "read", "write"}},
		{map[string]any{"scp": []string{"mcp", "read"}}, []string{"mcp", "read"}},
		{map[string]any{"scope": "mcp", "scp": []string{"mcp", "admin"}}, []string{"mcp", "admin"}},
		{map[string]any{}, nil},
	} {
		c := is.Claims("alice", audience)
		for k, val := range tc.claims {
			c[k] = val
		}
		info, err := v.Verify(context.Background(), is.Token(t, c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(info.Scopes, tc.want) {
			t.Errorf("%v: scopes %q, want %q", tc.claims, info.Scopes, tc.want)
		}
	}
}

func TestSubjectClaim(t *testing.T) {
	is := jwttest.New(t)
	v, err := New(context.Background(), Options{Issuer: is.URL, JWKSURL: is.URL + "/jwks", Audience: audience,
		SubjectClaim: "oid"})
	if err != nil {
		t.Fatal(err)
	}
	c := is.Claims("alice", audience)
	c["oid"] = "0000-1111"
	info, err := v.Verify(context.Background(), is.Token(t, c), nil)
	if err != nil || info.UserID != "0000-1111" {
		t.Fatalf("info %+v, err %v", info, err)
	}
	delete(c, "oid")
	mustRefuse(t, v, is.Token(t, c), "no oid")
}

func TestDiscoveryMismatch(t *testing.T) {
	is := jwttest.New(t)
	if _, err := New(context.Background(), Options{Issuer: is.URL + "/tenant", Audience: audience}); err == nil {
		t.Fatal("discovery for an issuer the server does not name succeeded")
	}
	if _, err := New(context.Background(), Options{Issuer: is.URL}); err == nil {
		t.Fatal("no audience accepted")
	}
}
