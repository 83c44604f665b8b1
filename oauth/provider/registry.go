package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/alterhost/alterhost/vault"
)

var (
	_ vault.Providers = (*Registry)(nil)
	_ vault.Provider  = (*Provider)(nil)
)

// Registry holds providers by name. It implements vault.Providers, which
// sees only configured providers; Lookup and All see every one, so a UI can
// say which presets wait for credentials. It is safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*Provider
}

// NewRegistry returns a registry holding ps.
func NewRegistry(ps ...*Provider) *Registry {
	r := &Registry{byName: make(map[string]*Provider, len(ps))}
	for _, p := range ps {
		r.Add(p)
	}
	return r
}

// Add adds p, replacing any provider of the same name (alterhost --dev
// adds the sandbox this way).
func (r *Registry) Add(p *Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byName[p.Name()] = p
}

// WrapTransport puts wrap around the HTTP transport of every provider
// registered now (token, refresh and revocation requests), for tracing.
// Call it before the providers are in use.
func (r *Registry) WrapTransport(wrap func(http.RoundTripper) http.RoundTripper) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.byName {
		c := *p.client
		c.Transport = wrap(c.Transport)
		p.client = &c
	}
}

// Provider returns the configured provider called name, as vault.Providers
// asks. An unconfigured preset is not returned: no grant can exist for it.
func (r *Registry) Provider(name string) (vault.Provider, bool) {
	p, ok := r.Lookup(name)
	if !ok || !p.Configured() {
		return nil, false // not a typed nil inside the interface
	}
	return p, true
}

// Lookup returns the provider called name, configured or not.
func (r *Registry) Lookup(name string) (*Provider, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.byName[name]
	return p, ok
}

// All returns every provider, configured or not, ordered by name.
func (r *Registry) All() []*Provider {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Provider, 0, len(r.byName))
	for _, p := range r.byName {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Provider) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// Load returns the presets, completed and overridden by the configuration
// file at path ("" for none) and the environment:
//
//	{"providers": [
//	  {"name": "github", "client_id": "Iv1.abc", "client_secret_env": "GH_SECRET"},
//	  {"name": "acme", "auth_url": "https://acme.example/oauth/authorize", ...}
//	]}
//
// An entry named like a preset overrides the fields it sets; any other
// entry defines a provider entirely. Then, for every provider, an empty
// client_id is taken from ALTERHOST_<NAME>_CLIENT_ID and an empty
// client_secret_env defaults to ALTERHOST_<NAME>_CLIENT_SECRET. A preset
// left without a client id is listed but not configured. Every problem is
// reported at once in a *ConfigError naming the entry, the field and the
// fix.
func Load(path string) (*Registry, error) { return load(path, os.Getenv) }

// entry is one provider being assembled by load.
type entry struct {
	cfg    Config
	index  int  // under "providers" in the file, or -1
	preset bool // a built-in preset, possibly overridden
}

func load(path string, getenv func(string) string) (*Registry, error) {
	entries := map[string]*entry{}
	for _, c := range Presets() {
		entries[c.Name] = &entry{cfg: c, index: -1, preset: true}
	}
	var ps []Problem
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading the provider configuration: %w", err)
		}
		ps = append(ps, decodeFile(raw, entries)...)
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	slices.Sort(names)
	r := NewRegistry()
	for _, name := range names {
		e := entries[name]
		secret, eps := e.complete(getenv)
		for i := range eps {
			eps[i].Entry = e.index
		}
		ps = append(ps, eps...)
		if len(eps) == 0 {
			r.Add(newProvider(e.cfg, secret, nil))
		}
	}
	if len(ps) > 0 {
		return nil, &ConfigError{File: path, Problems: ps}
	}
	return r, nil
}

// decodeFile reads the file's entries into entries and returns the
// problems of those it could not read.
func decodeFile(raw []byte, entries map[string]*entry) []Problem {
	var ps []Problem
	var doc struct {
		Providers []json.RawMessage `json:"providers"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return []Problem{{Entry: -1, What: "is not a provider configuration: " + strings.TrimPrefix(err.Error(), "json: "),
			Fix: `write one JSON object: {"providers": [{"name": ..., ...}]}`}}
	}
	if dec.More() {
		return []Problem{{Entry: -1, What: "has data after the configuration object", Fix: "remove it"}}
	}
	inFile := map[string]int{}
	for i, msg := range doc.Providers {
		var head struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(msg, &head)
		add := func(field, what, fix string) {
			ps = append(ps, Problem{Entry: i, Provider: head.Name, Field: field, What: what, Fix: fix})
		}
		var fresh Config
		if err := decodeStrict(msg, &fresh); err != nil {
			field, what, fix := describeDecodeError(err)
			add(field, what, fix)
			continue
		}
		if fresh.Name == "" {
			add("name", "is missing", `name the provider, e.g. "github" to configure the preset, or a new id`)
			continue
		}
		if j, dup := inFile[fresh.Name]; dup {
			add("name", fmt.Sprintf("%q is also the name of providers[%d]", fresh.Name, j), "merge the two entries")
			continue
		}
		inFile[fresh.Name] = i
		e, isPreset := entries[fresh.Name]
		if !isPreset {
			entries[fresh.Name] = &entry{cfg: fresh, index: i}
			continue
		}
		// Decoding onto the preset sets exactly the fields the entry has:
		// scalars and lists replace, extra_auth_params merges.
		cfg := e.cfg.clone()
		_ = decodeStrict(msg, &cfg) // it decoded cleanly above
		e.cfg, e.index = cfg, i
	}
	return ps
}

func decodeStrict(msg json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// configFields lists Config's JSON field names, for error messages.
var configFields = func() string {
	t := reflect.TypeFor[Config]()
	var names []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag != "" {
			names = append(names, tag)
		}
	}
	return strings.Join(names, ", ")
}()

func describeDecodeError(err error) (field, what, fix string) {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field, fmt.Sprintf("is a JSON %s, which does not fit", te.Value),
			"see the field's description in oauth/provider (strings, lists of strings, an object of strings)"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field ") {
		return "", msg, "check its spelling; the fields are " + configFields
	}
	return "", "is not a provider object: " + msg, `write {"name": ..., ...}`
}

// complete fills the client id and the secret's variable from the
// environment, checks the entry and returns the secret.
func (e *entry) complete(getenv func(string) string) (string, []Problem) {
	c := &e.cfg
	c.normalize()
	prefix := EnvPrefix(c.Name)
	idFromEnv := false
	if c.ClientID == "" {
		c.ClientID = getenv(prefix + "CLIENT_ID")
		idFromEnv = c.ClientID != ""
	}
	namedVar := c.ClientSecretEnv != ""
	if !c.Public && !namedVar {
		c.ClientSecretEnv = prefix + "CLIENT_SECRET"
	}
	ps := c.check()
	var secret string
	if c.ClientSecretEnv != "" && envNameRE.MatchString(c.ClientSecretEnv) {
		secret = getenv(c.ClientSecretEnv)
	}
	add := func(field, what, fix string) {
		ps = append(ps, Problem{Entry: -1, Provider: c.Name, Field: field, What: what, Fix: fix})
	}
	switch {
	case c.ClientID == "" && !e.preset:
		add("client_id", "is missing", fmt.Sprintf("set it, or export %sCLIENT_ID", prefix))
	case c.ClientID == "" && secret != "":
		add("client_id", fmt.Sprintf("is missing, but %s holds a secret", c.ClientSecretEnv),
			fmt.Sprintf("export %sCLIENT_ID too, or unset %s", prefix, c.ClientSecretEnv))
	case c.ClientID == "" || c.Public || secret != "" || !envNameRE.MatchString(c.ClientSecretEnv):
		// Nothing to add, or check already said the variable's name is bad.
	case namedVar:
		add("client_secret_env", fmt.Sprintf("names %s, which is empty or unset", c.ClientSecretEnv),
			fmt.Sprintf(`export %s with the client secret, or set "public": true for a client without one`, c.ClientSecretEnv))
	default:
		from := "client_id is set"
		if idFromEnv {
			from = prefix + "CLIENT_ID is set"
		}
		add("", fmt.Sprintf("%s but %s, which should hold the client secret, is empty or unset", from, c.ClientSecretEnv),
			fmt.Sprintf(`export %s, or name another variable in client_secret_env, or set "public": true for a client without a secret`,
				c.ClientSecretEnv))
	}
	return secret, ps
}
