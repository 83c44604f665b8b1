package engine_test

// Engine-level benchmarks: the same tools as C, Go, Rust and
// AssemblyScript guests (the last two skipped without their toolchains), on
// the Extism engine and on the native engine, beside the native Go code
// doing the same work, measured in the same run.
//
//	go test -run '^$' -bench Engine -benchmem -count 5 ./host/engine/
//	scripts/bench.sh -pkg ./host/engine/ -bench Engine
//
// Names follow scripts/bench.sh: X/native is native Go, and every sibling
// of it (X/c_extism, X/c_nativeengine, X/go_extism, X/go_nativeengine,
// X/rust_*, X/as_*) is reported as a ratio to it.
//   - Ping: a no-op tool, input {} and output {"ok":true}: the fixed cost
//     of a warm call. native returns a copy of the output.
//   - Request: one alter_request round trip. The guest encodes a GET
//     request, the host decodes it (abi.ParseRequest) and encodes a canned
//     reply (json.Marshal of abi.Reply), the guest decodes the reply and
//     returns its body. native is all of that JSON work in Go.
//   - Canned: Request with a reply encoded once, so what is measured is the
//     engine and the guest, with no host JSON work.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/internal/pluginbuild"
)

const benchC = `#include "alter.h"

static char in[4096];
static char buf[16384];
static const alter_param headers[] = {{"Accept", "application/json"}};

ALTER_EXPORT("ping") int ping(void) {
    alter_input(in, sizeof in);
    alter_output("{\"ok\":true}", 11);
    return 0;
}

ALTER_EXPORT("request") int request(void) {
    alter_req req = {.method = "GET", .url = "https://api.example.com/user", .headers = headers, .nheaders = 1};
    alter_response r;
    if (alter_do(&req, buf, sizeof buf, &r)) return alter_fail(&r);
    alter_output(r.body, r.body_len);
    return 0;
}
`

const benchGo = `//go:build wasip1

package main

import alter "github.com/alterhost/alterhost/abi/go"

func main() {}

var pong = []byte(` + "`" + `{"ok":true}` + "`" + `)

//go:wasmexport ping
func ping() int32 {
	return alter.Handle(func([]byte) ([]byte, error) { return pong, nil })
}

//go:wasmexport request
func request() int32 {
	return alter.Handle(func([]byte) ([]byte, error) {
		resp, err := alter.Do(alter.Request{Method: "GET", URL: "https://api.example.com/user",
			Headers: map[string]string{"Accept": "application/json"}})
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	})
}
`

const benchRust = `use alter::Request;

#[no_mangle]
pub extern "C" fn ping() -> i32 {
    alter::handle(|_| Ok("{\"ok\":true}"))
}

#[no_mangle]
pub extern "C" fn request() -> i32 {
    alter::handle(|_| {
        let resp = Request::new("GET", "https://api.example.com/user").header("Accept", "application/json").send()?;
        Ok(resp.body)
    })
}
`

const benchAssemblyScript = `import { Request, Result, handle, request as send } from "@alterhost/alter";

const pong = Uint8Array.wrap(String.UTF8.encode("{\"ok\":true}"));

function pingImpl(_input: Uint8Array): Result {
  return Result.bytes(pong);
}

export function ping(): i32 {
  return handle(pingImpl);
}

function requestImpl(_input: Uint8Array): Result {
  const reply = send(new Request("GET", "https://api.example.com/user").setHeader("Accept", "application/json"));
  const err = reply.error;
  if (err) return Result.fromError(err);
  return Result.bytes(reply.response!.body);
}

export function request(): i32 {
  return handle(requestImpl);
}
`

// benchManifest is the manifest the Rust and AssemblyScript guests are
// built with.
const benchManifest = `{"abi":"alter/v1","name":"bench","version":"0.1.0","allowed_hosts":["api.example.com"],
 "tools":[{"name":"ping","description":"no-op","export":"ping"},{"name":"request","description":"one request","export":"request"}]}`

// ---- Native Go equivalents ----------------------------------------------

var pong = []byte(`{"ok":true}`)

func nativePing(in []byte) []byte { return append([]byte(nil), pong...) }

// cannedResponse is the upstream's answer in every Request benchmark.
var cannedResponse = &abi.Response{Status: 200,
	Headers: map[string]string{"content-type": "application/json; charset=utf-8"},
	Body:    `{"login":"octocat","id":583231,"name":"The Octocat","company":"@github","public_repos":8}`}

// serveCanned is the host's half of a round trip: decode and check the
// request as plugin.serveRequest does, encode the reply.
func serveCanned(_ context.Context, raw []byte) []byte {
	if _, aerr := abi.ParseRequest(raw, 1<<20); aerr != nil {
		b, _ := json.Marshal(abi.Reply{Error: aerr})
		return b
	}
	b, _ := json.Marshal(abi.Reply{Response: cannedResponse})
	return b
}

// guestRequest is the request as the guests' bindings encode it.
type guestRequest struct {
	Method  string            `json:"method,omitempty"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
}

type guestReply struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	Error   *abi.Error        `json:"error"`
}

// nativeRequest is the whole round trip's JSON work in Go: the guest's
// encoding, the host's half, the guest's decoding.
func nativeRequest() ([]byte, error) {
	req, err := json.Marshal(guestRequest{Method: "GET", URL: "https://api.example.com/user",
		Headers: map[string]string{"Accept": "application/json"}})
	if err != nil {
		return nil, err
	}
	var r guestReply
	if err := json.Unmarshal(serveCanned(context.Background(), req), &r); err != nil {
		return nil, err
	}
	if r.Error != nil {
		return nil, r.Error
	}
	return []byte(r.Body), nil
}

// ---- Fixture --------------------------------------------------------------

type benchGuest struct {
	name string // "c", "go", "rust" or "as"
	wasm []byte
}

var (
	benchOnce    sync.Once
	benchGuests  []benchGuest
	benchErr     error
	benchCache   string
	benchCleanup []func()
)

// TestMain removes what the benchmarks built; plain go test builds nothing.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range benchCleanup {
		f()
	}
	os.Exit(code)
}

// buildGuests builds the benchmark guests once per process: the C one with
// clang (skipped without it), the Go one with the Go toolchain, through an
// overlay so its source needs no folder of its own in the module.
func buildGuests(b *testing.B) []benchGuest {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alterhost-engine-bench-")
		if err != nil {
			benchErr = err
			return
		}
		benchCleanup = append(benchCleanup, func() { os.RemoveAll(dir) })
		benchCache = filepath.Join(dir, "cache")
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			benchErr = err
			return
		}
		if _, err := exec.LookPath("clang"); err == nil {
			src := filepath.Join(dir, "bench.c")
			out := filepath.Join(dir, "c.wasm")
			if err := os.WriteFile(src, []byte(benchC), 0o644); err != nil {
				benchErr = err
				return
			}
			cmd := exec.Command("clang", "--target=wasm32", "-nostdlib", "-O2", "-I", filepath.Join(root, "abi", "c"),
				"-Wl,--no-entry", "-o", out, src)
			if msg, err := cmd.CombinedOutput(); err != nil {
				benchErr = fmt.Errorf("clang: %v\n%s", err, msg)
				return
			}
			wasm, _ := os.ReadFile(out)
			benchGuests = append(benchGuests, benchGuest{"c", wasm})
		}
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte(benchGo), 0o644); err != nil {
			benchErr = err
			return
		}
		virtual := filepath.Join(root, "host", "engine", "benchguest_overlay", "main.go")
		overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{virtual: src}})
		ovFile := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(ovFile, overlay, 0o644); err != nil {
			benchErr = err
			return
		}
		out := filepath.Join(dir, "go.wasm")
		cmd := exec.Command("go", "build", "-overlay", ovFile, "-buildmode=c-shared", "-trimpath", "-o", out, "./host/engine/benchguest_overlay")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if msg, err := cmd.CombinedOutput(); err != nil {
			benchErr = fmt.Errorf("go build: %v\n%s", err, msg)
			return
		}
		wasm, _ := os.ReadFile(out)
		benchGuests = append(benchGuests, benchGuest{"go", wasm})
		for _, g := range []struct {
			lang       pluginbuild.Lang
			file, code string
		}{{pluginbuild.Rust, "lib.rs", benchRust}, {pluginbuild.AssemblyScript, "index.ts", benchAssemblyScript}} {
			src := filepath.Join(dir, string(g.lang))
			if err := os.MkdirAll(src, 0o755); err != nil {
				benchErr = err
				return
			}
			os.WriteFile(filepath.Join(src, g.file), []byte(g.code), 0o644)
			os.WriteFile(filepath.Join(src, "alter.json"), []byte(benchManifest), 0o644)
			out := filepath.Join(dir, string(g.lang)+".wasm")
			err := pluginbuild.Run(context.Background(), pluginbuild.Build{Lang: g.lang, Dir: src, Out: out, Root: root})
			var te *pluginbuild.ToolchainError
			if errors.As(err, &te) {
				continue // measured where the toolchain is (scripts/setup.sh)
			}
			if err != nil {
				benchErr = fmt.Errorf("%s: %v", g.lang, err)
				return
			}
			wasm, _ := os.ReadFile(out)
			name := string(g.lang)
			if g.lang == pluginbuild.AssemblyScript {
				name = "as"
			}
			benchGuests = append(benchGuests, benchGuest{name, wasm})
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchGuests
}

// warmInstance compiles wasm on eng and returns an instance that has
// already served one call of export, as a warm pool's would have.
func warmInstance(b *testing.B, eng engine.Engine, wasm []byte, serve engine.RequestFunc, export string) engine.Instance {
	b.Helper()
	ctx := context.Background()
	m, err := eng.Compile(ctx, wasm, engine.Config{MemoryPages: 256, Timeout: 10 * time.Second,
		MaxOutputBytes: 1 << 20, Request: serve})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(ctx) })
	inst, err := m.Instantiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inst.Close(ctx) })
	if _, err := inst.Call(ctx, export, []byte(`{}`)); err != nil {
		b.Fatal(err)
	}
	return inst
}

func BenchmarkEngine(b *testing.B) {
	guests := buildGuests(b)
	ctx := context.Background()
	engines := map[string]engine.Engine{}
	for _, k := range engineKinds {
		eng, err := k.open(benchCache)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { eng.Close(ctx) })
		engines[k.name] = eng
	}
	cannedReply := serveCanned(ctx, []byte(`{"method":"GET","url":"https://api.example.com/user"}`))
	canned := func(context.Context, []byte) []byte { return cannedReply }

	wantRequest, err := nativeRequest()
	if err != nil {
		b.Fatal(err)
	}
	for _, bench := range []struct {
		name, export string
		serve        engine.RequestFunc
		native       func() ([]byte, error)
		want         []byte
	}{
		{"Ping", "ping", serveCanned, func() ([]byte, error) { return nativePing([]byte(`{}`)), nil }, pong},
		{"Request", "request", serveCanned, nativeRequest, wantRequest},
		{"Canned", "request", canned, nil, wantRequest},
	} {
		b.Run(bench.name, func(b *testing.B) {
			if bench.native != nil {
				b.Run("native", func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := bench.native(); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			for _, g := range guests {
				for _, k := range engineKinds {
					inst := warmInstance(b, engines[k.name], g.wasm, bench.serve, bench.export)
					name := g.name + "_" + k.name
					if k.name == "native" {
						name = g.name + "_nativeengine"
					}
					out, err := inst.Call(ctx, bench.export, []byte(`{}`))
					if err != nil || !bytes.Equal(out, bench.want) {
						b.Fatalf("%s: %s, %v; want %s", name, out, err, bench.want)
					}
					b.Run(name, func(b *testing.B) {
						b.ReportAllocs()
						in := []byte(`{}`)
						for b.Loop() {
							if _, err := inst.Call(ctx, bench.export, in); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		})
	}
}
