package provider

import (
	"slices"
	"strings"

	"github.com/alterhost/alterhost/abi"
)

// Presets returns the built-in provider configurations, by name. They have
// no client id: a preset becomes usable once ALTERHOST_<NAME>_CLIENT_ID and
// ALTERHOST_<NAME>_CLIENT_SECRET are set, or a configuration file entry of
// the same name supplies them. Each call returns fresh copies.
//
// The endpoints and quirks below follow each provider's documentation as
// of 2025-2026; where that documentation was unclear the comment says so.
func Presets() []Config {
	ps := []Config{
		{
			Name:        "github",
			DisplayName: "GitHub",
			AuthURL:     "https://github.com/login/oauth/authorize",
			TokenURL:    "https://github.com/login/oauth/access_token",
			// The REST API's "delete an app authorization": it removes the
			// grant and every token of it, and takes the access token.
			// A replaced grant is revoked with "delete an app token"
			// instead, which ends the token sent alone.
			RevokeURL:         "https://api.github.com/applications/{client_id}/grant",
			ReplacedRevokeURL: "https://api.github.com/applications/{client_id}/token",
			RevokeStyle:       RevokeGitHub,
			// No default scopes: without any, a token reads public data;
			// tools ask for "repo" and the like. GitHub Apps ignore scopes.
			// Requests take spaces, responses list scopes with commas.
			ScopeSeparator: " ",
			PKCE:           true, // supported since July 2025, S256 only
			TokenAuth:      TokenAuthParams,
			APIHosts:       []abi.HostPattern{"api.github.com", "uploads.github.com"},
			// Expiring user tokens of GitHub Apps refresh; a dead refresh
			// token is "bad_refresh_token", answered with HTTP 200.
			InvalidGrantErrors: []string{"bad_refresh_token"},
		},
		{
			Name:        "google",
			DisplayName: "Google",
			AuthURL:     "https://accounts.google.com/o/oauth2/v2/auth",
			TokenURL:    "https://oauth2.googleapis.com/token",
			RevokeURL:   "https://oauth2.googleapis.com/revoke",
			RevokeStyle: RevokeRFC7009,
			// Revoking either token removes the app's access to the account:
			// every token of it ends, a newer consent's included, so a
			// replaced grant is not revoked (no RevokeReplaced).
			Scopes:         []string{"openid", "email"}, // Google refuses a request without scope
			ScopeSeparator: " ",
			PKCE:           true,
			TokenAuth:      TokenAuthParams,
			APIHosts:       []abi.HostPattern{"*.googleapis.com"},
			ExtraAuthParams: map[string]string{
				// A refresh token at every consent, not just the first.
				"access_type": "offline",
				"prompt":      "consent",
				// Adding a tool's scopes later keeps the earlier ones.
				"include_granted_scopes": "true",
			},
		},
		{
			Name:        "slack",
			DisplayName: "Slack",
			AuthURL:     "https://slack.com/oauth/v2/authorize",
			TokenURL:    "https://slack.com/api/oauth.v2.access",
			// auth.revoke revokes the token it is called with.
			RevokeURL:      "https://slack.com/api/auth.revoke",
			RevokeStyle:    RevokeBearer,
			RevokeReplaced: true,
			// alterhost acts as the person: user-token scopes, asked as
			// user_scope, comma-separated; the token comes back under
			// authed_user.
			ScopeSeparator: ",",
			ScopeParam:     "user_scope",
			// oauth.v2.access documents code_verifier; the authorize page's
			// code_challenge is less clearly documented.
			PKCE:      true,
			TokenAuth: TokenAuthHeader, // Slack asks for HTTP Basic
			// files.slack.com serves url_private downloads, which need the
			// token too.
			APIHosts:           []abi.HostPattern{"slack.com", "files.slack.com"},
			UserTokenField:     "authed_user",
			AccountIDField:     "authed_user.id",
			InvalidGrantErrors: []string{"invalid_refresh_token"},
		},
		{
			Name:        "microsoft",
			DisplayName: "Microsoft",
			// The "common" tenant takes work, school and personal accounts;
			// override both URLs in a config file for one tenant.
			AuthURL:  "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
			TokenURL: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
			// No RFC 7009 endpoint: the person removes the app at
			// myapps.microsoft.com or account.live.com/consent/Manage.
			// offline_access is what yields a refresh token. The token
			// response's scope may list Graph scopes in full URI form
			// ("https://graph.microsoft.com/User.Read"); unverified.
			Scopes:         []string{"offline_access", "User.Read"},
			ScopeSeparator: " ",
			PKCE:           true,
			TokenAuth:      TokenAuthParams,
			APIHosts:       []abi.HostPattern{"graph.microsoft.com"},
		},
		{
			Name:        "gitlab",
			DisplayName: "GitLab",
			// gitlab.com; for a self-managed instance, override the URLs
			// and api_hosts.
			AuthURL:        "https://gitlab.com/oauth/authorize",
			TokenURL:       "https://gitlab.com/oauth/token",
			RevokeURL:      "https://gitlab.com/oauth/revoke",
			RevokeStyle:    RevokeRFC7009,
			RevokeReplaced: true, // RFC 7009: the token sent, and what was issued with it
			Scopes:         []string{"read_user"},
			ScopeSeparator: " ",
			PKCE:           true,
			TokenAuth:      TokenAuthParams,
			APIHosts:       []abi.HostPattern{"gitlab.com"},
		},
		{
			Name:        "notion",
			DisplayName: "Notion",
			AuthURL:     "https://api.notion.com/v1/oauth/authorize",
			TokenURL:    "https://api.notion.com/v1/oauth/token",
			// Documented with a JSON body, HTTP Basic and a required
			// Notion-Version header; the version to send is a guess at a
			// current one.
			RevokeURL:     "https://api.notion.com/v1/oauth/revoke",
			RevokeStyle:   RevokeJSON,
			RevokeHeaders: map[string]string{"Notion-Version": "2025-09-03"},
			// Notion has no OAuth scopes: access is what the person shares.
			ScopeSeparator: " ",
			PKCE:           false, // not documented
			TokenAuth:      TokenAuthHeader,
			APIHosts:       []abi.HostPattern{"api.notion.com"},
			// owner=user makes the token act for the person.
			ExtraAuthParams: map[string]string{"owner": "user"},
			AccountIDField:  "owner.user.id",
		},
		{
			Name:        "linear",
			DisplayName: "Linear",
			AuthURL:     "https://linear.app/oauth/authorize",
			TokenURL:    "https://api.linear.app/oauth/token",
			// Older documentation revoked with the token as bearer; newer
			// clients post token=... as RFC 7009 describes. Unverified.
			RevokeURL:   "https://api.linear.app/oauth/revoke",
			RevokeStyle: RevokeRFC7009,
			// "read" is always granted; requests take commas, responses
			// have been seen with spaces.
			Scopes:         []string{"read"},
			ScopeSeparator: ",",
			PKCE:           true, // believed supported; harmless if ignored
			TokenAuth:      TokenAuthParams,
			APIHosts:       []abi.HostPattern{"api.linear.app"},
		},
	}
	slices.SortFunc(ps, func(a, b Config) int { return strings.Compare(a.Name, b.Name) })
	return ps
}

// preset returns the preset called name.
func preset(name string) (Config, bool) {
	for _, c := range Presets() {
		if c.Name == name {
			return c, true
		}
	}
	return Config{}, false
}
