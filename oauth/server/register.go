package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/alterhost/alterhost/vault/store"
)

// Limits on what a registration may hold. A real client sends well under
// a kilobyte; the limits keep an anonymous endpoint from filling the store.
const (
	maxRegistrationBody = 64 << 10
	maxRedirectURIs     = 10
	maxURILength        = 2000
	maxClientName       = 200
	maxContacts         = 10
)

// Token endpoint authentication methods.
const (
	authNone       = "none"
	authSecretBase = "client_secret_basic"
	authSecretPost = "client_secret_post"
)

// registrationResponse is RFC 7591 §3.2.1. It is not the SDK's
// ClientRegistrationResponse because that one omits a zero
// client_secret_expires_at, which the RFC requires whenever a secret is
// issued (0 meaning it never expires).
type registrationResponse struct {
	oauthex.ClientRegistrationMetadata
	ClientID              string `json:"client_id"`
	ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
}

// regError is a registration refused, with the RFC 7591 error code.
type regError struct{ code, desc string }

func (e *regError) Error() string { return e.code + ": " + e.desc }

func badMeta(format string, a ...any) error {
	return &regError{"invalid_client_metadata", fmt.Sprintf(format, a...)}
}

func badRedirect(format string, a ...any) error {
	return &regError{"invalid_redirect_uri", fmt.Sprintf(format, a...)}
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeJSON(w, http.StatusMethodNotAllowed, oauthError{"invalid_request", "use POST"})
		return
	}
	// Every refusal below is invalid_client_metadata unless it says otherwise.
	outcome := "invalid_client_metadata"
	defer func() { s.opts.Observer.Registration(outcome) }()
	if !s.registerLimit.allow(remoteIP(r)) {
		outcome = "rate_limited"
		w.Header().Set("Retry-After", "60")
		writeJSON(w, http.StatusTooManyRequests, oauthError{"invalid_request", "too many registrations from this address; try again later"})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeJSON(w, http.StatusBadRequest, oauthError{"invalid_client_metadata", "the body must be application/json"})
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, oauthError{"invalid_client_metadata", "the registration is too large"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_client_metadata", "could not read the body"})
		return
	}
	// Unknown fields are allowed (RFC 7591 §2: the server ignores what it
	// does not understand); known ones must have their types.
	var meta oauthex.ClientRegistrationMetadata
	if err := json.Unmarshal(body, &meta); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_client_metadata", "the body is not a JSON object of client metadata"})
		return
	}
	if err := s.validateMetadata(&meta); err != nil {
		var re *regError
		if errors.As(err, &re) {
			outcome = re.code
			writeJSON(w, http.StatusBadRequest, oauthError{re.code, re.desc})
			return
		}
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_client_metadata", err.Error()})
		return
	}
	stored, err := json.Marshal(meta)
	if err != nil {
		outcome = "server_error"
		s.serverError(w, "register", err)
		return
	}
	now := s.now()
	c := store.Client{ID: "ahc_" + random(18), Metadata: stored, CreatedAt: now}
	resp := registrationResponse{ClientRegistrationMetadata: meta, ClientID: c.ID, ClientIDIssuedAt: now.Unix()}
	if meta.TokenEndpointAuthMethod != authNone {
		secret := "ah_cs_" + random(32)
		c.SecretHash = hash(secret)
		never := int64(0)
		resp.ClientSecret, resp.ClientSecretExpiresAt = secret, &never
	}
	if err := s.store.PutClient(r.Context(), c); err != nil {
		outcome = "server_error"
		s.serverError(w, "register", err)
		return
	}
	outcome = "ok"
	s.opts.Logger.Info("oauth: client registered", "client_id", c.ID, "client_name", meta.ClientName,
		"redirect_uris", meta.RedirectURIs, "auth_method", meta.TokenEndpointAuthMethod)
	writeJSON(w, http.StatusCreated, resp)
}

// validateMetadata checks meta and normalizes it to what is stored:
// defaults filled in, what this server does not support dropped. Its
// messages name fields, never their values: they are shown on pages for
// metadata documents, whose content is not this server's to display.
func (s *Server) validateMetadata(m *oauthex.ClientRegistrationMetadata) error {
	if len(m.RedirectURIs) == 0 {
		return badRedirect("redirect_uris is required")
	}
	if len(m.RedirectURIs) > maxRedirectURIs {
		return badRedirect("at most %d redirect_uris", maxRedirectURIs)
	}
	for i, u := range m.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			var re *regError
			if errors.As(err, &re) {
				re.desc = fmt.Sprintf("redirect_uris[%d]: %s", i, re.desc)
			}
			return err
		}
	}

	switch m.TokenEndpointAuthMethod {
	case "":
		// RFC 7591's default is client_secret_basic, but every MCP client is
		// a public client that states "none", and one that says nothing
		// surely cannot keep a secret either.
		m.TokenEndpointAuthMethod = authNone
	case authNone, authSecretBase, authSecretPost:
	default:
		return badMeta("token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
	}

	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	for i, g := range m.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return badMeta("grant_types[%d] is not supported; use authorization_code and refresh_token", i)
		}
	}
	if !slices.Contains(m.GrantTypes, "authorization_code") {
		return badMeta("grant_types must include authorization_code")
	}
	m.GrantTypes = dedupe(m.GrantTypes)
	if len(m.ResponseTypes) == 0 {
		m.ResponseTypes = []string{"code"}
	}
	for i, rt := range m.ResponseTypes {
		if rt != "code" {
			return badMeta("response_types[%d] is not supported; use code", i)
		}
	}
	m.ResponseTypes = []string{"code"}

	if utf8.RuneCountInString(m.ClientName) > maxClientName || !utf8.ValidString(m.ClientName) ||
		strings.IndexFunc(m.ClientName, invisible) >= 0 {
		return badMeta("client_name must be at most %d printable characters", maxClientName)
	}
	if m.Scope != "" {
		for _, sc := range strings.Fields(m.Scope) {
			if !slices.Contains(s.opts.Scopes, sc) {
				return badMeta("scope names a scope this server does not offer; it offers %s", strings.Join(s.opts.Scopes, " "))
			}
		}
		m.Scope = strings.Join(dedupe(strings.Fields(m.Scope)), " ")
	}
	switch m.ApplicationType {
	case "", "web", "native":
	default:
		return badMeta("application_type must be web or native")
	}
	if len(m.Contacts) > maxContacts {
		return badMeta("at most %d contacts", maxContacts)
	}
	for name, v := range map[string]string{"client_uri": m.ClientURI, "logo_uri": m.LogoURI,
		"tos_uri": m.TOSURI, "policy_uri": m.PolicyURI} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || len(v) > maxURILength || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return badMeta("%s must be an http(s) URL", name)
		}
	}
	// Keys and software statements serve client authentication methods this
	// server does not offer; dropped rather than stored unchecked.
	m.JWKS, m.JWKSURI, m.SoftwareStatement = "", "", ""
	for _, v := range []string{m.SoftwareID, m.SoftwareVersion} {
		if len(v) > maxClientName {
			return badMeta("software_id and software_version must be at most %d bytes", maxClientName)
		}
	}
	return nil
}

// checkRedirectURI accepts https URLs; http only to loopback (RFC 8252
// §7.3); and private-use schemes of native apps (RFC 8252 §7.1), except
// schemes a browser gives meaning to. It refuses fragments
// (RFC 6749 §3.1.2) and userinfo, and hosts with anything but letters,
// digits, dots, hyphens and IP literals, because the host is shown to the
// person and written into the consent page's Content-Security-Policy.
func checkRedirectURI(raw string) error {
	if raw == "" || len(raw) > maxURILength {
		return badRedirect("a redirect URI must be 1 to %d bytes", maxURILength)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }) >= 0 {
		return badRedirect("a redirect URI contains spaces or non-ASCII characters")
	}
	if strings.Contains(raw, "#") {
		return badRedirect("a redirect URI must not have a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return badRedirect("a redirect URI must be an absolute URI")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return badRedirect("a redirect URI must not have userinfo")
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ws", "wss", "ftp",
		"intent", "view-source", "jar":
		return badRedirect("a redirect URI must not use the %s scheme", scheme)
	case "https":
		if u.Host == "" || u.Opaque != "" || !safeHost(u.Hostname()) {
			return badRedirect("an https redirect URI needs a valid host")
		}
	case "http":
		if u.Opaque != "" || !isLoopbackHost(u.Hostname()) {
			return badRedirect("http redirect URIs are allowed only to 127.0.0.1, [::1] or localhost; use https")
		}
	default:
		// RFC 8252 asks native apps for reverse-domain schemes, but MCP
		// clients in use register others (cursor://). Another app claiming
		// the same scheme could receive the code, and PKCE, which this
		// server requires, makes that code useless to it; the consent page
		// names the scheme so the person sees which app is asking.
		if u.Host != "" && !safeHost(u.Hostname()) {
			return badRedirect("a redirect URI's host is invalid")
		}
	}
	return nil
}

// invisible reports control and format characters, which in a client
// name shown on the consent page could reorder (bidi overrides) or hide
// what the person reads.
func invisible(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }

// safeHost reports whether h is a DNS name or an IP literal.
func safeHost(h string) bool {
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func dedupe(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// client is a registered client, its metadata parsed.
type client struct {
	store.Client
	meta oauthex.ClientRegistrationMetadata
}

func (c *client) public() bool { return c.meta.TokenEndpointAuthMethod == authNone }

// name is how the consent page names the client. A client known by its
// metadata document also names the document's host: anyone can write any
// client_name, but only the host's owner can publish a document there.
func (c *client) name() string {
	name := c.meta.ClientName
	if name == "" {
		name = "An unnamed client"
	}
	if host, ok := metadataHost(c.ID); ok {
		return name + " (" + host + ")"
	}
	return name
}

// loadClient returns the client with id: a registered client, or for an
// https URL the client its metadata document describes (see cimd.go). An
// unknown client is store.ErrNotFound; a metadata document that cannot be
// used is a *metadataError, which counts as store.ErrNotFound too.
func (s *Server) loadClient(r *http.Request, id string) (*client, error) {
	if id == "" {
		return nil, store.ErrNotFound
	}
	if urlClientID(id) {
		return s.loadMetadataClient(r, id)
	}
	c, err := s.store.GetClient(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if !c.ExpiresAt.IsZero() && !s.now().Before(c.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	return parseClient(c)
}

// parseClient parses a stored client's metadata.
func parseClient(c store.Client) (*client, error) {
	cl := &client{Client: c}
	if err := json.Unmarshal(c.Metadata, &cl.meta); err != nil {
		return nil, fmt.Errorf("client %s: stored metadata: %w", c.ID, err)
	}
	return cl, nil
}

// matchRedirect returns the redirect URI to use if requested is one of
// c's: the same string, or, for a loopback http URI, the same but for the
// port, which a native app picks when it starts (RFC 8252 §7.3). Nothing
// else is lenient: no prefix, no path or query variations.
func (c *client) matchRedirect(requested string) (string, bool) {
	if requested == "" {
		return "", false
	}
	if slices.Contains(c.meta.RedirectURIs, requested) {
		return requested, true
	}
	ru, err := url.Parse(requested)
	if err != nil || ru.Scheme != "http" || !isLoopbackHost(ru.Hostname()) || ru.User != nil ||
		ru.Fragment != "" || strings.Contains(requested, "#") || ru.Opaque != "" {
		return "", false
	}
	if p := ru.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return "", false
		}
	}
	for _, reg := range c.meta.RedirectURIs {
		u, err := url.Parse(reg)
		if err != nil || u.Scheme != "http" {
			continue
		}
		if u.Hostname() == ru.Hostname() && u.EscapedPath() == ru.EscapedPath() && u.RawQuery == ru.RawQuery &&
			u.ForceQuery == ru.ForceQuery {
			return requested, true
		}
	}
	return "", false
}
