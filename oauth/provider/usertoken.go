package provider

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
)

// maxTokenBody matches x/oauth2's own cap on token responses.
const maxTokenBody = 1 << 20

// userTokenTransport lifts the person's token out of a nested object in
// token responses (Slack's "authed_user") to the top level, where x/oauth2
// reads it. Slack puts a bot token, if any, at the top level and the user
// token, which is what alterhost acts with, inside authed_user; for a
// user-only install the top level has no access_token at all, which
// x/oauth2 would reject. Doing this under x/oauth2 keeps its protocol
// handling (errors, expiry, auth styles) in one place.
type userTokenTransport struct {
	base     http.RoundTripper
	tokenURL string
	field    string
}

// RoundTrip sends req and rewrites the answer of the token endpoint only.
func (t *userTokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil || req.URL.String() != t.tokenURL {
		return resp, err
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return resp, nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	out := raw
	if lifted, ok := liftUserToken(raw, t.field); ok {
		out = lifted
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return resp, nil
}

// liftUserToken copies the fields of the object under field over the top
// level, if that object holds an access token. The object itself stays,
// so account_id_field can still point into it.
func liftUserToken(raw []byte, field string) ([]byte, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return nil, false
	}
	var nested map[string]json.RawMessage
	if json.Unmarshal(top[field], &nested) != nil {
		return nil, false
	}
	var access string
	if json.Unmarshal(nested["access_token"], &access) != nil || access == "" {
		return nil, false
	}
	// The top level's token fields belong to another token (Slack's bot
	// token): none of them may be mixed with the person's.
	for _, k := range []string{"access_token", "refresh_token", "expires_in", "scope", "token_type"} {
		delete(top, k)
	}
	for k, v := range nested {
		top[k] = v
	}
	out, err := json.Marshal(top)
	return out, err == nil
}
