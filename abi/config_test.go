package abi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/alterhost/alterhost/abi"
)

const withConfig = `{"abi":"alter/v1","name":"cfg","version":"1","tools":[{"name":"t","description":"d"}],
 "config":{"org":{"description":"GitHub organisation","required":true},
           "per_page":{"description":"page size","default":"30"},
           "label":{"description":"optional label"}}}`

func TestResolveConfig(t *testing.T) {
	m, err := abi.ParseManifest("cfg.wasm", []byte(withConfig))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.ResolveConfig("cfg.config.json", []byte(`{"org":"alterhost","label":"été"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"org": "alterhost", "per_page": "30", "label": "été"}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("got %v; want %v", got, want)
		}
	}
	// Without an operator file, defaults only; a required setting is missing.
	if _, err := m.ResolveConfig("cfg.config.json", nil); err == nil || !strings.Contains(err.Error(), "org: is required and not set") {
		t.Fatalf("no file: %v", err)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"unknown key", `{"org":"a","orgg":"b"}`, `orgg: plugin cfg declares no setting "orgg"; remove it, or use one of: label, org, per_page`},
		{"not a string", `{"org":3}`, "org: is not a string"},
		{"not an object", `["org"]`, "not one JSON object of settings"},
		{"null", `null`, "not one JSON object of settings"},
		{"trailing data", `{"org":"a"} {}`, "not one JSON object of settings"},
		{"too long", `{"org":"` + strings.Repeat("x", 4097) + `"}`, "org: is longer than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.ResolveConfig("cfg.config.json", []byte(tc.file))
			var me *abi.ManifestError
			if !errors.As(err, &me) || !strings.HasPrefix(err.Error(), "cfg.config.json: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

func TestConfigDeclarations(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"bad key", `{"Org":{"description":"d"}}`, `config.Org: "Org" is not a setting name`},
		{"no description", `{"org":{}}`, "config.org.description: is missing"},
		{"required with default", `{"org":{"description":"d","required":true,"default":"x"}}`, "config.org: is required and has a default"},
		{"unknown field", `{"org":{"description":"d","secret":true}}`, "not a valid manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"abi":"alter/v1","name":"a","version":"1","tools":[{"name":"t","description":"d"}],"config":` + tc.config + `}`
			if _, err := abi.ParseManifest("a.wasm", []byte(doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}
