package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestPluginNewBuild: a plugin scaffolded by `plugin new` in each language
// builds with `plugin build` outside the source tree and serves: its hello
// tool reads a setting (default, then the operator's), and its whoami
// reaches the sandbox provider with a credential the host adds.
func TestPluginNewBuild(t *testing.T) {
	bin, _ := build(t)
	for _, lang := range []string{"go", "c", "rust", "assemblyscript"} {
		t.Run(lang, func(t *testing.T) {
			work := t.TempDir()
			name := "my-" + lang
			cmd := exec.Command(bin, "plugin", "new", name, "--lang", lang)
			cmd.Dir = work
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "alterhost plugin build "+name) {
				t.Fatalf("plugin new: %v\n%s", err, out)
			}
			// A second new into the same folder is refused, not merged.
			cmd = exec.Command(bin, "plugin", "new", "--lang", lang, name)
			cmd.Dir = work
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "is not empty") {
				t.Fatalf("plugin new over a plugin: %v\n%s", err, out)
			}
			src := filepath.Join(work, name)
			if lang == "assemblyscript" {
				// What `npm install` would do, without the network: the
				// compiler the repository's setup installed, and its lockfile.
				root, _ := filepath.Abs("../../abi/assemblyscript")
				if err := os.Symlink(filepath.Join(root, "node_modules"), filepath.Join(src, "node_modules")); err != nil {
					t.Fatal(err)
				}
				lock, _ := os.ReadFile(filepath.Join(root, "package-lock.json"))
				os.WriteFile(filepath.Join(src, "package-lock.json"), lock, 0o644)
			}
			cmd = exec.Command(bin, "plugin", "build", src)
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "built ") {
				t.Fatalf("plugin build: %v\n%s", err, out)
			}
			plugins := t.TempDir()
			wasm, err := os.ReadFile(filepath.Join(src, name+".wasm"))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(plugins, name+".wasm"), wasm, 0o644)
			endpoint, _, logs := start(t, plugins, "--dev", "--log-level", "debug")
			s, err := mcp.NewClient(&mcp.Implementation{Name: "new", Version: "1"}, nil).
				Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			call := func(tool string, args any) *mcp.CallToolResult {
				t.Helper()
				res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			if res := call("hello", map[string]any{"name": "Zoé"}); res.IsError || text(t, res) != "Hello, Zoé!" {
				t.Fatalf("hello: %s", text(t, res))
			}
			// stderr is read by another goroutine: give the line a moment.
			for i := 0; !strings.Contains(logs.String(), "greeting Zoé") || !strings.Contains(logs.String(), "plugin="+name); i++ {
				if i == 100 {
					t.Fatalf("the guest's debug line is not in the log:\n%s", logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The operator's setting reaches the guest; the watch reloads the
			// plugin when its settings file appears.
			os.WriteFile(filepath.Join(plugins, name+".config.json"), []byte(`{"greeting":"Bonjour"}`), 0o644)
			deadline := time.Now().Add(15 * time.Second)
			for res := call("hello", map[string]any{"name": "Zoé"}); text(t, res) != "Bonjour, Zoé!"; res = call("hello", map[string]any{"name": "Zoé"}) {
				if time.Now().After(deadline) {
					t.Fatalf("hello after setting the greeting: %s", text(t, res))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if res := call("whoami", nil); !res.IsError || errorMeta(t, res)["code"] != "grant_not_found" {
				t.Fatalf("whoami without a grant: %s", text(t, res))
			}
		})
	}
}
