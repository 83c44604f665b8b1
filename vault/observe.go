package vault

import (
	"context"
	"errors"
	"time"

	"github.com/alterhost/alterhost/abi"
)

// Observer hears what the vault does, for metrics (host/metrics implements
// it). It gets provider names and outcome words only, never a subject or a
// secret. Its methods must be quick and safe for concurrent use.
type Observer interface {
	// CredentialLookup reports one Credential call: outcome is
	// LookupOK, LookupGrantNotFound, LookupScopeReauth or LookupError.
	CredentialLookup(provider, outcome string)
	// Refresh reports one refresh sent upstream and how long it took:
	// outcome is RefreshOK, RefreshInvalidGrant or RefreshError.
	Refresh(provider, outcome string, took time.Duration)
}

// Outcomes of a credential lookup.
const (
	LookupOK            = "ok"
	LookupGrantNotFound = "grant_not_found"
	LookupScopeReauth   = "scope_reauth_required"
	LookupError         = "error"
)

// Outcomes of an upstream refresh.
const (
	RefreshOK           = "ok"
	RefreshInvalidGrant = "invalid_grant"
	RefreshError        = "error"
)

// Credential returns the access token subject's grant at provider carries,
// refreshing it first if it is about to expire. A missing, broken or
// too-narrow grant yields grant_not_found or scope_reauth_required with a
// fresh Connect URL. Errors never contain a secret.
func (v *Vault) Credential(ctx context.Context, subject, provider string, scopes []string) (string, *abi.Error) {
	ctx, span := startSpan(ctx, "vault.credential")
	token, aerr := v.credential(ctx, subject, provider, scopes)
	outcome := LookupOK
	switch {
	case aerr == nil:
	case aerr.Code == abi.CodeGrantNotFound:
		outcome = LookupGrantNotFound
	case aerr.Code == abi.CodeScopeReauthRequired:
		outcome = LookupScopeReauth
	default:
		outcome = LookupError
	}
	if v.Observer != nil {
		v.Observer.CredentialLookup(provider, outcome)
	}
	endSpan(span, provider, outcome)
	return token, aerr
}

// observeRefresh reports an upstream refresh that returned err.
func (v *Vault) observeRefresh(provider string, err error, took time.Duration) {
	if v.Observer == nil {
		return
	}
	outcome := RefreshOK
	switch {
	case errors.Is(err, ErrInvalidGrant):
		outcome = RefreshInvalidGrant
	case err != nil:
		outcome = RefreshError
	}
	v.Observer.Refresh(provider, outcome, took)
}

// AuditObserver hears how the audit trail keeps up, for metrics.
type AuditObserver interface {
	// AuditQueueFull reports a Record that had to wait for room.
	AuditQueueFull()
	// AuditWritten reports a batch of records written, or lost when err
	// is not nil.
	AuditWritten(records int, err error)
}

// Observe makes o hear of the auditor's queue and writes from now on.
func (a *Auditor) Observe(o AuditObserver) { a.observer.Store(&o) }

// Queued returns how many records wait to be written.
func (a *Auditor) Queued() int { return len(a.queue) }

func (a *Auditor) auditObserver() AuditObserver {
	if o := a.observer.Load(); o != nil {
		return *o
	}
	return nil
}
