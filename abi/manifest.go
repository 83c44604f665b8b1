package abi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
)

// Manifest describes one plugin: who it is, which tools it offers, what they
// may reach and how much they may consume. [ParseManifest] is the only way to
// obtain a valid one; past it, every field holds a usable value.
type Manifest struct {
	ABI         string `json:"abi"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	// Access is the plugin-wide default; a tool may override each part.
	Access
	// AllowedHosts lists the hosts alter_request may reach. Empty denies all.
	AllowedHosts []HostPattern `json:"allowed_hosts,omitempty"`
	Limits       Limits        `json:"limits"`
	// Config declares the settings an operator may give the plugin.
	Config map[string]ConfigVar `json:"config,omitempty"`
	Tools  []Tool               `json:"tools"`
}

// Access is what a tool acts as and on: the upstream provider whose grant it
// uses, the scopes it needs, constraints on its requests, and the agent it
// acts for. Constraints are kept and shown; they are not enforced yet.
type Access struct {
	Provider    string          `json:"provider,omitempty"`
	Scopes      []string        `json:"scopes,omitempty"`
	Constraints json.RawMessage `json:"constraints,omitempty"`
	Agent       string          `json:"agent,omitempty"`
}

// Tool is one MCP tool a plugin offers.
type Tool struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// InputSchema is the JSON Schema of the tool's arguments, a JSON object
	// of type "object". Absent, it is {"type":"object"}.
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
	// Export is the guest function to call. Absent, it is Name.
	Export string `json:"export,omitempty"`
	// Annotations are MCP tool annotations, spelled as in MCP.
	Annotations *Annotations `json:"annotations,omitempty"`
	// OutputSchema, if set, is the JSON Schema of structured results and
	// requires Result "json" or "mcp".
	OutputSchema json.RawMessage `json:"output_schema,omitempty"`
	// Result says how the host reads the guest's output; see ResultKind.
	Result ResultKind `json:"result,omitempty"`
	// Access overrides the plugin's defaults field by field. After
	// ParseManifest it holds the effective values.
	Access

	inputSchema  *jsonschema.Resolved
	outputSchema *jsonschema.Resolved
}

// Annotations are the MCP tool annotations, hints to clients only.
type Annotations struct {
	Title           string `json:"title,omitempty"`
	ReadOnlyHint    *bool  `json:"readOnlyHint,omitempty"`
	DestructiveHint *bool  `json:"destructiveHint,omitempty"`
	IdempotentHint  *bool  `json:"idempotentHint,omitempty"`
	OpenWorldHint   *bool  `json:"openWorldHint,omitempty"`
}

// ResultKind says how the host turns guest output into an MCP tool result.
type ResultKind string

const (
	// ResultText: the output is UTF-8 text, returned as one text content.
	ResultText ResultKind = "text"
	// ResultJSON: the output is one JSON object, returned as structured
	// content and, for older clients, as its JSON text.
	ResultJSON ResultKind = "json"
	// ResultMCP: the output is an MCP result object:
	// {"content": [...], "structuredContent": {...}, "isError": false}.
	ResultMCP ResultKind = "mcp"
)

// InputSchemaResolved returns the tool's compiled input schema.
func (t *Tool) InputSchemaResolved() *jsonschema.Resolved { return t.inputSchema }

// OutputSchemaResolved returns the tool's compiled output schema, or nil.
func (t *Tool) OutputSchemaResolved() *jsonschema.Resolved { return t.outputSchema }

// Limits bound what one plugin may consume. Zero fields take the defaults
// in [DefaultLimits]; values above [MaxLimits] are refused at load.
type Limits struct {
	// TimeoutMS is the wall-clock budget of one tool call.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// MemoryMiB caps the linear memory of one instance.
	MemoryMiB int64 `json:"memory_mib,omitempty"`
	// MaxInstances bounds how many calls of this plugin run at once.
	MaxInstances int64 `json:"max_instances,omitempty"`
	// QueueTimeoutMS is how long a call waits for a free instance.
	QueueTimeoutMS int64 `json:"queue_timeout_ms,omitempty"`
	// MaxOutputBytes caps one call's output.
	MaxOutputBytes int64 `json:"max_output_bytes,omitempty"`
	// RequestTimeoutMS caps one alter_request, inside the call's deadline.
	RequestTimeoutMS int64 `json:"request_timeout_ms,omitempty"`
	// MaxRequestBodyBytes and MaxResponseBodyBytes cap alter_request bodies.
	MaxRequestBodyBytes  int64 `json:"max_request_body_bytes,omitempty"`
	MaxResponseBodyBytes int64 `json:"max_response_body_bytes,omitempty"`
}

// DefaultLimits are the limits of a manifest that sets none.
var DefaultLimits = Limits{
	TimeoutMS:            30_000,
	MemoryMiB:            64,
	MaxInstances:         4,
	QueueTimeoutMS:       5_000,
	MaxOutputBytes:       1 << 20,
	RequestTimeoutMS:     15_000,
	MaxRequestBodyBytes:  1 << 20,
	MaxResponseBodyBytes: 4 << 20,
}

// MaxLimits are the largest values a manifest may ask for.
var MaxLimits = Limits{
	TimeoutMS:            300_000,
	MemoryMiB:            1024,
	MaxInstances:         64,
	QueueTimeoutMS:       60_000,
	MaxOutputBytes:       16 << 20,
	RequestTimeoutMS:     300_000,
	MaxRequestBodyBytes:  16 << 20,
	MaxResponseBodyBytes: 64 << 20,
}

// Timeout returns TimeoutMS as a duration.
func (l Limits) Timeout() time.Duration { return time.Duration(l.TimeoutMS) * time.Millisecond }

// QueueTimeout returns QueueTimeoutMS as a duration.
func (l Limits) QueueTimeout() time.Duration {
	return time.Duration(l.QueueTimeoutMS) * time.Millisecond
}

// RequestTimeout returns RequestTimeoutMS as a duration.
func (l Limits) RequestTimeout() time.Duration {
	return time.Duration(l.RequestTimeoutMS) * time.Millisecond
}

// MemoryPages returns MemoryMiB in 64 KiB Wasm pages.
func (l Limits) MemoryPages() uint32 { return uint32(l.MemoryMiB * 16) }

// Problem is one thing wrong with a manifest: where, what, and how to fix it.
type Problem struct {
	Field string
	What  string
	Fix   string
}

func (p Problem) String() string {
	s := p.Field + ": " + p.What
	if p.Fix != "" {
		s += "; " + p.Fix
	}
	return s
}

// ManifestError lists every problem found in one plugin's manifest.
type ManifestError struct {
	// File is the plugin or sidecar file the manifest came from, if known.
	File     string
	Problems []Problem
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	b.WriteString("invalid manifest: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; and ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

var (
	pluginNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	toolNameRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
	exportNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	providerRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
)

// ParseManifest decodes and validates a manifest, fills in defaults and
// returns every problem it finds at once. file names the source in errors.
func ParseManifest(file string, data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, &ManifestError{File: file, Problems: []Problem{{
			Field: "(document)", What: "not a valid manifest: " + err.Error(),
			Fix: "write one JSON object as described by abi/manifest.schema.json",
		}}}
	}
	if dec.More() {
		return nil, &ManifestError{File: file, Problems: []Problem{{
			Field: "(document)", What: "data after the manifest object", Fix: "remove it",
		}}}
	}
	var ps []Problem
	add := func(field, what, fix string) { ps = append(ps, Problem{field, what, fix}) }

	if m.ABI != Version {
		add("abi", fmt.Sprintf("is %q", m.ABI), fmt.Sprintf("set it to %q", Version))
	}
	if !pluginNameRE.MatchString(m.Name) {
		add("name", fmt.Sprintf("%q is not a plugin name", m.Name),
			"use 1-64 lower-case letters, digits, '_' or '-', starting with a letter or digit")
	}
	if m.Version == "" {
		add("version", "is missing", `set it, e.g. "1.0.0"`)
	}
	checkAccess("", &m.Access, add)
	for i, h := range m.AllowedHosts {
		if err := h.validate(); err != nil {
			add(fmt.Sprintf("allowed_hosts[%d]", i), err.Error(),
				`use a host name ("api.github.com"), a wildcard subdomain ("*.example.com"), or an IP literal, optionally with ":port"`)
		}
	}
	m.Limits.fill(add)
	checkConfig(m.Config, add)
	if len(m.Tools) == 0 {
		add("tools", "is empty", "declare at least one tool")
	}
	seen := map[string]int{}
	for i := range m.Tools {
		t := &m.Tools[i]
		f := fmt.Sprintf("tools[%d]", i)
		if !toolNameRE.MatchString(t.Name) {
			add(f+".name", fmt.Sprintf("%q is not a tool name", t.Name),
				"use 1-64 letters, digits, '_', '-' or '.'")
		} else if j, dup := seen[t.Name]; dup {
			add(f+".name", fmt.Sprintf("%q is also the name of tools[%d]", t.Name, j), "give each tool its own name")
		} else {
			seen[t.Name] = i
		}
		if strings.TrimSpace(t.Description) == "" {
			add(f+".description", "is missing", "say what the tool does; clients show it to the model")
		}
		if t.Export == "" {
			t.Export = t.Name
		}
		if !exportNameRE.MatchString(t.Export) {
			add(f+".export", fmt.Sprintf("%q is not a function name", t.Export),
				"name the exported Wasm function to call")
		}
		if len(t.InputSchema) == 0 {
			t.InputSchema = json.RawMessage(`{"type":"object"}`)
		}
		var err error
		if t.inputSchema, err = compileSchema(t.InputSchema, true); err != nil {
			add(f+".input_schema", err.Error(), `give a JSON Schema object with "type": "object"`)
		}
		switch t.Result {
		case "":
			t.Result = ResultText
			if len(t.OutputSchema) > 0 {
				t.Result = ResultJSON
			}
		case ResultText, ResultJSON, ResultMCP:
		default:
			add(f+".result", fmt.Sprintf("%q is not a result kind", t.Result), `use "text", "json" or "mcp"`)
		}
		if len(t.OutputSchema) > 0 {
			if t.Result == ResultText {
				add(f+".output_schema", `is set but result is "text"`, `set result to "json" or "mcp", or drop the schema`)
			} else if t.outputSchema, err = compileSchema(t.OutputSchema, true); err != nil {
				add(f+".output_schema", err.Error(), `give a JSON Schema object with "type": "object"`)
			}
		}
		checkAccess(f+".", &t.Access, add)
		t.Access = t.Access.over(m.Access)
		if len(t.Scopes) > 0 && t.Provider == "" {
			add(f+".scopes", "are set but the tool has no provider", "name the provider, for the plugin or for this tool")
		}
	}
	if len(ps) > 0 {
		return nil, &ManifestError{File: file, Problems: ps}
	}
	return &m, nil
}

func checkAccess(prefix string, a *Access, add func(field, what, fix string)) {
	if a.Provider != "" && !providerRE.MatchString(a.Provider) {
		add(prefix+"provider", fmt.Sprintf("%q is not a provider name", a.Provider),
			`use the lower-case provider id, e.g. "github" or "google"`)
	}
	for i, s := range a.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"") {
			add(fmt.Sprintf("%sscopes[%d]", prefix, i), fmt.Sprintf("%q is not a scope", s),
				"list one OAuth scope per entry, without spaces")
		}
	}
	if len(a.Constraints) > 0 {
		var obj map[string]json.RawMessage
		if json.Unmarshal(a.Constraints, &obj) != nil || obj == nil {
			add(prefix+"constraints", "is not a JSON object", "give constraints as an object")
		}
	}
}

// over returns a with every unset field taken from base.
func (a Access) over(base Access) Access {
	if a.Provider == "" {
		a.Provider = base.Provider
	}
	if a.Scopes == nil {
		a.Scopes = slices.Clone(base.Scopes)
	}
	if a.Constraints == nil {
		a.Constraints = base.Constraints
	}
	if a.Agent == "" {
		a.Agent = base.Agent
	}
	return a
}

func (l *Limits) fill(add func(field, what, fix string)) {
	fields := []struct {
		name     string
		v        *int64
		def, max int64
	}{
		{"timeout_ms", &l.TimeoutMS, DefaultLimits.TimeoutMS, MaxLimits.TimeoutMS},
		{"memory_mib", &l.MemoryMiB, DefaultLimits.MemoryMiB, MaxLimits.MemoryMiB},
		{"max_instances", &l.MaxInstances, DefaultLimits.MaxInstances, MaxLimits.MaxInstances},
		{"queue_timeout_ms", &l.QueueTimeoutMS, DefaultLimits.QueueTimeoutMS, MaxLimits.QueueTimeoutMS},
		{"max_output_bytes", &l.MaxOutputBytes, DefaultLimits.MaxOutputBytes, MaxLimits.MaxOutputBytes},
		{"request_timeout_ms", &l.RequestTimeoutMS, DefaultLimits.RequestTimeoutMS, MaxLimits.RequestTimeoutMS},
		{"max_request_body_bytes", &l.MaxRequestBodyBytes, DefaultLimits.MaxRequestBodyBytes, MaxLimits.MaxRequestBodyBytes},
		{"max_response_body_bytes", &l.MaxResponseBodyBytes, DefaultLimits.MaxResponseBodyBytes, MaxLimits.MaxResponseBodyBytes},
	}
	for _, f := range fields {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0 || *f.v > f.max:
			add("limits."+f.name, fmt.Sprintf("%d is out of range", *f.v),
				fmt.Sprintf("use a value from 1 to %d, or leave it out for %d", f.max, f.def))
		}
	}
}

// compileSchema checks that raw is a JSON Schema object of type "object"
// and resolves it. Remote references are refused: loading a plugin never
// reaches the network.
func compileSchema(raw json.RawMessage, mustBeObject bool) (*jsonschema.Resolved, error) {
	var s jsonschema.Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("is not a JSON Schema: %v", err)
	}
	if mustBeObject && s.Type != "object" {
		return nil, fmt.Errorf(`has type %q, not "object"`, s.Type)
	}
	r, err := s.Resolve(&jsonschema.ResolveOptions{ValidateDefaults: true})
	if err != nil {
		return nil, fmt.Errorf("is not a valid JSON Schema: %v", err)
	}
	return r, nil
}
