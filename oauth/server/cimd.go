package server

// Client ID Metadata Documents: a client may present an https URL as its
// client_id instead of registering. The URL names a JSON document of client
// metadata, which this server fetches, checks as strictly as a
// registration, and caches in the clients table for as long as the
// document's HTTP caching headers say (within bounds).
//
// Fetching a URL a stranger names is server-side request forgery waiting
// to happen, so the default fetcher dials only public addresses, checking
// the address it actually connects to (DNS rebinding gains nothing),
// follows no redirect, reads at most a few kilobytes and gives up after a
// few seconds.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/alterhost/alterhost/vault/store"
)

// Bounds on fetching and caching metadata documents. A real document is a
// few hundred bytes and changes rarely; the minimum lifetime keeps a
// document that asks not to be cached from costing a fetch per request,
// the maximum lets a client's changes (a revoked redirect URI) take effect
// within a day.
const (
	maxMetadataDocument  = 5 << 10
	metadataFetchTimeout = 5 * time.Second
	minMetadataTTL       = 5 * time.Minute
	maxMetadataTTL       = 24 * time.Hour
	metadataUserAgent    = "alterhost (OAuth client metadata fetcher; +https://github.com/alterhost/alterhost)"
)

// metadataError is why a client's metadata document could not be used.
// Its message names the URL and the reason, never anything the document
// says, so it can be shown on a page or in a token error as is. It counts
// as store.ErrNotFound: to a caller that knows nothing of documents, the
// client is simply unknown.
type metadataError struct {
	msg    string
	status int // for an error page: 400, or 429 when rate limited
}

func (e *metadataError) Error() string { return e.msg }
func (e *metadataError) Unwrap() error { return store.ErrNotFound }

func badMetadataURL(id, reason string) *metadataError {
	return &metadataError{msg: "the client_id " + id + " is not a usable metadata document URL: " + reason,
		status: http.StatusBadRequest}
}

func unfetchable(id, reason string) *metadataError {
	return &metadataError{msg: "the client's metadata document at " + id + " could not be fetched: " + reason,
		status: http.StatusBadRequest}
}

func unacceptable(id, reason string) *metadataError {
	return &metadataError{msg: "the client's metadata document at " + id + " is not acceptable: " + reason,
		status: http.StatusBadRequest}
}

// urlClientID reports whether id is meant as a metadata document URL:
// it starts with an http or https scheme, in any case. Registered ids
// never do.
func urlClientID(id string) bool {
	l := strings.ToLower(id)
	return strings.HasPrefix(l, "https:") || strings.HasPrefix(l, "http:")
}

// checkMetadataURL refuses a URL client_id that cannot name a document:
// not https (spelled so, since the document's client_id must match it
// byte for byte), no host, no path, a fragment, userinfo, dot segments,
// or more than maxURILength bytes. The host must be a DNS name or an IP
// literal, because the consent page shows it.
func checkMetadataURL(id string) (*url.URL, error) {
	if len(id) > maxURILength {
		return nil, badMetadataURL(id[:64]+"...", fmt.Sprintf("it is longer than %d bytes", maxURILength))
	}
	if strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }) >= 0 {
		return nil, badMetadataURL(strconv.QuoteToASCII(id), "it contains spaces, control or non-ASCII characters")
	}
	if !strings.HasPrefix(id, "https://") {
		return nil, badMetadataURL(id, "it must be an https URL, beginning with https:// in lower case")
	}
	if strings.Contains(id, "#") {
		return nil, badMetadataURL(id, "it must not have a fragment")
	}
	u, err := url.Parse(id)
	if err != nil {
		return nil, badMetadataURL(id, "it is not a valid URL")
	}
	if u.User != nil {
		return nil, badMetadataURL(id, "it must not carry a user name or password")
	}
	if u.Host == "" || !safeHost(u.Hostname()) {
		return nil, badMetadataURL(id, "it needs a valid host")
	}
	if u.Path == "" || u.Path == "/" {
		return nil, badMetadataURL(id, "it needs a path, such as /oauth/client.json")
	}
	// u.Path is decoded, so %2e%2e counts as a dot segment too.
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, badMetadataURL(id, "its path must not have . or .. segments")
		}
	}
	return u, nil
}

// metadataHost is the host (and port, if any) of a metadata document
// client_id: who vouches for the client, shown next to its name.
func metadataHost(id string) (string, bool) {
	if !strings.HasPrefix(id, "https://") {
		return "", false
	}
	u, err := url.Parse(id)
	if err != nil || u.Host == "" {
		return "", false
	}
	return u.Host, true
}

// loadMetadataClient is loadClient for a URL client_id: the cached
// document while it is fresh, else a fetch. A failed fetch is an error
// even if an expired copy is stored: the client may have withdrawn a
// redirect URI, or the document may be gone for good.
func (s *Server) loadMetadataClient(r *http.Request, id string) (*client, error) {
	if _, err := checkMetadataURL(id); err != nil {
		return nil, err
	}
	stale := false
	c, err := s.store.GetClient(r.Context(), id)
	switch {
	case err == nil && s.now().Before(c.ExpiresAt):
		return parseClient(c)
	case err == nil:
		stale = true
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	// Every miss makes this server send a request a stranger chose: it
	// costs as much as a registration, from the same per-address budget.
	if !s.registerLimit.allow(remoteIP(r)) {
		s.opts.Observer.MetadataFetch("rate_limited")
		return nil, &metadataError{status: http.StatusTooManyRequests,
			msg: "the client's metadata document at " + id + " was not fetched: too many documents were fetched for your address lately; try again later"}
	}
	// The fetch is shared by every request waiting for it, so one of them
	// hanging up must not cancel it; the fetch timeout bounds it.
	ctx := context.WithoutCancel(r.Context())
	v, err, _ := s.fetches.Do(id, func() (any, error) { return s.refreshMetadata(ctx, id) })
	if err != nil {
		var me *metadataError
		if stale && errors.As(err, &me) {
			// A copy: the error is shared with the other waiters.
			return nil, &metadataError{msg: me.msg + " (its cached copy has expired)", status: me.status}
		}
		return nil, err
	}
	return v.(*client), nil
}

// refreshMetadata fetches, checks and stores the document at id.
func (s *Server) refreshMetadata(ctx context.Context, id string) (*client, error) {
	// A request that missed the cache just before the previous fetch stored
	// it would otherwise fetch again.
	if c, err := s.store.GetClient(ctx, id); err == nil && s.now().Before(c.ExpiresAt) {
		return parseClient(c)
	}
	body, ttl, err := s.fetchMetadata(ctx, id)
	if err != nil {
		s.opts.Observer.MetadataFetch("unfetchable")
		return nil, err
	}
	meta, err := s.checkMetadataDocument(id, body)
	if err != nil {
		s.opts.Observer.MetadataFetch("unacceptable")
		return nil, err
	}
	stored, err := json.Marshal(meta)
	if err != nil {
		s.opts.Observer.MetadataFetch("error")
		return nil, err
	}
	now := s.now()
	c := store.Client{ID: id, Metadata: stored, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.store.PutClient(ctx, c); err != nil {
		s.opts.Observer.MetadataFetch("error")
		return nil, err
	}
	s.opts.Observer.MetadataFetch("ok")
	s.opts.Logger.Info("oauth: client metadata document fetched", "client_id", id,
		"client_name", meta.ClientName, "redirect_uris", meta.RedirectURIs, "cached_for", ttl)
	return &client{Client: c, meta: meta}, nil
}

// errMetadataRedirect refuses every redirect: the document is the one at
// the client_id, not one it points to.
var errMetadataRedirect = errors.New("redirect refused")

// fetchMetadata GETs the document at id and returns its body and how long
// to cache it.
func (s *Server) fetchMetadata(ctx context.Context, id string) ([]byte, time.Duration, error) {
	hc := defaultMetadataClient()
	if s.opts.MetadataClient != nil {
		hc = s.opts.MetadataClient
	}
	// Whatever client is configured, the rules of the fetch hold: no
	// redirect, no cookies, a bounded time.
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return errMetadataRedirect }
	c.Jar = nil
	if c.Timeout <= 0 {
		c.Timeout = metadataFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, 0, badMetadataURL(id, "it is not a valid URL")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", metadataUserAgent)
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, unfetchable(id, fetchFailure(err, c.Timeout))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, unfetchable(id, fmt.Sprintf("its server answered with HTTP status %d, not 200", resp.StatusCode))
	}
	if !jsonContentType(resp.Header.Get("Content-Type")) {
		return nil, 0, unfetchable(id, "its server did not serve it as JSON (application/json)")
	}
	tooLarge := unfetchable(id, fmt.Sprintf("it is larger than %d bytes", maxMetadataDocument))
	if resp.ContentLength > maxMetadataDocument {
		return nil, 0, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataDocument+1))
	if err != nil {
		return nil, 0, unfetchable(id, fetchFailure(err, c.Timeout))
	}
	if len(body) > maxMetadataDocument {
		return nil, 0, tooLarge
	}
	return body, metadataTTL(resp.Header, s.now()), nil
}

// fetchFailure says in a few words why a fetch failed.
func fetchFailure(err error, timeout time.Duration) string {
	var blocked *blockedAddrError
	var dnsErr *net.DNSError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	switch {
	case errors.As(err, &blocked):
		return "its host resolves to " + blocked.why + " address, which alterhost does not fetch from"
	case errors.Is(err, errMetadataRedirect):
		return "its server answered with a redirect; the document must be served at the client_id itself"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return "it took longer than " + timeout.String() + " to arrive"
	case errors.As(err, &dnsErr):
		return "its host name could not be resolved"
	case errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &wrongHost):
		return "its server's TLS certificate could not be verified"
	default:
		return "its server could not be reached"
	}
}

// jsonContentType accepts application/json and any application/*+json.
func jsonContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// metadataTTL is how long a fetched document stays fresh: Cache-Control
// max-age, else Expires, less the Age a cache in between reports, within
// [minMetadataTTL, maxMetadataTTL]. no-store and no-cache get the minimum,
// as does a document without caching headers.
func metadataTTL(h http.Header, now time.Time) time.Duration {
	ttl, known := time.Duration(0), false
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return minMetadataTTL
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
					ttl, known = seconds(n), true
				}
			}
		}
	}
	if !known && h.Get("Expires") != "" {
		// An Expires that does not parse means already expired (RFC 9111
		// §5.3), which the minimum covers.
		if exp, err := http.ParseTime(h.Get("Expires")); err == nil {
			base := now
			if d, err := http.ParseTime(h.Get("Date")); err == nil {
				base = d
			}
			ttl = exp.Sub(base)
		}
	}
	if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
		ttl -= seconds(age)
	}
	return min(max(ttl, minMetadataTTL), maxMetadataTTL)
}

// seconds converts n seconds, saturating at a day beyond maxMetadataTTL.
func seconds(n int64) time.Duration {
	const limit = int64((maxMetadataTTL + 24*time.Hour) / time.Second)
	return time.Duration(min(n, limit)) * time.Second
}

// checkMetadataDocument checks a fetched document and returns its metadata
// as stored. A document vouches for a public client only: a secret in it
// would be public, so no secret-based authentication can rest on one.
func (s *Server) checkMetadataDocument(id string, body []byte) (oauthex.ClientRegistrationMetadata, error) {
	var meta oauthex.ClientRegistrationMetadata
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return meta, unacceptable(id, "it is not a JSON object")
	}
	var docID string
	if raw, ok := fields["client_id"]; !ok || json.Unmarshal(raw, &docID) != nil {
		return meta, unacceptable(id, "it has no client_id string")
	}
	if docID != id {
		return meta, unacceptable(id, "its client_id does not match its URL")
	}
	for _, k := range []string{"client_secret", "client_secret_expires_at"} {
		if _, ok := fields[k]; ok {
			return meta, unacceptable(id, "it has a "+k+", but a client identified by a metadata document has no secret")
		}
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return meta, unacceptable(id, "its "+typeErr.Field+" has the wrong type")
		}
		return meta, unacceptable(id, "its fields do not have the types of client metadata")
	}
	switch meta.TokenEndpointAuthMethod {
	case "", authNone:
	case "private_key_jwt":
		return meta, unacceptable(id, "its token_endpoint_auth_method is private_key_jwt, which alterhost does not support; use none")
	default:
		return meta, unacceptable(id, "its token_endpoint_auth_method must be none")
	}
	if err := s.validateMetadata(&meta); err != nil {
		var re *regError
		if errors.As(err, &re) {
			return meta, unacceptable(id, re.desc)
		}
		return meta, err
	}
	return meta, nil
}

// metadataErrorPage answers an authorization request whose client's
// metadata document failed with a page saying why, and reports whether
// err was such a failure. A page, never a redirect: the redirect URI is
// what the document would have vouched for.
func (s *Server) metadataErrorPage(w http.ResponseWriter, err error) bool {
	var me *metadataError
	if !errors.As(err, &me) {
		return false
	}
	if me.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "60")
	}
	s.message(w, me.status, "This application's details could not be used",
		strings.ToUpper(me.msg[:1])+me.msg[1:]+". Start again from the application, or tell its developers.")
	return true
}

// metadataTokenError is the token and revocation endpoints' answer to a
// client whose metadata document failed: invalid_client, saying why.
func metadataTokenError(err error, basic bool) (*tokenError, bool) {
	var me *metadataError
	if !errors.As(err, &me) {
		return nil, false
	}
	return &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: me.msg, basicFailed: basic}, true
}

// defaultMetadataClient is the fetcher when Options.MetadataClient is nil:
// public addresses only. One for the process, so connections are reused.
var defaultMetadataClient = sync.OnceValue(func() *http.Client {
	return newMetadataClient(nil, nil, metadataFetchTimeout)
})

// blockedAddrError is a dial the guard refused.
type blockedAddrError struct {
	addr netip.Addr
	why  string // "a loopback", "a private", ...
}

func (e *blockedAddrError) Error() string {
	return "refusing to connect to " + e.addr.String() + ": " + e.why + " address"
}

// newMetadataClient returns an http.Client that fetches over https only,
// follows no redirect, keeps no cookies, uses no proxy, gives up after
// timeout, and connects only to public addresses, checked on the address
// each connection is actually made to, after name resolution. allow, if
// not nil, permits further addresses (tests: loopback). tlsConf, if not
// nil, is the TLS configuration (tests: a private CA).
func newMetadataClient(allow func(netip.Addr) bool, tlsConf *tls.Config, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("refusing to connect to %q: not an IP address", address)
			}
			a := ap.Addr().Unmap().WithZone("")
			if why := nonPublic(a); why != "" && (allow == nil || !allow(a)) {
				return &blockedAddrError{addr: a, why: why}
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would connect where the guard cannot see
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConf,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 32 << 10,
	}
	return &http.Client{
		Transport:     httpsOnly{tr},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errMetadataRedirect },
	}
}

// httpsOnly refuses any request but https.
type httpsOnly struct{ rt http.RoundTripper }

func (t httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing to fetch %s://%s: https only", r.URL.Scheme, r.URL.Host)
	}
	return t.rt.RoundTrip(r)
}

// reservedPrefixes hold no public services: "this network", carrier-grade
// NAT (some clouds put metadata services there), IETF protocol
// assignments, documentation, benchmarking, the old class E and
// broadcast, and on IPv6 discard-only, documentation, Teredo and the
// deprecated site-local and IPv4-compatible ranges.
var reservedPrefixes = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a reserved"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "a reserved"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a reserved"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a reserved"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a reserved"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a reserved"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved"},
	{netip.MustParsePrefix("::/96"), "a reserved"},
	{netip.MustParsePrefix("100::/64"), "a reserved"},
	{netip.MustParsePrefix("2001::/32"), "a reserved"},
	{netip.MustParsePrefix("2001:db8::/32"), "a reserved"},
	{netip.MustParsePrefix("fec0::/10"), "a private"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a private"}, // local-use NAT64
}

// Prefixes that embed an IPv4 address a router will forward to: NAT64 in
// the low 32 bits, 6to4 in bits 16 to 47.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// nonPublic says what kind of address a is ("a loopback", "a private",
// ...) if it is not a public unicast address; "" if it is. IPv4-mapped
// addresses are judged by the IPv4 address, and so are the IPv4 addresses
// that NAT64 and 6to4 addresses lead to.
func nonPublic(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "an invalid"
	case a.IsUnspecified():
		return "an unspecified"
	case a.IsLoopback():
		return "a loopback"
	case a.IsPrivate():
		return "a private"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "a link-local"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast"
	}
	for _, r := range reservedPrefixes {
		if r.p.Contains(a) {
			return r.why
		}
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			return nonPublic(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(a):
			return nonPublic(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	return ""
}
