package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/metrics"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
)

// Outbound performs a guest's checked request under its caller's policy.
// The vault implements it; in tests any fake will do.
type Outbound interface {
	Do(ctx context.Context, caller egress.Caller, req *abi.OutboundRequest) (*abi.Response, *abi.Error)
}

// Plugin is a loaded plugin, ready to serve calls concurrently.
type Plugin struct {
	File     string
	Source   Source
	Manifest *abi.Manifest

	module   engine.Module
	pool     *pool
	outbound Outbound
	logger   *slog.Logger
	// metrics and its tools' series (by tool name) are nil without
	// Host.Metrics.
	metrics *metrics.Plugin
	tools   map[string]*metrics.Tool
}

// Load compiles spec and warms one instance, which proves the module links
// against the host's imports. No guest function runs.
func (h *Host) Load(ctx context.Context, spec *Spec) (*Plugin, error) {
	lim := spec.Manifest.Limits
	settings, err := spec.Settings()
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		File: spec.File, Source: spec.Source, Manifest: spec.Manifest,
		outbound: h.Outbound,
		logger:   h.logger().With("plugin", spec.Manifest.Name),
		metrics:  h.Metrics.Plugin(spec.Manifest.Name),
	}
	if p.metrics != nil {
		p.tools = make(map[string]*metrics.Tool, len(spec.Manifest.Tools))
		for _, t := range spec.Manifest.Tools {
			p.tools[t.Name] = p.metrics.Tool(t.Name, t.Provider)
		}
	}
	start := time.Now()
	mod, err := h.Engine.Compile(ctx, spec.Wasm, engine.Config{
		MemoryPages:    lim.MemoryPages(),
		Timeout:        lim.Timeout(),
		MaxOutputBytes: lim.MaxOutputBytes,
		Request:        p.serveRequest,
		Settings:       settings,
		Logger:         p.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.File, err)
	}
	p.metrics.Compiled(time.Since(start))
	p.module = mod
	p.pool = newPool(mod, int(lim.MaxInstances), lim.QueueTimeout(), h.Isolation)
	p.pool.metrics = p.metrics
	start = time.Now()
	inst, err := mod.Instantiate(ctx)
	if err != nil {
		mod.Close(ctx)
		return nil, fmt.Errorf("%s: %w", spec.File, err)
	}
	p.metrics.Instantiated(time.Since(start), false)
	p.pool.warm(inst)
	return p, nil
}

// ToolMetrics returns the series of the plugin's tool name, or nil
// without metrics.
func (p *Plugin) ToolMetrics(name string) *metrics.Tool { return p.tools[name] }

// Instantiations counts the instances created for calls since load; a
// warm pool serving healthy calls leaves it unchanged.
func (p *Plugin) Instantiations() int64 { return p.pool.instantiations.Load() }

// Memories returns copies of the memories of the plugin's idle instances,
// so security tests can prove what never entered a guest.
func (p *Plugin) Memories() ([]map[string][]byte, error) { return p.pool.inspect() }

// Close retires the plugin: new calls fail with KindRetired, the calls in
// progress finish (until ctx ends, when they are cut off), and then the
// instances and the compiled module are closed.
func (p *Plugin) Close(ctx context.Context) error {
	p.pool.close(ctx)
	return p.module.Close(context.WithoutCancel(ctx))
}

// Failure is why a tool call produced no output, in words for the MCP
// client and with the alter_request error the guest did not handle, if any.
type Failure struct {
	// Kind is the class of failure: "invalid_arguments", "busy", or an
	// engine failure ("guest_error", "trap", "timeout", "canceled", "bad_output").
	Kind    string
	Message string
	// Request is the last alter_request error of the call, when the guest
	// failed after it.
	Request *abi.Error
}

func (f *Failure) Error() string { return f.Message }

// KindRetired is the Failure kind of a call that reached a plugin after a
// newer version replaced it (or as the host shuts down): the guest did not
// run, so the caller may try the current version.
const KindRetired = "retired"

// Call runs tool with JSON arguments and returns the guest's raw output.
// Every error is a *Failure. The instance that ran the call goes back to
// the pool only if the call succeeded.
func (p *Plugin) Call(ctx context.Context, tool *abi.Tool, args json.RawMessage) ([]byte, error) {
	ctx, span := startSpan(ctx, "plugin.call")
	if span.IsRecording() {
		span.SetAttributes(attribute.String("alterhost.plugin", p.Manifest.Name), attribute.String("alterhost.tool", tool.Name))
	}
	out, err := p.call(ctx, tool, args)
	endCall(span, err)
	return out, err
}

// call is Call, untraced.
func (p *Plugin) call(ctx context.Context, tool *abi.Tool, args json.RawMessage) ([]byte, error) {
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	var v any
	if err := json.Unmarshal(args, &v); err != nil {
		return nil, &Failure{Kind: "invalid_arguments", Message: "the arguments are not valid JSON: " + err.Error()}
	}
	if err := tool.InputSchemaResolved().Validate(v); err != nil {
		return nil, &Failure{Kind: "invalid_arguments", Message: "the arguments do not match the tool's input schema: " + err.Error()}
	}
	// Calls without a person (tests, tools run by the host itself) share
	// the subject "".
	var subject string
	if id, ok := vault.IdentityFrom(ctx); ok {
		subject = id.Subject
	}
	inst, err := p.pool.get(ctx, subject)
	if errors.Is(err, errRetired) {
		return nil, &Failure{Kind: KindRetired, Message: err.Error()}
	}
	if err != nil {
		return nil, &Failure{Kind: "busy", Message: err.Error()}
	}
	state := &callState{tool: tool, metrics: p.tools[tool.Name]}
	start := time.Now()
	out, err := inst.Call(context.WithValue(ctx, callKey{}, state), tool.Export, args)
	p.pool.put(ctx, inst, subject, err == nil)
	if err != nil {
		var ce *engine.CallError
		if !errors.As(err, &ce) {
			ce = &engine.CallError{Failure: engine.Trap, Message: err.Error()}
		}
		p.logger.Warn("tool call failed", "tool", tool.Name, "failure", ce.Failure.String(),
			"error", ce.Error(), "duration", time.Since(start))
		return nil, &Failure{Kind: ce.Failure.String(), Message: ce.Error(), Request: state.requestErr}
	}
	p.logger.Debug("tool call", "tool", tool.Name, "duration", time.Since(start), "output_bytes", len(out))
	return out, nil
}

type callKey struct{}

// callState is what the host knows about the call in progress, reachable
// from alter_request through the call's context.
type callState struct {
	tool       *abi.Tool
	requestErr *abi.Error
	metrics    *metrics.Tool
}

// requestOverhead allows for the URL, headers and JSON framing around a
// request body, and for base64's growth of it.
const requestOverhead = 64 << 10

// serveRequest is the plugin's alter_request: it checks the guest's request,
// sends it through the outbound path, and encodes the reply.
func (p *Plugin) serveRequest(ctx context.Context, raw []byte) []byte {
	state, _ := ctx.Value(callKey{}).(*callState)
	if state == nil {
		return encodeReply(nil, abi.Errorf(abi.CodeInternal, "alter_request outside a tool call"))
	}
	ctx, span := startSpan(ctx, "alter_request")
	defer span.End()
	start := time.Now()
	maxBody := p.Manifest.Limits.MaxRequestBodyBytes
	var (
		req  *abi.OutboundRequest
		resp *abi.Response
		aerr *abi.Error
	)
	if int64(len(raw)) > maxBody/3*4+requestOverhead {
		aerr = abi.Errorf(abi.CodeTooLarge, "the request is %d bytes; this plugin may send bodies of at most %d", len(raw), maxBody)
	} else if req, aerr = abi.ParseRequest(raw, maxBody); aerr == nil {
		resp, aerr = p.outbound.Do(ctx, egress.Caller{Plugin: p.Manifest, Tool: state.tool}, req)
	}
	took := time.Since(start)
	if span.IsRecording() {
		traceRequest(span, state.tool.Provider, req, resp, aerr)
	}
	attrs := []any{"tool", state.tool.Name, "duration", took}
	if req != nil {
		attrs = append(attrs, "request", req.String())
	}
	if aerr != nil {
		state.requestErr = aerr
		state.metrics.Request(0, string(aerr.Code), took)
		p.logger.Info("alter_request refused", append(attrs, "code", aerr.Code, "error", aerr.Message)...)
	} else {
		state.metrics.Request(resp.Status, "", took)
		p.logger.Info("alter_request", append(attrs, "status", resp.Status)...)
	}
	return encodeReply(resp, aerr)
}

func encodeReply(resp *abi.Response, aerr *abi.Error) []byte {
	b, err := json.Marshal(abi.Reply{Response: resp, Error: aerr})
	if err != nil {
		b, _ = json.Marshal(abi.Reply{Error: abi.Errorf(abi.CodeInternal, "cannot encode the reply: %v", err)})
	}
	return b
}
