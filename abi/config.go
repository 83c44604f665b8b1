package abi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// ConfigSuffix is appended to a plugin's base name (without ".wasm") to form
// the name of the file holding the operator's settings for it: a JSON object
// of strings, one per key the manifest's "config" declares.
const ConfigSuffix = ".config.json"

// ConfigVar is one setting a plugin declares. Guests read settings through
// the Extism kernel's config_get. A setting is plain text in plugin memory,
// so it must never hold a secret: credentials belong to the vault.
type ConfigVar struct {
	Description string `json:"description"`
	// Default is used when the operator gives no value.
	Default *string `json:"default,omitempty"`
	// Required settings have no default: a plugin whose operator did not
	// set one is not loaded.
	Required bool `json:"required,omitempty"`
}

// maxConfigValue bounds one setting; settings are for names and switches,
// not for data.
const maxConfigValue = 4096

var configKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// checkConfig validates the manifest's config declarations.
func checkConfig(vars map[string]ConfigVar, add func(field, what, fix string)) {
	for _, k := range slices.Sorted(mapKeys(vars)) {
		v, f := vars[k], "config."+k
		if !configKeyRE.MatchString(k) {
			add(f, fmt.Sprintf("%q is not a setting name", k), "use 1-64 lower-case letters, digits or '_', starting with a letter")
		}
		if strings.TrimSpace(v.Description) == "" {
			add(f+".description", "is missing", "say what the setting does; operators read it in plugin inspect")
		}
		if v.Required && v.Default != nil {
			add(f, "is required and has a default", "drop one: a default makes the setting optional")
		}
		if v.Default != nil && len(*v.Default) > maxConfigValue {
			add(f+".default", fmt.Sprintf("is longer than %d bytes", maxConfigValue), "shorten it")
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ResolveConfig returns the settings a plugin runs with: the operator's
// values from file (a JSON object of strings, or nil for no file) over the
// manifest's defaults. An undeclared key, a value that is not a string, an
// oversized one, or a required setting without a value is an error naming
// file, so a typo does not pass silently.
func (m *Manifest) ResolveConfig(file string, data []byte) (map[string]string, error) {
	values := map[string]json.RawMessage{}
	if data != nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&values); err != nil || values == nil || dec.More() {
			return nil, &ManifestError{File: file, Problems: []Problem{{Field: "(document)",
				What: "not one JSON object of settings", Fix: `write {"setting": "value", ...}`}}}
		}
	}
	var ps []Problem
	out := map[string]string{}
	for _, k := range slices.Sorted(mapKeys(values)) {
		if _, ok := m.Config[k]; !ok {
			declared := slices.Sorted(mapKeys(m.Config))
			fix := "remove it; this plugin declares no settings"
			if len(declared) > 0 {
				fix = "remove it, or use one of: " + strings.Join(declared, ", ")
			}
			ps = append(ps, Problem{Field: k, What: fmt.Sprintf("plugin %s declares no setting %q", m.Name, k), Fix: fix})
			continue
		}
		var s string
		if err := json.Unmarshal(values[k], &s); err != nil {
			ps = append(ps, Problem{Field: k, What: "is not a string", Fix: `quote it: "` + k + `": "..."`})
			continue
		}
		if len(s) > maxConfigValue {
			ps = append(ps, Problem{Field: k, What: fmt.Sprintf("is longer than %d bytes", maxConfigValue), Fix: "shorten it"})
			continue
		}
		out[k] = s
	}
	for _, k := range slices.Sorted(mapKeys(m.Config)) {
		if _, set := out[k]; set {
			continue
		}
		switch v := m.Config[k]; {
		case v.Default != nil:
			out[k] = *v.Default
		case v.Required:
			ps = append(ps, Problem{Field: k, What: "is required and not set (" + v.Description + ")",
				Fix: fmt.Sprintf(`set it in %s: {"%s": "..."}`, file, k)})
		}
	}
	if len(ps) > 0 {
		return nil, &ManifestError{File: file, Problems: ps}
	}
	return out, nil
}
