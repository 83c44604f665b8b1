package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/alterhost/alterhost/vault"
)

// maxRevokeBody bounds how much of a revocation answer is read.
const maxRevokeBody = 64 << 10

// Revoke asks the provider to revoke token. With the RFC 7009 and JSON
// styles, revoking the refresh token ends the whole grant at most
// providers; the bearer and GitHub styles need the access token. Prefer
// RevokeGrant, which picks. Without a revocation endpoint the error wraps
// ErrRevokeUnsupported.
func (p *Provider) Revoke(ctx context.Context, token string) error {
	return p.revoke(ctx, p.cfg.RevokeURL, token)
}

// revoke revokes token at target, in the provider's revocation style.
func (p *Provider) revoke(ctx context.Context, target, token string) error {
	if target == "" {
		return fmt.Errorf("provider %q: %w", p.cfg.Name, ErrRevokeUnsupported)
	}
	if !p.Configured() {
		return fmt.Errorf("provider %q: revoke: %w", p.cfg.Name, ErrNotConfigured)
	}
	if token == "" {
		return fmt.Errorf("provider %q: revoke: no token given", p.cfg.Name)
	}
	req, err := p.revokeRequest(ctx, target, token)
	if err != nil {
		return fmt.Errorf("provider %q: revoke: %w", p.cfg.Name, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("provider %q: revoke: %w", p.cfg.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRevokeBody))
	// Slack answers every call with 200 and says {"ok": false} on failure.
	var answer struct {
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &answer)
	if resp.StatusCode/100 == 2 && (answer.OK == nil || *answer.OK) {
		return nil
	}
	what := answer.Error
	if what == "" {
		// The excerpt never repeats the token, should the provider echo it.
		what = strings.ReplaceAll(strings.TrimSpace(string(body)), token, "[token]")
		if len(what) > 200 {
			what = what[:200] + "..."
		}
	}
	return fmt.Errorf("provider %q: revoke: HTTP %d: %s", p.cfg.Name, resp.StatusCode, what)
}

// RevokeGrant revokes t's grant, sending the token the provider's style
// wants: the refresh token if there is one for RFC 7009 and JSON, else the
// access token.
func (p *Provider) RevokeGrant(ctx context.Context, t vault.Token) error {
	return p.revoke(ctx, p.cfg.RevokeURL, p.grantToken(t))
}

// RevokeReplacedGrant revokes a grant that a new consent replaced: at
// ReplacedRevokeURL when the provider has one (where RevokeURL would end
// the new grant too), else as RevokeGrant.
func (p *Provider) RevokeReplacedGrant(ctx context.Context, t vault.Token) error {
	if p.cfg.ReplacedRevokeURL != "" {
		return p.revoke(ctx, p.cfg.ReplacedRevokeURL, p.grantToken(t))
	}
	return p.RevokeGrant(ctx, t)
}

// grantToken is the token of t that the revocation style wants.
func (p *Provider) grantToken(t vault.Token) string {
	if (p.cfg.RevokeStyle == RevokeRFC7009 || p.cfg.RevokeStyle == RevokeJSON) && t.RefreshToken != "" {
		return t.RefreshToken
	}
	return t.AccessToken
}

func (p *Provider) revokeRequest(ctx context.Context, target, token string) (*http.Request, error) {
	target = strings.ReplaceAll(target, "{client_id}", url.PathEscape(p.cfg.ClientID))
	var (
		req *http.Request
		err error
	)
	basic := func() {
		// OAuth endpoints form-encode Basic credentials (RFC 6749 §2.3.1);
		// GitHub's REST API takes them as they are.
		if p.cfg.RevokeStyle == RevokeGitHub {
			req.SetBasicAuth(p.cfg.ClientID, p.secretValue())
			return
		}
		req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), url.QueryEscape(p.secretValue()))
	}
	switch p.cfg.RevokeStyle {
	case RevokeJSON, RevokeGitHub:
		method, field := http.MethodPost, "token"
		if p.cfg.RevokeStyle == RevokeGitHub {
			method, field = http.MethodDelete, "access_token"
		}
		b, _ := json.Marshal(map[string]string{field: token})
		if req, err = http.NewRequestWithContext(ctx, method, target, bytes.NewReader(b)); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		basic()
	case RevokeBearer:
		if req, err = http.NewRequestWithContext(ctx, http.MethodPost, target, nil); err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	default: // RevokeRFC7009
		form := url.Values{"token": {token}}
		useParams := p.cfg.TokenAuth == TokenAuthParams || p.cfg.Public
		if useParams {
			form.Set("client_id", p.cfg.ClientID)
			if s := p.secretValue(); s != "" {
				form.Set("client_secret", s)
			}
		}
		if req, err = http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode())); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if !useParams {
			basic()
		}
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range p.cfg.RevokeHeaders {
		req.Header.Set(k, v)
	}
	return req, nil
}

var _ vault.ReplacedRevoker = (*Provider)(nil)
