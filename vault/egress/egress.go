// Package egress sends a plugin's alter_request to the outside world under
// the plugin's policy: http and https only, only the manifest's
// allowed_hosts (checked again on every redirect), bounded bodies and time,
// no credentials from the guest and none handed back to it.
package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/alterhost/alterhost/abi"
)

// Caller is the plugin and tool on whose behalf a request is made; their
// manifest is the policy.
type Caller struct {
	Plugin *abi.Manifest
	Tool   *abi.Tool
}

// Client performs requests. The zero value is not usable; use [New].
type Client struct {
	http *http.Client
}

// maxRedirects bounds redirect chains, each hop re-checked against policy.
const maxRedirects = 10

type callerKey struct{}

// New returns a Client. Names that resolve to loopback, private or
// link-local addresses are refused, so a public name pointed at an internal
// address cannot reach it; a plugin that must reach such an address lists
// the IP literal in allowed_hosts.
func New() *Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would see past the allow-list
		DialContext:            guardedDial(dialer),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 256 << 10,
	}
	c := &Client{}
	c.http = &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return abi.Errorf(abi.CodeBadRequest, "stopped after %d redirects", maxRedirects)
			}
			caller, _ := req.Context().Value(callerKey{}).(Caller)
			return checkHost(caller, req.URL, "redirected to")
		},
	}
	return c
}

// guardedDial resolves names itself and refuses internal addresses for them.
func guardedDial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if net.ParseIP(host) != nil {
			return d.DialContext(ctx, network, addr)
		}
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		var errs []error
		for _, ip := range ips {
			if internal(ip.IP) {
				return nil, &internalAddrError{host: host, ip: ip.IP}
			}
		}
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

func internal(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast()
}

type internalAddrError struct {
	host string
	ip   net.IP
}

func (e *internalAddrError) Error() string {
	return fmt.Sprintf("%s resolves to the internal address %s", e.host, e.ip)
}

func checkHost(c Caller, u *url.URL, verb string) error {
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

// Do performs req for caller and returns the response or a typed error.
func (c *Client) Do(ctx context.Context, caller Caller, req *abi.OutboundRequest) (*abi.Response, *abi.Error) {
	if err := checkHost(caller, req.URL, "the request goes to"); err != nil {
		return nil, err.(*abi.Error)
	}
	for name := range req.Header {
		if forbiddenRequestHeaders[http.CanonicalHeaderKey(name)] {
			return nil, abi.Errorf(abi.CodeBadRequest, "a plugin may not set the %s header; the host manages it", name)
		}
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

// requestError maps a transport failure to a typed error whose message names
// the host but not the query, which may hold personal data.
func requestError(ctx context.Context, req *abi.OutboundRequest, timeout time.Duration, err error) *abi.Error {
	var ae *abi.Error
	if errors.As(err, &ae) {
		return ae
	}
	var internalErr *internalAddrError
	if errors.As(err, &internalErr) {
		return abi.Errorf(abi.CodeHostNotAllowed, "%s; list the IP literal in allowed_hosts to reach it on purpose", internalErr)
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
