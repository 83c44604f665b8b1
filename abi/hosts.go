package abi

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// HostPattern is one entry of a manifest's allowed_hosts:
//
//	api.github.com        exactly this host
//	*.googleapis.com      any subdomain of googleapis.com (not the apex)
//	127.0.0.1:8080        an IP literal; [::1]:9000 for IPv6
//
// Without ":port" a pattern admits only the scheme's default port (443 for
// https, 80 for http); with one, only that port. Matching ignores case.
type HostPattern string

func (p HostPattern) split() (host, port string) {
	s := strings.ToLower(string(p))
	if h, pt, err := net.SplitHostPort(s); err == nil {
		return h, pt
	}
	return strings.Trim(s, "[]"), ""
}

func (p HostPattern) validate() error {
	s := string(p)
	if s == "" {
		return errors.New("is empty")
	}
	if strings.ContainsAny(s, "/?#@ ") || strings.Contains(s, "://") {
		return errors.New("is not a host: write the host alone, without scheme, path or credentials")
	}
	host, port := p.split()
	if port != "" {
		if n, err := parsePort(port); err != nil || n == 0 {
			return errors.New("has an invalid port")
		}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	name := strings.TrimPrefix(host, "*.")
	if strings.Contains(name, "*") {
		return errors.New(`may use "*" only as the whole first label, as in "*.example.com"`)
	}
	if name != host && !strings.Contains(name, ".") {
		return errors.New("wildcards must stay under a registrable domain, as in \"*.example.com\"")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("has an empty or overlong label")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return errors.New("has a character that is not allowed in a host name (use punycode for international names)")
			}
		}
	}
	return nil
}

func parsePort(s string) (int, error) {
	n := 0
	if s == "" || len(s) > 5 {
		return 0, errors.New("bad port")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("bad port")
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, errors.New("bad port")
	}
	return n, nil
}

// Match reports whether u's scheme is http or https and its host and port
// are admitted by p.
func (p HostPattern) Match(u *url.URL) bool {
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	want, wantPort := p.split()
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if wantPort == "" {
		wantPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if port != wantPort {
		return false
	}
	if ip := net.ParseIP(want); ip != nil {
		return ip.Equal(net.ParseIP(host))
	}
	if suffix, ok := strings.CutPrefix(want, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return host == want
}

// AllowedHost reports whether any pattern admits u. No patterns, no hosts.
func AllowedHost(patterns []HostPattern, u *url.URL) bool {
	for _, p := range patterns {
		if p.Match(u) {
			return true
		}
	}
	return false
}
