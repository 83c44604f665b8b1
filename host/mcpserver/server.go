// Package mcpserver presents a catalog of plugin tools as an MCP server:
// each manifest tool becomes an MCP tool, and each guest output or failure
// becomes a CallToolResult.
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/vault"
)

// ErrorMetaKey is the _meta key of a failed result's machine-readable
// fields: {"kind": ..., "code": ..., "connect_url": ..., "missing_scopes": [...]}.
const ErrorMetaKey = "alterhost/error"

// Identify names who a tool call acts for. It is the one place identity
// enters a call; the vault reads it from the call's context.
type Identify func(ctx context.Context, req *mcp.CallToolRequest) (subject string, err error)

// Options configure New.
type Options struct {
	// Version is reported to clients.
	Version string
	Logger  *slog.Logger
	// Identify names the person each call acts for.
	Identify Identify
	// Connections, if set, offers Connect URLs as URL elicitations to
	// clients that declared them, instead of only in a failed result.
	Connections *Connections
	// Tracer, if set, starts a trace (or continues the client's, from its
	// traceparent header) for each tool call; nil traces nothing.
	Tracer trace.TracerProvider
}

// Server offers a catalog's tools over MCP and follows the catalog as it
// changes (see Update).
type Server struct {
	mcp  *mcp.Server
	opts Options

	mu    sync.RWMutex
	tools map[string]plugin.Binding // the tools offered now
}

// New returns an MCP server offering every tool of cat, each call acting
// for the person opts.Identify names.
func New(cat *plugin.Catalog, opts Options) *Server {
	s := &Server{
		mcp: mcp.NewServer(&mcp.Implementation{Name: "alterhost", Version: opts.Version},
			// Declared up front: the catalog may be empty now and gain tools
			// later, and clients must know to listen for that.
			&mcp.ServerOptions{Logger: opts.Logger, HasTools: true}),
		opts:  opts,
		tools: map[string]plugin.Binding{},
	}
	s.Update(cat)
	return s
}

// MCP returns the MCP server to serve.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Update offers cat's tools instead of the previous catalog's: new and
// changed tools are (re)registered, gone ones removed, and the SDK tells
// connected clients the list changed. Calls already running finish on the
// version they started with.
func (s *Server) Update(cat *plugin.Catalog) {
	next := make(map[string]plugin.Binding, len(cat.Tools))
	for _, b := range cat.Tools {
		next[b.Tool.Name] = b
	}
	s.mu.Lock()
	prev := s.tools
	s.tools = next
	s.mu.Unlock()
	var gone []string
	for name := range prev {
		if _, ok := next[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		s.mcp.RemoveTools(gone...)
	}
	for _, b := range cat.Tools {
		if prev[b.Tool.Name] != b {
			s.mcp.AddTool(toolOf(b.Tool), traced(s.opts.Tracer, b.Plugin.Manifest.Name, b.Tool.Name,
				observed(b.Plugin.ToolMetrics(b.Tool.Name), s.handler(b.Tool.Name))))
		}
	}
}

// binding returns the tool offered now under name.
func (s *Server) binding(name string) (plugin.Binding, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.tools[name]
	return b, ok
}

// identity builds the call's identity: the person, and as agents the
// tool's manifest agent (if any) acting for the MCP client.
func identity(ctx context.Context, req *mcp.CallToolRequest, t *abi.Tool, identify Identify) (vault.Identity, error) {
	subject, err := identify(ctx, req)
	if err != nil {
		return vault.Identity{}, err
	}
	client := ""
	if req.Session != nil {
		if p := req.Session.InitializeParams(); p != nil && p.ClientInfo != nil {
			client = p.ClientInfo.Name
		}
	}
	if t.Agent != "" {
		return vault.Identity{Subject: subject, Agent: t.Agent, ParentAgent: client}, nil
	}
	return vault.Identity{Subject: subject, Agent: client}, nil
}

func toolOf(t *abi.Tool) *mcp.Tool {
	mt := &mcp.Tool{Name: t.Name, Description: t.Description, InputSchema: t.InputSchema}
	if len(t.OutputSchema) > 0 {
		mt.OutputSchema = t.OutputSchema
	}
	if a := t.Annotations; a != nil {
		mt.Annotations = &mcp.ToolAnnotations{
			Title:           a.Title,
			ReadOnlyHint:    a.ReadOnlyHint != nil && *a.ReadOnlyHint,
			IdempotentHint:  a.IdempotentHint != nil && *a.IdempotentHint,
			DestructiveHint: a.DestructiveHint,
			OpenWorldHint:   a.OpenWorldHint,
		}
		mt.Title = a.Title
	}
	return mt
}

// handler serves tool name from whichever version of its plugin is current
// when the call starts.
func (s *Server) handler(name string) mcp.ToolHandler {
	opts := &s.opts
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		b, ok := s.binding(name)
		if !ok {
			return failed(name, &plugin.Failure{Kind: "unavailable", Message: "the tool was removed from this server"}), nil
		}
		id, err := identity(ctx, req, b.Tool, opts.Identify)
		if err != nil {
			return failed(b.Tool.Name, &plugin.Failure{Kind: "unauthenticated", Message: err.Error()}), nil
		}
		ctx = vault.WithIdentity(ctx, id)
		mode := elicitationOf(req)
		if resp, ok := req.Params.InputResponses[connectInput]; ok && opts.Connections != nil {
			// The retry of a call whose Connect URL the client showed.
			if r, _ := resp.(*mcp.ElicitResult); r == nil || r.Action != "accept" {
				return failed(b.Tool.Name, &plugin.Failure{Kind: "declined",
					Message: "the person did not connect the account the tool needs; call it again to be asked again"}), nil
			}
			// Run the tool whether or not the wait saw the connection: the
			// grant decides, and a failure now says the URL in words rather
			// than asking again in a loop.
			opts.Connections.wait(ctx, req.Params.RequestState, id.Subject, b.Tool.Provider, b.Tool.Scopes)
			mode = noElicitation
		}
		out, err := b.Plugin.Call(ctx, b.Tool, req.Params.Arguments)
		var f *plugin.Failure
		if errors.As(err, &f) && f.Kind == plugin.KindRetired {
			// A new version replaced the plugin as the call began; the
			// guest did not run, so run the current one.
			if nb, ok := s.binding(name); ok && nb != b {
				b = nb
				out, err = b.Plugin.Call(ctx, b.Tool, req.Params.Arguments)
			}
		}
		if err != nil {
			if !errors.As(err, &f) {
				f = &plugin.Failure{Kind: "internal", Message: err.Error()}
			}
			if r := f.Request; r != nil && r.ConnectURL != "" && opts.Connections != nil {
				switch mode {
				case elicitByRequest:
					eid := opts.Connections.add(id.Subject, b.Tool.Provider, nil)
					return &mcp.CallToolResult{RequestState: eid,
						InputRequests: mcp.InputRequestMap{connectInput: elicitParams(b.Tool.Name, r, eid)}}, nil
				case elicitByError:
					eid := opts.Connections.add(id.Subject, b.Tool.Provider, req.Session)
					return nil, mcp.URLElicitationRequiredError([]*mcp.ElicitParams{elicitParams(b.Tool.Name, r, eid)})
				}
			}
			return failed(b.Tool.Name, f), nil
		}
		res, err := Result(b.Tool, out)
		if err != nil {
			return failed(b.Tool.Name, &plugin.Failure{Kind: "bad_output", Message: err.Error()}), nil
		}
		return res, nil
	}
}

// Result turns guest output into a tool result according to the tool's
// result kind (see abi.ResultKind), checking it on the way.
func Result(t *abi.Tool, out []byte) (*mcp.CallToolResult, error) {
	switch t.Result {
	case abi.ResultJSON:
		var obj map[string]any
		if err := json.Unmarshal(out, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("the tool must return one JSON object (result %q), but returned %s", t.Result, describe(out))
		}
		if err := checkStructured(t, obj); err != nil {
			return nil, err
		}
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: string(out)}},
			StructuredContent: json.RawMessage(out),
		}, nil
	case abi.ResultMCP:
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(out, &fields); err != nil || fields == nil {
			return nil, fmt.Errorf("the tool must return an MCP result object (result %q), but returned %s", t.Result, describe(out))
		}
		if c := fields["content"]; len(c) == 0 || c[0] != '[' {
			return nil, fmt.Errorf(`the tool's MCP result has no "content" list`)
		}
		var res mcp.CallToolResult
		if err := json.Unmarshal(out, &res); err != nil {
			return nil, fmt.Errorf("the tool's MCP result is not valid: %v", err)
		}
		if res.StructuredContent != nil && !res.IsError {
			if err := checkStructured(t, res.StructuredContent); err != nil {
				return nil, err
			}
		}
		return &res, nil
	default:
		if !utf8.Valid(out) {
			return nil, fmt.Errorf("the tool returned bytes that are not UTF-8 text")
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(out)}}}, nil
	}
}

// checkStructured validates v, a value decoded from JSON into generic
// types, against the tool's output schema.
func checkStructured(t *abi.Tool, v any) error {
	schema := t.OutputSchemaResolved()
	if schema == nil {
		return nil
	}
	if err := schema.Validate(v); err != nil {
		return fmt.Errorf("the structured result does not match the tool's output schema: %v", err)
	}
	return nil
}

func describe(out []byte) string {
	if len(out) == 0 {
		return "no output"
	}
	return fmt.Sprintf("%d bytes that are not a JSON object", len(out))
}

// failed builds the isError result of a failed call: a sentence for the
// model and the person, and the same facts for programs in _meta.
func failed(tool string, f *plugin.Failure) *mcp.CallToolResult {
	msg := fmt.Sprintf("Tool %s failed: %s", tool, f.Message)
	meta := map[string]any{"kind": f.Kind}
	if r := f.Request; r != nil {
		meta["code"] = r.Code
		meta["message"] = r.Message
		if len(r.MissingScopes) > 0 {
			meta["missing_scopes"] = r.MissingScopes
		}
		switch {
		case r.ConnectURL != "" && r.Code == abi.CodeScopeReauthRequired:
			meta["connect_url"] = r.ConnectURL
			msg = fmt.Sprintf("Tool %s needs more access than was granted: %s. Ask the person to open %s, "+
				"grant it, and then call the tool again.", tool, r.Message, r.ConnectURL)
		case r.ConnectURL != "":
			meta["connect_url"] = r.ConnectURL
			msg = fmt.Sprintf("Tool %s needs an account that is not connected: %s. Ask the person to open %s, "+
				"connect it, and then call the tool again.", tool, r.Message, r.ConnectURL)
		case !strings.Contains(f.Message, r.Message):
			// The guest failed in its own words; add the request's.
			msg += fmt.Sprintf(" (alter_request: %s: %s)", r.Code, r.Message)
		}
	}
	return &mcp.CallToolResult{
		IsError: true,
		Content: []mcp.Content{&mcp.TextContent{Text: msg}},
		Meta:    mcp.Meta{ErrorMetaKey: meta},
	}
}
