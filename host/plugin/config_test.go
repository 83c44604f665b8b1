package plugin_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/wasmtest"
)

// settingGuest has one tool per setting name; each outputs the setting's
// value, or "(unset)" when config_get finds none.
const settingGuest = `
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (data (i32.const 0) "(unset)")
  (data (i32.const 16) "org")
  (data (i32.const 32) "page")
  (data (i32.const 48) "label")
  (func $show (param $ptr i32) (param $len i32) (result i32)
    (local $val i64)
    (local.set $val (call $config_get (call $put (local.get $ptr) (local.get $len))))
    (if (i64.eqz (local.get $val))
      (then (call $out (i32.const 0) (i32.const 7)))
      (else (call $output_set (local.get $val) (call $length (local.get $val)))))
    (i32.const 0))
  (func (export "org") (result i32) (call $show (i32.const 16) (i32.const 3)))
  (func (export "page") (result i32) (call $show (i32.const 32) (i32.const 4)))
  (func (export "label") (result i32) (call $show (i32.const 48) (i32.const 5)))
`

const settingManifest = `{"abi":"alter/v1","name":"settings","version":"1",
 "config":{"org":{"description":"organisation","required":true},
           "page":{"description":"page size","default":"30"},
           "label":{"description":"optional"}},
 "tools":[{"name":"org","description":"d"},{"name":"page","description":"d"},{"name":"label","description":"d"}]}`

// TestSettings: the operator's NAME.config.json over the manifest's
// defaults reaches the guest through config_get; a broken settings file
// keeps the plugin from loading, with the reason.
func TestSettings(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "settings.wasm", wasmtest.Guest(t, settingGuest), settingManifest)
	spec, err := plugin.Read(path)
	if err != nil {
		t.Fatal(err) // inspectable before it is configured
	}
	h := newHost(t, nil)
	if _, err := h.Load(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "org: is required and not set") {
		t.Fatalf("without settings: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "settings.config.json"), []byte(`{"org":"Zürich ☃"}`), 0o644)
	p, err := h.Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for i, want := range []string{"Zürich ☃", "30", "(unset)"} {
		tool := &p.Manifest.Tools[i]
		out, err := p.Call(context.Background(), tool, nil)
		if err != nil || string(out) != want {
			t.Errorf("%s: %q, %v; want %q", tool.Name, out, err, want)
		}
	}
	os.WriteFile(filepath.Join(dir, "settings.config.json"), []byte(`{"org":"a","orgg":"b"}`), 0o644)
	if _, err := h.Load(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "settings.config.json") ||
		!strings.Contains(err.Error(), `declares no setting "orgg"`) {
		t.Fatalf("a typo in the settings: %v", err)
	}
}
