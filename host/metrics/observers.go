package metrics

import (
	"time"

	"github.com/alterhost/alterhost/oauth/connect"
	"github.com/alterhost/alterhost/oauth/server"
	"github.com/alterhost/alterhost/vault"
)

// Fixed label sets of the events the observers below hear; the packages
// that report them document each word.
var (
	loadOutcomes         = set("ok", "failed")
	writeOutcomes        = set("ok", "failed")
	lookupOutcomes       = set(vault.LookupOK, vault.LookupGrantNotFound, vault.LookupScopeReauth, vault.LookupError)
	refreshOutcomes      = set(vault.RefreshOK, vault.RefreshInvalidGrant, vault.RefreshError)
	registrationOutcomes = set("ok", "rate_limited", "invalid_client_metadata", "invalid_redirect_uri", "server_error")
	metadataOutcomes     = set("ok", "rate_limited", "unfetchable", "unacceptable", "error")
	decisions            = set("approved", "denied")
	grantTypes           = set("authorization_code", "refresh_token", "other")
	tokenOutcomes        = set("ok", "rate_limited", "invalid_request", "invalid_client", "invalid_grant",
		"unauthorized_client", "unsupported_grant_type", "invalid_scope", "invalid_target", "server_error")
	reuseKinds         = set("authorization_code", "refresh_token")
	revocationOutcomes = set("revoked", "ignored", "rate_limited", "invalid_request", "invalid_client", "server_error")
	signinModes        = set("link", "oidc")
	signinOutcomes     = set("ok", "link_invalid", "wrong_link", "invalid", "wrong_browser", "denied", "provider_error",
		"refused", "not_admitted", "error")
	connectFailures = set("link_invalid", "wrong_person", "not_configured", "state_invalid", "wrong_browser", "denied",
		"exchange_failed", "error")
)

// Vault returns the observer to set as vault.Vault.Observer; nil when m
// is nil.
func (m *Metrics) Vault() vault.Observer {
	if m == nil {
		return nil
	}
	return vaultObserver{m}
}

type vaultObserver struct{ m *Metrics }

func (o vaultObserver) CredentialLookup(provider, outcome string) {
	o.m.lookups.WithLabelValues(providerLabel(provider), lookupOutcomes.label(outcome)).Inc()
}

func (o vaultObserver) Refresh(provider, outcome string, took time.Duration) {
	provider = providerLabel(provider)
	o.m.refreshes.WithLabelValues(provider, refreshOutcomes.label(outcome)).Inc()
	o.m.refreshDuration.WithLabelValues(provider).Observe(took.Seconds())
}

// ObserveAuditor reports a's queue depth, full queues and writes. Only the
// last auditor given has its depth reported.
func (m *Metrics) ObserveAuditor(a *vault.Auditor) {
	if m == nil || a == nil {
		return
	}
	queued := a.Queued
	m.auditQueued.Store(&queued)
	a.Observe(auditObserver{m})
}

type auditObserver struct{ m *Metrics }

func (o auditObserver) AuditQueueFull() { o.m.auditFull.Inc() }

func (o auditObserver) AuditWritten(records int, err error) {
	if err != nil {
		o.m.auditWrites.WithLabelValues("failed").Inc()
		o.m.auditLost.Add(float64(records))
		return
	}
	o.m.auditWrites.WithLabelValues("ok").Inc()
}

// OAuth returns the observer to set as server.Options.Observer; nil when
// m is nil.
func (m *Metrics) OAuth() server.Observer {
	if m == nil {
		return nil
	}
	return oauthObserver{m}
}

type oauthObserver struct{ m *Metrics }

func (o oauthObserver) Registration(outcome string) {
	o.m.registrations.WithLabelValues(registrationOutcomes.label(outcome)).Inc()
}

func (o oauthObserver) MetadataFetch(outcome string) {
	o.m.metadataFetches.WithLabelValues(metadataOutcomes.label(outcome)).Inc()
}

func (o oauthObserver) Authorization(decision string) {
	o.m.authorizations.WithLabelValues(decisions.label(decision)).Inc()
}

func (o oauthObserver) TokenRequest(grantType, outcome string) {
	o.m.tokenRequests.WithLabelValues(grantTypes.label(grantType), tokenOutcomes.label(outcome)).Inc()
}

func (o oauthObserver) TokenReuse(kind string) {
	o.m.tokenReuse.WithLabelValues(reuseKinds.label(kind)).Inc()
}

func (o oauthObserver) Revocation(outcome string) {
	o.m.revocations.WithLabelValues(revocationOutcomes.label(outcome)).Inc()
}

func (o oauthObserver) Signin(mode, outcome string) {
	o.m.signins.WithLabelValues(signinModes.label(mode), signinOutcomes.label(outcome)).Inc()
}

// Connect returns the observer to set as connect.Service.Observer; nil
// when m is nil.
func (m *Metrics) Connect() connect.Observer {
	if m == nil {
		return nil
	}
	return connectObserver{m}
}

type connectObserver struct{ m *Metrics }

func (o connectObserver) FlowStarted(provider string) {
	o.m.flowsStarted.WithLabelValues(providerLabel(provider)).Inc()
}

func (o connectObserver) FlowCompleted(provider string) {
	o.m.flowsCompleted.WithLabelValues(providerLabel(provider)).Inc()
}

func (o connectObserver) FlowFailed(provider, reason string) {
	o.m.flowsFailed.WithLabelValues(providerLabel(provider), connectFailures.label(reason)).Inc()
}
