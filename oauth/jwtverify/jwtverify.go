// Package jwtverify accepts JWT access tokens issued by an external
// authorization server: it checks their signature against the issuer's
// JWKS and their issuer, audience and times, and is an [auth.TokenVerifier]
// for the go-sdk's bearer-token middleware.
package jwtverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/auth"
)

// Options configure a Verifier.
type Options struct {
	// Issuer is the authorization server's issuer identifier; a token's
	// "iss" must equal it exactly.
	Issuer string
	// JWKSURL is where the issuer publishes its signing keys. Empty reads
	// jwks_uri from the issuer's RFC 8414 metadata or, failing that, its
	// OpenID discovery document.
	JWKSURL string
	// Audience is this resource, e.g. https://alterhost.example/mcp; a
	// token's "aud" must contain it. Required.
	Audience string
	// SubjectClaim names the claim that identifies the person; default "sub".
	SubjectClaim string
	// HTTPClient fetches discovery and keys; default a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	// Leeway tolerates clock skew on exp, nbf and iat; default 30 s.
	Leeway time.Duration
}

// Algorithms are the only signature algorithms accepted. Asymmetric only:
// "none" and the HMAC family are refused, so a public key can never be
// used as a shared secret (algorithm confusion).
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

const (
	// refetchEvery bounds how often an unknown key id makes the keys be
	// fetched again, so forged kids cannot make alterhost hammer the issuer.
	refetchEvery = time.Minute
	// maxKeyAge is how long a fetched key set is used before it is fetched
	// again at the next verification, so removed keys stop being trusted.
	maxKeyAge = time.Hour
	// maxDocument bounds a discovery document or key set.
	maxDocument = 1 << 20
)

// Verifier checks JWT access tokens of one issuer for one audience.
type Verifier struct {
	opts Options
	jwks string
	now  func() time.Time

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // when keys were last fetched, successfully or not
	loaded  time.Time // when keys were last fetched successfully
}

// New returns a Verifier for opts. Without opts.JWKSURL it reads the
// issuer's discovery document now, so a wrong issuer fails at start.
func New(ctx context.Context, opts Options) (*Verifier, error) {
	if opts.Issuer == "" {
		return nil, errors.New("jwtverify: an issuer is required")
	}
	if opts.Audience == "" {
		return nil, errors.New("jwtverify: an audience is required")
	}
	if opts.SubjectClaim == "" {
		opts.SubjectClaim = "sub"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Leeway == 0 {
		opts.Leeway = 30 * time.Second
	}
	v := &Verifier{opts: opts, jwks: opts.JWKSURL, now: time.Now}
	if v.jwks == "" {
		var err error
		if v.jwks, err = discover(ctx, opts.HTTPClient, opts.Issuer); err != nil {
			return nil, err
		}
	}
	if u, err := url.Parse(v.jwks); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("jwtverify: JWKS URL %q is not an absolute http(s) URL", v.jwks)
	}
	return v, nil
}

// JWKSURL is where the keys are fetched from.
func (v *Verifier) JWKSURL() string { return v.jwks }

// discover reads jwks_uri from the issuer's RFC 8414 metadata, else from
// its OpenID discovery document. Either must name the same issuer.
func discover(ctx context.Context, c *http.Client, issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("jwtverify: issuer %q is not an absolute http(s) URL", issuer)
	}
	// RFC 8414 inserts the well-known path before the issuer's path; OpenID
	// Connect Discovery appends it.
	path := strings.TrimSuffix(u.Path, "/")
	origin := u.Scheme + "://" + u.Host
	docs := []string{origin + "/.well-known/oauth-authorization-server" + path,
		origin + path + "/.well-known/openid-configuration"}
	var errs []error
	for _, doc := range docs {
		var meta struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := getJSON(ctx, c, doc, &meta); err != nil {
			errs = append(errs, err)
			continue
		}
		if meta.Issuer != issuer {
			errs = append(errs, fmt.Errorf("%s names issuer %q, not %q", doc, meta.Issuer, issuer))
			continue
		}
		if meta.JWKSURI == "" {
			errs = append(errs, fmt.Errorf("%s has no jwks_uri", doc))
			continue
		}
		return meta.JWKSURI, nil
	}
	return "", fmt.Errorf("jwtverify: discovering the keys of %s: %w", issuer, errors.Join(errs...))
}

func getJSON(ctx context.Context, c *http.Client, u string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxDocument {
		return fmt.Errorf("GET %s: larger than %d bytes", u, maxDocument)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// invalid wraps a reason for refusing a token in auth.ErrInvalidToken.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{auth.ErrInvalidToken}, args...)...)
}

// claims are the claims read beside the registered ones.
type claims struct {
	Scope string   `json:"scope"`
	Scp   []string `json:"scp"`
}

// Verify checks token and returns its scopes, expiry and subject. Every
// refusal wraps auth.ErrInvalidToken; an unreachable issuer is reported as
// an invalid token too, since the token cannot be trusted without keys.
func (v *Verifier) Verify(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
	tok, err := jwt.ParseSigned(token, Algorithms)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if len(tok.Headers) != 1 {
		return nil, invalid("want exactly one signature")
	}
	h := tok.Headers[0]
	keys, err := v.candidates(ctx, h)
	if err != nil {
		return nil, err
	}
	var (
		std    jwt.Claims
		extra  claims
		custom map[string]any
	)
	verified := false
	for _, k := range keys {
		if err := tok.Claims(k.Key, &std, &extra, &custom); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, invalid("signature does not verify with the issuer's keys")
	}
	if std.Expiry == nil {
		return nil, invalid("no exp claim")
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: v.opts.Issuer, AnyAudience: jwt.Audience{v.opts.Audience},
		Time: v.now()}, v.opts.Leeway)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if std.Issuer == "" {
		return nil, invalid("no iss claim")
	}
	subject, _ := custom[v.opts.SubjectClaim].(string)
	if subject == "" {
		return nil, invalid("no %s claim", v.opts.SubjectClaim)
	}
	scopes := strings.Fields(extra.Scope)
	for _, s := range extra.Scp {
		if s != "" && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return &auth.TokenInfo{Scopes: scopes, Expiration: std.Expiry.Time(), UserID: subject}, nil
}

// candidates returns the keys that may have signed a token with header h:
// those with its kid (or every key, without one) whose type fits its alg.
// An unknown kid fetches the keys again, at most once a refetchEvery.
func (v *Verifier) candidates(ctx context.Context, h jose.Header) ([]jose.JSONWebKey, error) {
	alg := jose.SignatureAlgorithm(h.Algorithm)
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if v.loaded.IsZero() || now.Sub(v.loaded) >= maxKeyAge {
		if v.fetched.IsZero() || now.Sub(v.fetched) >= refetchEvery {
			v.refresh(ctx, now)
		}
	}
	found := match(v.keys, h.KeyID, alg)
	if len(found) == 0 && h.KeyID != "" && now.Sub(v.fetched) >= refetchEvery {
		v.refresh(ctx, now)
		found = match(v.keys, h.KeyID, alg)
	}
	if v.loaded.IsZero() {
		return nil, invalid("the issuer's keys could not be fetched from %s", v.jwks)
	}
	if len(found) == 0 {
		return nil, invalid("no key of the issuer matches kid %q and alg %s", h.KeyID, alg)
	}
	return found, nil
}

// refresh fetches the key set, replacing the cached one on success (so
// keys the issuer removed stop being trusted) and keeping it on failure.
// Called with v.mu held.
func (v *Verifier) refresh(ctx context.Context, now time.Time) {
	v.fetched = now
	// The fetch serves every caller, not just this request: it is not
	// cut short when the request is.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, v.opts.HTTPClient, v.jwks, &set); err != nil {
		return
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		// Signing keys only, public and asymmetric: a symmetric ("oct") key
		// is never usable, whatever the token's header says.
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		}
	}
	v.keys, v.loaded = keys, now
}

// match picks the keys with kid (any, if kid is empty) that fit alg.
func match(keys []jose.JSONWebKey, kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		ok := false
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			ok = alg == jose.RS256
		case *ecdsa.PublicKey:
			ok = alg == jose.ES256 && key.Curve.Params().Name == "P-256"
		case ed25519.PublicKey:
			ok = alg == jose.EdDSA
		}
		if ok {
			out = append(out, k)
		}
	}
	return out
}

// Issuer is the issuer whose tokens are accepted.
func (v *Verifier) Issuer() string { return v.opts.Issuer }

// Audience is the resource the tokens must be for.
func (v *Verifier) Audience() string { return v.opts.Audience }
