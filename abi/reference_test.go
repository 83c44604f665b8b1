package abi_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alterhost/alterhost/abi"
)

// schemaFields lists the field paths of the manifest schema as
// docs/manifest.md writes them: "limits.timeout_ms", "config.KEY.default",
// "tools[].annotations.title".
func schemaFields(t *testing.T) []string {
	var s map[string]any
	if err := json.Unmarshal(abi.ManifestSchema, &s); err != nil {
		t.Fatal(err)
	}
	defs, _ := s["$defs"].(map[string]any)
	resolve := func(node map[string]any) map[string]any {
		if ref, ok := node["$ref"].(string); ok {
			return defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		return node
	}
	var out []string
	var walk func(prefix string, node map[string]any)
	walk = func(prefix string, node map[string]any) {
		node = resolve(node)
		if props, ok := node["properties"].(map[string]any); ok && (prefix == "" || node["type"] == "object") {
			for name, p := range props {
				path := prefix + name
				// The schemas of tool inputs and outputs are JSON Schemas
				// themselves; their own "type" is not a manifest field.
				if strings.HasSuffix(prefix, "_schema.") {
					continue
				}
				out = append(out, path)
				walk(path+".", p.(map[string]any))
			}
		}
		if items, ok := node["items"].(map[string]any); ok {
			if it := resolve(items); it["type"] == "object" {
				walk(strings.TrimSuffix(prefix, ".")+"[].", it)
			}
		}
		if add, ok := node["additionalProperties"].(map[string]any); ok {
			walk(prefix+"KEY.", add)
		}
	}
	walk("", s)
	slices.Sort(out)
	return out
}

// TestManifestReference: docs/manifest.md names every field of the schema
// and no other, and its limits are the host's defaults and maximums.
func TestManifestReference(t *testing.T) {
	doc, err := os.ReadFile("../docs/manifest.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(doc), -1)
	var documented []string
	for _, r := range rows {
		documented = append(documented, r[1])
	}
	slices.Sort(documented)
	fields := schemaFields(t)
	for _, f := range fields {
		if !slices.Contains(documented, f) {
			t.Errorf("docs/manifest.md has no row for %s", f)
		}
	}
	for _, d := range documented {
		if !slices.Contains(fields, d) {
			t.Errorf("docs/manifest.md documents %s, which the schema does not have", d)
		}
	}
	limits := map[string][2]int64{
		"timeout_ms":              {abi.DefaultLimits.TimeoutMS, abi.MaxLimits.TimeoutMS},
		"memory_mib":              {abi.DefaultLimits.MemoryMiB, abi.MaxLimits.MemoryMiB},
		"max_instances":           {abi.DefaultLimits.MaxInstances, abi.MaxLimits.MaxInstances},
		"queue_timeout_ms":        {abi.DefaultLimits.QueueTimeoutMS, abi.MaxLimits.QueueTimeoutMS},
		"max_output_bytes":        {abi.DefaultLimits.MaxOutputBytes, abi.MaxLimits.MaxOutputBytes},
		"request_timeout_ms":      {abi.DefaultLimits.RequestTimeoutMS, abi.MaxLimits.RequestTimeoutMS},
		"max_request_body_bytes":  {abi.DefaultLimits.MaxRequestBodyBytes, abi.MaxLimits.MaxRequestBodyBytes},
		"max_response_body_bytes": {abi.DefaultLimits.MaxResponseBodyBytes, abi.MaxLimits.MaxResponseBodyBytes},
	}
	var s struct {
		Properties struct {
			Limits struct {
				Properties map[string]struct{ Default, Maximum int64 }
			}
		}
	}
	json.Unmarshal(abi.ManifestSchema, &s)
	for name, want := range limits {
		row := fmt.Sprintf("| `limits.%s` | %d | %d |", name, want[0], want[1])
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/manifest.md lacks the row %q", row)
		}
		if got := s.Properties.Limits.Properties[name]; got.Default != want[0] || got.Maximum != want[1] {
			t.Errorf("the schema gives limits.%s default %d, maximum %d; the host %d, %d", name, got.Default, got.Maximum, want[0], want[1])
		}
	}
	if len(s.Properties.Limits.Properties) != len(limits) {
		t.Errorf("the schema has %d limits; this test knows %d", len(s.Properties.Limits.Properties), len(limits))
	}
}
