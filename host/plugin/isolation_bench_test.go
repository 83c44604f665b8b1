package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
)

// BenchmarkIsolation measures what each isolation mode costs per call, on
// the bundled plugins under both engines: reverse from text.wasm (C) and
// now from web.wasm (Go), beside the same work in Go (NAME/native).
// instances/op is how many instances each call made.
//
//   - pooled: one person, any instance reused;
//   - person: one person, her own instance reused (as pooled, plus the
//     owner check);
//   - person_rotating: eight people in turn on a pool of four, so every
//     call closes another person's instance and makes a new one (the
//     worst case of person);
//   - call: a fresh instance every call, spares made in the background.
func BenchmarkIsolation(b *testing.B) {
	type tool struct {
		lang, file, tool, args string
		native                 func([]byte) ([]byte, error)
	}
	tools := []tool{
		{"c", "text.wasm", "reverse", `{"text":"Wasm tools, isolated per person."}`, nativeReverse},
		{"go", "web.wasm", "now", `{}`, nativeNow},
	}
	modes := []struct {
		name      string
		isolation plugin.Isolation
		people    int
	}{
		{"pooled", plugin.IsolatePooled, 1},
		{"person", plugin.IsolatePerson, 1},
		{"person_rotating", plugin.IsolatePerson, 8},
		{"call", plugin.IsolateCall, 1},
	}
	engines := []struct {
		name string
		make func() (engine.Engine, error)
	}{
		{"native", func() (engine.Engine, error) { return engine.NewNative(engine.NativeOptions{}) }},
		{"extism", func() (engine.Engine, error) { return engine.NewExtism(engine.ExtismOptions{}) }},
	}
	for _, tl := range tools {
		b.Run(tl.lang+"/native", func(b *testing.B) {
			args := []byte(tl.args)
			for b.Loop() {
				if _, err := tl.native(args); err != nil {
					b.Fatal(err)
				}
			}
		})
		spec, err := plugin.Read(filepath.Join("..", "..", "plugins", tl.file))
		if err != nil {
			b.Fatal(err)
		}
		spec.Manifest.Limits.MaxInstances = 4
		var t *abi.Tool
		for i := range spec.Manifest.Tools {
			if spec.Manifest.Tools[i].Name == tl.tool {
				t = &spec.Manifest.Tools[i]
			}
		}
		for _, e := range engines {
			eng, err := e.make()
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range modes {
				b.Run(fmt.Sprintf("%s/engine=%s/%s", tl.lang, e.name, m.name), func(b *testing.B) {
					h := &plugin.Host{Engine: eng, Outbound: egress.New(egress.Options{}), Isolation: m.isolation}
					p, err := h.Load(context.Background(), spec)
					if err != nil {
						b.Fatal(err)
					}
					defer p.Close(context.Background())
					ctxs := make([]context.Context, m.people)
					for i := range ctxs {
						ctxs[i] = vault.WithIdentity(context.Background(), vault.Identity{Subject: fmt.Sprint("person", i)})
					}
					want, _ := tl.native([]byte(tl.args))
					out, err := p.Call(ctxs[0], t, json.RawMessage(tl.args))
					if err != nil || tl.tool == "reverse" && string(out) != string(want) {
						b.Fatalf("got %q, %v; want %q", out, err, want)
					}
					before := p.Instantiations()
					i := 0
					for b.Loop() {
						if _, err := p.Call(ctxs[i%m.people], t, json.RawMessage(tl.args)); err != nil {
							b.Fatal(err)
						}
						i++
					}
					b.ReportMetric(float64(p.Instantiations()-before)/float64(i), "instances/op")
				})
			}
			eng.Close(context.Background())
		}
	}
}

// nativeReverse is text.wasm's reverse in Go: decode, reverse by code
// point, and answer the text.
func nativeReverse(args []byte) ([]byte, error) {
	var in struct{ Text string }
	if err := json.Unmarshal(args, &in); err != nil {
		return nil, err
	}
	r := []rune(in.Text)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return []byte(string(r)), nil
}

// nativeNow is web.wasm's now in Go: the clock, as JSON.
func nativeNow([]byte) ([]byte, error) {
	t := time.Now()
	return json.Marshal(struct {
		Unix int64  `json:"unix"`
		Time string `json:"time"`
	}{t.Unix(), t.UTC().Format(time.RFC3339Nano)})
}
