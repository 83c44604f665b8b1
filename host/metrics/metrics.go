// Package metrics is alterhost's Prometheus instrumentation: one registry
// holding every alterhost_* series, the handler that serves it, and the
// hooks the rest of the server reports to.
//
// It lives under host because metrics are the host's business
// (DESIGN.md), and because it implements the small observer interfaces
// that vault, oauth/server and oauth/connect define for themselves; so
// those packages never import Prometheus and the arrows still point one
// way (host → oauth → vault). host/plugin and host/mcpserver take its
// handles directly.
//
// Labels carry only plugin, tool, provider and outcome words, all from
// manifests, configuration or fixed sets; a value from outside a fixed set
// becomes "other". No label ever holds a subject, a client id, a token, a
// URL or a path. Every method is safe on a nil receiver, which records
// nothing, so instrumented code needs no checks when metrics are off.
package metrics

import (
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Histogram buckets, in seconds. latency spans a warm tool call (well
// under a millisecond) to the longest timeouts; fast spans what is usually
// instant (an idle instance, an instantiation) to a second.
var (
	latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	fastBuckets    = []float64{.000001, .000005, .00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// Metrics is the registry and every alterhost series. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	toolCalls    *prometheus.CounterVec
	toolDuration *prometheus.HistogramVec

	poolInstances      *prometheus.GaugeVec
	poolWait           *prometheus.HistogramVec
	poolDiscarded      *prometheus.CounterVec
	poolIsolated       *prometheus.CounterVec
	poolInstantiations *prometheus.CounterVec

	compile       *prometheus.HistogramVec
	instantiate   *prometheus.HistogramVec
	pluginsLoaded prometheus.Gauge
	toolsLoaded   prometheus.Gauge
	pluginLoads   *prometheus.CounterVec

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec

	lookups         *prometheus.CounterVec
	refreshes       *prometheus.CounterVec
	refreshDuration *prometheus.HistogramVec

	auditQueued atomic.Pointer[func() int]
	auditFull   prometheus.Counter
	auditWrites *prometheus.CounterVec
	auditLost   prometheus.Counter

	registrations   *prometheus.CounterVec
	metadataFetches *prometheus.CounterVec
	authorizations  *prometheus.CounterVec
	tokenRequests   *prometheus.CounterVec
	tokenReuse      *prometheus.CounterVec
	revocations     *prometheus.CounterVec
	signins         *prometheus.CounterVec

	flowsStarted   *prometheus.CounterVec
	flowsCompleted *prometheus.CounterVec
	flowsFailed    *prometheus.CounterVec
}

// New returns a Metrics with its own registry (not Prometheus's global
// one, so tests and several servers in one process do not collide), with
// the Go runtime and process collectors beside alterhost's series.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		m.reg.MustRegister(h)
		return h
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}

	m.toolCalls = counter("alterhost_tool_calls_total",
		"Tool calls by plugin, tool and outcome (ok, or why the call failed).", "plugin", "tool", "outcome")
	m.toolDuration = histogram("alterhost_tool_call_duration_seconds",
		"Time from a tool call's arrival to its result, by plugin and tool.", latencyBuckets, "plugin", "tool")

	m.poolInstances = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "alterhost_pool_instances",
		Help: "Live plugin instances by plugin and state (idle or in_use)."}, []string{"plugin", "state"})
	m.reg.MustRegister(m.poolInstances)
	m.poolWait = histogram("alterhost_pool_wait_seconds",
		"Time a call waited for a free instance slot, by plugin.", fastBuckets, "plugin")
	m.poolDiscarded = counter("alterhost_pool_instances_discarded_total",
		"Instances thrown away after a failed call, whose state could no longer be trusted, by plugin.", "plugin")
	m.poolIsolated = counter("alterhost_pool_instances_isolated_total",
		"Healthy instances closed so that no guest state crosses between people (--isolation person or call), by plugin.", "plugin")
	m.poolInstantiations = counter("alterhost_pool_instantiations_total",
		"Instances created for calls after the pool was warmed, by plugin.", "plugin")

	m.compile = histogram("alterhost_plugin_compile_duration_seconds",
		"Time to compile a plugin module (or load it from the compilation cache), by plugin.", latencyBuckets, "plugin")
	m.instantiate = histogram("alterhost_plugin_instantiate_duration_seconds",
		"Time to instantiate a plugin module, by plugin.", fastBuckets, "plugin")
	m.pluginsLoaded = gauge("alterhost_plugins_loaded", "Plugins serving now.")
	m.toolsLoaded = gauge("alterhost_tools_loaded", "Tools serving now.")
	m.pluginLoads = counter("alterhost_plugin_loads_total",
		"Loads of a new or changed plugin file, at start and on reload, by outcome (ok or failed).", "outcome")

	m.requests = counter("alterhost_alter_requests_total",
		"alter_request calls by plugin, provider (none without one) and result: the HTTP status class of the answer, or the code of the host's refusal.",
		"plugin", "provider", "result")
	m.requestDuration = histogram("alterhost_alter_request_duration_seconds",
		"Time to serve one alter_request: policy, credential and the upstream exchange, by plugin and provider.",
		latencyBuckets, "plugin", "provider")

	m.lookups = counter("alterhost_vault_credential_lookups_total",
		"Credential lookups by provider and outcome (ok, grant_not_found, scope_reauth_required, error).", "provider", "outcome")
	m.refreshes = counter("alterhost_vault_refreshes_total",
		"Upstream token refreshes by provider and outcome (ok, invalid_grant, error).", "provider", "outcome")
	m.refreshDuration = histogram("alterhost_vault_refresh_duration_seconds",
		"Time of an upstream token refresh, by provider.", latencyBuckets, "provider")

	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "alterhost_audit_queue_depth",
		Help: "Audit records waiting to be written."}, func() float64 {
		if f := m.auditQueued.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	}))
	m.auditFull = counter("alterhost_audit_queue_full_total",
		"Audit records that waited for room in a full queue, delaying their call.").WithLabelValues()
	m.auditWrites = counter("alterhost_audit_writes_total",
		"Batches of audit records written, by outcome (ok, failed).", "outcome")
	m.auditLost = counter("alterhost_audit_records_lost_total",
		"Audit records lost because the store refused their batch.").WithLabelValues()

	m.registrations = counter("alterhost_oauth_registrations_total",
		"Dynamic client registrations by outcome.", "outcome")
	m.metadataFetches = counter("alterhost_oauth_metadata_fetches_total",
		"Fetches of Client ID Metadata Documents by outcome.", "outcome")
	m.authorizations = counter("alterhost_oauth_authorizations_total",
		"Consent decisions (approved, denied).", "decision")
	m.tokenRequests = counter("alterhost_oauth_token_requests_total",
		"Token requests by grant type and outcome (ok, or the OAuth error code).", "grant_type", "outcome")
	m.tokenReuse = counter("alterhost_oauth_token_reuse_total",
		"Replayed authorization codes and reused refresh tokens; each revoked its token family.", "kind")
	m.revocations = counter("alterhost_oauth_revocations_total",
		"Token revocation requests by outcome.", "outcome")
	m.signins = counter("alterhost_oauth_signins_total",
		"Browser sign-ins by mode (link, oidc) and outcome.", "mode", "outcome")

	m.flowsStarted = counter("alterhost_connect_flows_started_total",
		"Connect flows that sent a browser to the provider, by provider.", "provider")
	m.flowsCompleted = counter("alterhost_connect_flows_completed_total",
		"Connect flows that stored a grant, by provider.", "provider")
	m.flowsFailed = counter("alterhost_connect_flows_failed_total",
		"Connect flows that ended without a grant, by provider and reason.", "provider", "reason")

	// Series of fixed label sets start at zero, so a rate or an alert sees
	// the first event.
	for _, w := range []struct {
		vec    *prometheus.CounterVec
		values words
	}{
		{m.pluginLoads, loadOutcomes}, {m.auditWrites, writeOutcomes}, {m.registrations, registrationOutcomes},
		{m.metadataFetches, metadataOutcomes}, {m.authorizations, decisions}, {m.tokenReuse, reuseKinds},
		{m.revocations, revocationOutcomes},
	} {
		for v := range w.values {
			w.vec.WithLabelValues(v)
		}
	}
	for gt := range grantTypes {
		m.tokenRequests.WithLabelValues(gt, "ok")
	}
	for mode := range signinModes {
		m.signins.WithLabelValues(mode, "ok")
	}
	return m
}

// Handler serves the registry in the Prometheus exposition formats. It
// also counts its own scrapes (promhttp_metric_handler_*).
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg,
		promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

// Registry returns the registry, to gather it in tests or to register
// more collectors beside alterhost's.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetLoaded records how many plugins and tools serve now.
func (m *Metrics) SetLoaded(plugins, tools int) {
	if m == nil {
		return
	}
	m.pluginsLoaded.Set(float64(plugins))
	m.toolsLoaded.Set(float64(tools))
}

// PluginLoaded records one attempt to load a plugin file.
func (m *Metrics) PluginLoaded(ok bool) {
	if m == nil {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	m.pluginLoads.WithLabelValues(outcome).Inc()
}

// Plugin is the series of one plugin, resolved once at load so that the
// call path does no label lookups. Versions of a plugin share them.
type Plugin struct {
	m              *Metrics
	name           string
	idle, inUse    prometheus.Gauge
	wait           prometheus.Observer
	discarded      prometheus.Counter
	isolated       prometheus.Counter
	instantiations prometheus.Counter
	compile        prometheus.Observer
	instantiate    prometheus.Observer
}

// Plugin returns the series of the plugin named name (its manifest name).
func (m *Metrics) Plugin(name string) *Plugin {
	if m == nil {
		return nil
	}
	return &Plugin{
		m: m, name: name,
		idle:           m.poolInstances.WithLabelValues(name, "idle"),
		inUse:          m.poolInstances.WithLabelValues(name, "in_use"),
		wait:           m.poolWait.WithLabelValues(name),
		discarded:      m.poolDiscarded.WithLabelValues(name),
		isolated:       m.poolIsolated.WithLabelValues(name),
		instantiations: m.poolInstantiations.WithLabelValues(name),
		compile:        m.compile.WithLabelValues(name),
		instantiate:    m.instantiate.WithLabelValues(name),
	}
}

// Compiled records a module compilation.
func (p *Plugin) Compiled(took time.Duration) {
	if p != nil {
		p.compile.Observe(took.Seconds())
	}
}

// Instantiated records an instantiation; forCall is true when a call
// needed it, past the instance warmed at load.
func (p *Plugin) Instantiated(took time.Duration, forCall bool) {
	if p == nil {
		return
	}
	p.instantiate.Observe(took.Seconds())
	if forCall {
		p.instantiations.Inc()
	}
}

// Waited records how long a call waited for an instance slot.
func (p *Plugin) Waited(took time.Duration) {
	if p != nil {
		p.wait.Observe(took.Seconds())
	}
}

// AddIdle and AddInUse move the instance gauges by n (negative to lower
// them): deltas, so the versions of a plugin that coexist during a reload
// add up.
func (p *Plugin) AddIdle(n int) {
	if p != nil {
		p.idle.Add(float64(n))
	}
}

// AddInUse: see AddIdle.
func (p *Plugin) AddInUse(n int) {
	if p != nil {
		p.inUse.Add(float64(n))
	}
}

// Discarded records an instance closed after a failed call.
func (p *Plugin) Discarded() {
	if p != nil {
		p.discarded.Inc()
	}
}

// Isolated records a healthy instance closed for isolation: evicted to
// make room for another person's, or closed after its one call.
func (p *Plugin) Isolated() {
	if p != nil {
		p.isolated.Inc()
	}
}

// Tool outcomes. ok and the failure kinds of host/plugin and
// host/mcpserver; OutcomeConnectRequired is a call that ended for want of
// a grant or a scope (grant_not_found, scope_reauth_required), whether it
// was answered with a Connect URL or a URL elicitation.
const (
	OutcomeOK              = "ok"
	OutcomeConnectRequired = "connect_required"
)

// toolOutcomes are the outcome labels of tool calls; any other is "other".
var toolOutcomes = set(OutcomeOK, OutcomeConnectRequired, "guest_error", "trap", "timeout", "canceled", "bad_output",
	"busy", "invalid_arguments", "retired", "unauthenticated", "declined", "unavailable", "internal")

// Tool is the series of one tool of one plugin, resolved at load.
type Tool struct {
	calls    map[string]prometheus.Counter // by outcome, every one of toolOutcomes
	other    prometheus.Counter
	duration prometheus.Observer

	plugin, provider string
	requests         *prometheus.CounterVec
	byClass          [6]prometheus.Counter // alter_request results: 1xx..5xx, index 0 for other statuses
	requestDuration  prometheus.Observer
}

// Tool returns the series of tool, whose manifest names provider ("" for
// none).
func (p *Plugin) Tool(tool, provider string) *Tool {
	if p == nil {
		return nil
	}
	m := p.m
	if provider == "" {
		provider = "none"
	}
	provider = providerLabel(provider)
	t := &Tool{calls: make(map[string]prometheus.Counter, len(toolOutcomes)),
		other:    m.toolCalls.WithLabelValues(p.name, tool, "other"),
		duration: m.toolDuration.WithLabelValues(p.name, tool),
		plugin:   p.name, provider: provider, requests: m.requests,
		requestDuration: m.requestDuration.WithLabelValues(p.name, provider),
	}
	for o := range toolOutcomes {
		t.calls[o] = m.toolCalls.WithLabelValues(p.name, tool, o)
	}
	t.byClass[0] = m.requests.WithLabelValues(p.name, provider, "other")
	for i, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
		t.byClass[i+1] = m.requests.WithLabelValues(p.name, provider, class)
	}
	return t
}

// Call records a finished tool call and its outcome.
func (t *Tool) Call(outcome string, took time.Duration) {
	if t == nil {
		return
	}
	if c, ok := t.calls[outcome]; ok {
		c.Inc()
	} else {
		t.other.Inc()
	}
	t.duration.Observe(took.Seconds())
}

// abiCodes are the alter_request error codes (abi.Code*); any other is
// "other".
var abiCodes = set("bad_request", "host_not_allowed", "timeout", "too_large", "upstream_unreachable", "internal",
	"grant_not_found", "scope_reauth_required", "policy_denied", "approval_required")

// Request records one alter_request: the upstream's HTTP status, or
// with code set the error the host answered instead.
func (t *Tool) Request(status int, code string, took time.Duration) {
	if t == nil {
		return
	}
	switch {
	case code != "":
		// Refusals are the rarer path; resolving their label here keeps the
		// series to codes that happen.
		t.requests.WithLabelValues(t.plugin, t.provider, abiCodes.label(code)).Inc()
	case status >= 100 && status < 600:
		t.byClass[status/100].Inc()
	default:
		t.byClass[0].Inc()
	}
	t.requestDuration.Observe(took.Seconds())
}

// words is a fixed set of label values.
type words map[string]bool

func set(ws ...string) words {
	s := make(words, len(ws))
	for _, w := range ws {
		s[w] = true
	}
	return s
}

// label is v if the set holds it, else "other".
func (s words) label(v string) string {
	if s[v] {
		return v
	}
	return "other"
}

// providerName is what oauth/provider allows a provider's name to be.
var providerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// providerLabel keeps a provider label to a provider's name: anything
// else (a URL, say) becomes "other". The callers already pass configured
// names only; this is the last guard.
func providerLabel(p string) string {
	if providerName.MatchString(p) {
		return p
	}
	return "other"
}
