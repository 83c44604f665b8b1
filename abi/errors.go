package abi

import "fmt"

// Code names one kind of failure a guest can see from alter_request, or an
// MCP client can see in a failed tool result. Codes are stable API: a guest
// may switch on them.
type Code string

// The codes of ABI v1. The host emits the first group today; the vault and
// policy codes are reserved here so guests can be written against them now.
const (
	// CodeBadRequest: the request JSON was malformed or named something
	// impossible (an unknown method, a relative URL, a bad header).
	CodeBadRequest Code = "bad_request"
	// CodeHostNotAllowed: the URL's scheme or host is outside the plugin's
	// allowed_hosts, including after a redirect.
	CodeHostNotAllowed Code = "host_not_allowed"
	// CodeTimeout: the upstream did not answer within the per-request
	// timeout or the tool call's deadline.
	CodeTimeout Code = "timeout"
	// CodeTooLarge: a request or response body exceeded the plugin's limits.
	CodeTooLarge Code = "too_large"
	// CodeUpstreamUnreachable: the connection to the upstream failed.
	CodeUpstreamUnreachable Code = "upstream_unreachable"
	// CodeInternal: the host failed in a way that is not the guest's fault.
	CodeInternal Code = "internal"

	// CodeGrantNotFound: the signed-in person has not connected the tool's
	// provider; the error carries a Connect URL.
	CodeGrantNotFound Code = "grant_not_found"
	// CodeScopeReauthRequired: the grant lacks scopes the tool needs; the
	// error names them and carries a re-consent URL.
	CodeScopeReauthRequired Code = "scope_reauth_required"
	// CodePolicyDenied: a policy forbids this method, host or path.
	CodePolicyDenied Code = "policy_denied"
	// CodeApprovalRequired: a person must approve this request first.
	CodeApprovalRequired Code = "approval_required"
)

// Error is the typed error of the alter_request wire format. It is a value:
// it travels from the host function to the guest as JSON and, if the guest
// does not handle it, on to the MCP client.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// ConnectURL is set with CodeGrantNotFound and CodeScopeReauthRequired.
	ConnectURL string `json:"connect_url,omitempty"`
	// MissingScopes is set with CodeScopeReauthRequired.
	MissingScopes []string `json:"missing_scopes,omitempty"`
}

// Error returns "code: message".
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds an *Error with a formatted human message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
