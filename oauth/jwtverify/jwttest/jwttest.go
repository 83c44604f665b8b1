// Package jwttest is an external authorization server for tests: an
// httptest server on 127.0.0.1 publishing RFC 8414 metadata, OpenID
// discovery and a JWKS, and signing JWT access tokens with its keys.
//
// It is also a minimal OpenID Connect provider (oidc.go): /authorize
// signs in a scripted user without asking and redirects back with a code,
// and /token exchanges the code, checking the client and PKCE, for an ID
// token carrying the nonce.
package jwttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer is a test authorization server.
type Issuer struct {
	// URL is the issuer identifier, http://127.0.0.1:PORT.
	URL string
	// JWKSFetches counts requests for the key set.
	JWKSFetches atomic.Int64

	srv  *httptest.Server
	mu   sync.Mutex
	keys []jose.JSONWebKey // private keys; the JWKS publishes their public halves

	op provider // the OpenID Connect side, guarded by mu
}

// New starts an Issuer with one RS256 key, "k1", closed when t ends.
func New(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{}
	mux := http.NewServeMux()
	meta := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.URL + "/jwks",
			"authorization_endpoint":                is.URL + "/authorize",
			"token_endpoint":                        is.URL + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"scopes_supported":                      []string{"openid", "email", "profile"},
			"code_challenge_methods_supported":      []string{"S256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		})
	}
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", meta)
	mux.HandleFunc("GET /.well-known/openid-configuration", meta)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		is.JWKSFetches.Add(1)
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		is.mu.Unlock()
		writeJSON(w, set)
	})
	mux.HandleFunc("GET /authorize", is.authorize)
	mux.HandleFunc("POST /token", is.token)
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	is.AddRSA(t, "k1")
	return is
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// AddRSA publishes a new RS256 key with id kid and returns it.
func (is *Issuer) AddRSA(t testing.TB, kid string) jose.JSONWebKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return is.Add(jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"})
}

// AddEC publishes a new ES256 key with id kid and returns it.
func (is *Issuer) AddEC(t testing.TB, kid string) jose.JSONWebKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return is.Add(jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
}

// Add publishes k (a private key) in the JWKS.
func (is *Issuer) Add(k jose.JSONWebKey) jose.JSONWebKey {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append(is.keys, k)
	return k
}

// Key returns the key with id kid.
func (is *Issuer) Key(kid string) jose.JSONWebKey {
	is.mu.Lock()
	defer is.mu.Unlock()
	for _, k := range is.keys {
		if k.KeyID == kid {
			return k
		}
	}
	panic("jwttest: no key " + kid)
}

// Claims returns valid claims for subject and audience, from this issuer,
// expiring in an hour.
func (is *Issuer) Claims(subject, audience string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": is.URL, "sub": subject, "aud": audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// Sign signs claims with key k as a JWT access token (typ at+jwt).
func Sign(t testing.TB, k jose.JSONWebKey, claims any) string {
	t.Helper()
	s, err := sign(k, "at+jwt", claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sign(k jose.JSONWebKey, typ string, claims any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: k},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// Token signs claims with the issuer's key "k1".
func (is *Issuer) Token(t testing.TB, claims any) string {
	t.Helper()
	return Sign(t, is.Key("k1"), claims)
}
