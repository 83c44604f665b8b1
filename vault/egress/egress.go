// Package egress sends a plugin's alter_request to the outside world under
// the plugin's policy: http and https only, only the manifest's
// allowed_hosts (checked again on every redirect), no internal addresses,
// bounded bodies and time, no credentials from the guest and none handed
// back to it. For a tool with a provider it adds the calling person's
// credential on the way out, and it writes one audit record per request.
package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/store"
)

// Caller is the plugin and tool on whose behalf a request is made; their
// manifest is the policy.
type Caller struct {
	Plugin *abi.Manifest
	Tool   *abi.Tool
}

// Credentials hands out the credential for one request; *vault.Vault is
// one.
type Credentials interface {
	Credential(ctx context.Context, subject, provider string, scopes []string) (string, *abi.Error)
}

// Recorder takes audit records; *vault.Auditor is one.
type Recorder interface {
	Record(store.AuditRecord)
}

// Options configure a Client. The zero value sends nothing credentialed,
// audits nothing and refuses internal addresses.
type Options struct {
	Providers   vault.Providers
	Credentials Credentials
	Audit       Recorder
	// AllowPrivate lets requests reach loopback, private, link-local and
	// other internal addresses. Off by default: it is for tests and for
	// operators who mean it.
	AllowPrivate bool
	// Transport, if set, wraps the guarded transport, e.g. to serve the
	// sandbox provider's virtual host in-process.
	Transport func(base http.RoundTripper) http.RoundTripper
	// PropagateTrace sends W3C trace context (traceparent) upstream when
	// the call is traced. Off by default: an upstream then learns nothing
	// of the host's trace ids.
	PropagateTrace bool
}

// Client performs requests. The zero value is not usable; use [New].
type Client struct {
	http *http.Client
	opts Options
}

// maxRedirects bounds redirect chains, each hop re-checked against policy.
const maxRedirects = 10

type callerKey struct{}

// New returns a Client. Unless opts.AllowPrivate, it refuses internal
// addresses after resolving names itself, and dials the address it checked,
// so DNS rebinding has no window.
func New(opts Options) *Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	var rt http.RoundTripper = &http.Transport{
		Proxy:                  nil, // a proxy would see past the allow-list
		DialContext:            guardedDial(dialer, opts.AllowPrivate),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 256 << 10,
	}
	if opts.Transport != nil {
		rt = opts.Transport(rt)
	}
	// Outermost, so a span covers what opts.Transport serves in-process too.
	rt = &tracedTransport{base: rt, propagate: opts.PropagateTrace}
	c := &Client{opts: opts}
	c.http = &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return abi.Errorf(abi.CodeBadRequest, "stopped after %d redirects", maxRedirects)
			}
			// A credential never follows a redirect to another host: the
			// guest gets the redirect and may ask again, checked anew.
			if via[0].Header.Get("Authorization") != "" && req.URL.Host != via[0].URL.Host {
				return http.ErrUseLastResponse
			}
			caller, _ := req.Context().Value(callerKey{}).(Caller)
			if err := checkHost(caller, req.URL, "redirected to"); err != nil {
				return err
			}
			return nil // not checkHost's typed nil, which would read as an error
		},
	}
	return c
}

// guardedDial resolves names itself, refuses internal addresses unless
// allowed, and dials exactly the addresses it checked.
func guardedDial(d *net.Dialer, allowPrivate bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []net.IPAddr
		if ip := net.ParseIP(host); ip != nil {
			ips = []net.IPAddr{{IP: ip}}
		} else if ips, err = net.DefaultResolver.LookupIPAddr(ctx, host); err != nil {
			return nil, err
		}
		for _, ip := range ips {
			if !allowPrivate && internal(ip.IP) {
				return nil, &internalAddrError{host: host, ip: ip.IP}
			}
		}
		var errs []error
		for _, ip := range ips {
			conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.IP.String(), port))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}

// sharedAddressSpace (RFC 6598, carrier-grade NAT) and "this network" hold
// no public services; some clouds put metadata services there.
var (
	sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork        = netip.MustParsePrefix("0.0.0.0/8")
)

// internal reports addresses a plugin must not reach by default: loopback,
// private, link-local (cloud metadata at 169.254.169.254 among them),
// multicast, unspecified and shared address space.
func internal(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return true
	}
	a, ok := netip.AddrFromSlice(ip)
	a = a.Unmap()
	return ok && (sharedAddressSpace.Contains(a) || thisNetwork.Contains(a))
}

type internalAddrError struct {
	host string
	ip   net.IP
}

func (e *internalAddrError) Error() string {
	if e.host == e.ip.String() {
		return fmt.Sprintf("%s is an internal address", e.host)
	}
	return fmt.Sprintf("%s resolves to the internal address %s", e.host, e.ip)
}

func checkHost(c Caller, u *url.URL, verb string) *abi.Error {
	if u.Scheme != "http" && u.Scheme != "https" {
		// Scheme and host only: the path and query may carry personal data.
		return abi.Errorf(abi.CodeHostNotAllowed, "%s %s://%s: only http and https are allowed", verb, u.Scheme, u.Host)
	}
	if !abi.AllowedHost(c.Plugin.AllowedHosts, u) {
		return abi.Errorf(abi.CodeHostNotAllowed,
			"%s %s, which is not in the allowed_hosts of plugin %q; add %q to its manifest to allow it",
			verb, u.Host, c.Plugin.Name, u.Host)
	}
	return nil
}

// forbiddenRequestHeaders are refused from guests: credentials come from the
// host alone, and framing headers belong to the HTTP client.
var forbiddenRequestHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true,
	"Host": true, "Connection": true, "Content-Length": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Keep-Alive": true, "Proxy-Connection": true,
}

// Do performs req for caller, as the person ctx identifies (see
// vault.WithIdentity), and returns the response or a typed error. Either
// way it records the request in the audit trail.
func (c *Client) Do(ctx context.Context, caller Caller, req *abi.OutboundRequest) (*abi.Response, *abi.Error) {
	start := time.Now()
	resp, aerr := c.do(ctx, caller, req)
	if c.opts.Audit != nil {
		id, _ := vault.IdentityFrom(ctx)
		r := store.AuditRecord{
			Time: start, Subject: id.Subject, Agent: id.Agent, ParentAgent: id.ParentAgent,
			Plugin: caller.Plugin.Name, Tool: caller.Tool.Name, Provider: caller.Tool.Provider,
			Method: req.Method, Host: req.URL.Host, Path: req.URL.EscapedPath(), Duration: time.Since(start),
		}
		if resp != nil {
			r.Status = resp.Status
		}
		if aerr != nil {
			r.ErrorCode = string(aerr.Code)
		}
		c.opts.Audit.Record(r)
	}
	return resp, aerr
}

func (c *Client) do(ctx context.Context, caller Caller, req *abi.OutboundRequest) (*abi.Response, *abi.Error) {
	if err := checkHost(caller, req.URL, "the request goes to"); err != nil {
		return nil, err
	}
	for name := range req.Header {
		if forbiddenRequestHeaders[http.CanonicalHeaderKey(name)] {
			return nil, abi.Errorf(abi.CodeBadRequest, "a plugin may not set the %s header; the host manages it", name)
		}
	}
	auth, aerr := c.credential(ctx, caller, req.URL)
	if aerr != nil {
		return nil, aerr
	}
	limits := caller.Plugin.Limits
	timeout := limits.RequestTimeout()
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, callerKey{}, caller), timeout)
	defer cancel()

	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL.String(), bytes.NewReader(req.Body))
	if err != nil {
		return nil, abi.Errorf(abi.CodeBadRequest, "cannot build the request: %v", err)
	}
	if len(req.Body) == 0 {
		hr.Body, hr.GetBody = http.NoBody, nil
	}
	hr.Header = req.Header.Clone()
	if hr.Header.Get("User-Agent") == "" {
		hr.Header.Set("User-Agent", "alterhost")
	}
	if auth != "" {
		hr.Header.Set("Authorization", auth)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, requestError(ctx, req, timeout, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limits.MaxResponseBodyBytes+1))
	if err != nil {
		return nil, requestError(ctx, req, timeout, err)
	}
	if int64(len(body)) > limits.MaxResponseBodyBytes {
		return nil, abi.Errorf(abi.CodeTooLarge, "the response from %s is larger than this plugin's limit of %d bytes",
			req.URL.Host, limits.MaxResponseBodyBytes)
	}
	return abi.NewResponse(resp.StatusCode, scrub(resp.Header), body), nil
}

// credential returns the Authorization value for a request to u, or "" when
// the tool has no provider or u is not one of the provider's API hosts.
func (c *Client) credential(ctx context.Context, caller Caller, u *url.URL) (string, *abi.Error) {
	name := caller.Tool.Provider
	if name == "" {
		return "", nil
	}
	var p vault.Provider
	ok := false
	if c.opts.Providers != nil {
		p, ok = c.opts.Providers.Provider(name)
	}
	if !ok || c.opts.Credentials == nil {
		return "", abi.Errorf(abi.CodePolicyDenied,
			"tool %q needs provider %q, which is not configured on this alterhost", caller.Tool.Name, name)
	}
	if !abi.AllowedHost(p.APIHosts(), u) {
		return "", nil // a host the plugin may reach, but not one the credential may go to
	}
	id, ok := vault.IdentityFrom(ctx)
	if !ok {
		return "", abi.Errorf(abi.CodeInternal, "the call has no signed-in person to act for")
	}
	token, aerr := c.opts.Credentials.Credential(ctx, id.Subject, name, caller.Tool.Scopes)
	if aerr != nil {
		return "", aerr
	}
	return "Bearer " + token, nil
}

// requestError maps a transport failure to a typed error whose message names
// the host but not the query, which may hold personal data.
func requestError(ctx context.Context, req *abi.OutboundRequest, timeout time.Duration, err error) *abi.Error {
	var ae *abi.Error
	if errors.As(err, &ae) {
		return ae
	}
	var internalErr *internalAddrError
	if errors.As(err, &internalErr) {
		return abi.Errorf(abi.CodeHostNotAllowed, "%s; internal addresses are refused unless the operator allows them", internalErr)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return abi.Errorf(abi.CodeTimeout, "%s did not answer within %s", req.URL.Host, timeout)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return abi.Errorf(abi.CodeTimeout, "%s did not answer in time", req.URL.Host)
	}
	return abi.Errorf(abi.CodeUpstreamUnreachable, "cannot reach %s: %v", req.URL.Host, cause(err))
}

// cause strips url.Error's "Get "https://...?q=...":" prefix, which repeats
// the full URL.
func cause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// scrub drops response headers that carry or set credentials: the guest
// must never hold a secret, even one an upstream hands out.
func scrub(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		if !sensitiveHeader(k) {
			out[k] = v
		}
	}
	return out
}

func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "set-cookie", "set-cookie2", "cookie", "authorization", "proxy-authorization",
		"proxy-authenticate", "x-api-key", "api-key":
		return true
	}
	return strings.Contains(n, "token") || strings.Contains(n, "secret") ||
		strings.Contains(n, "credential") || strings.HasPrefix(n, "x-auth") || strings.HasSuffix(n, "-api-key")
}
