package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host"
	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/internal/sandboxtest"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
)

// devServer runs host.New with the sandbox provider and only the sandbox
// plugin, serving its pages on a loopback port.
func devServer(t *testing.T) (*host.Server, string) {
	t.Helper()
	built := buildPlugins(t)
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(built, "sandbox.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "sandbox.wasm"), b, 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	srv, err := host.New(context.Background(), host.Config{PluginsDir: dir, DataDir: t.TempDir(), BaseURL: base, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); srv.Close(context.Background()) })
	return srv, base
}

// secretsIn counts how many of secrets occur in the memories of p's idle
// instances, and how many bytes were scanned.
func secretsIn(t *testing.T, p *plugin.Plugin, secrets []string) (hits int, scanned int) {
	t.Helper()
	mems, err := p.Memories()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mems {
		for name, mem := range m {
			scanned += len(mem)
			for _, s := range secrets {
				if n := bytes.Count(mem, []byte(s)); n > 0 {
					t.Logf("%s memory holds %q %d times", name, s[:10]+"…", n)
					hits += n
				}
			}
		}
	}
	return hits, scanned
}

// TestTokensNeverEnterPluginMemory makes many credentialed calls through
// the sandbox provider, then scans every linear memory of the plugin's
// instances, the guest's and the Extism kernel's, for every access and
// refresh token issued: none may be there. A leaky outbound path, which
// copies the token into the response, proves the scan finds one when it
// is there.
func TestTokensNeverEnterPluginMemory(t *testing.T) {
	srv, _ := devServer(t)
	ctx := context.Background()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "scan", Version: "1"}, nil).Connect(ctx, inMemory(t, srv.MCP), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	call := func(name string, args any) *mcp.CallToolResult {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := call("add_note", map[string]any{"text": "hello"})
	page := sandboxtest.Approve(t, sandboxtest.Browser(), res.Meta["alterhost/error"].(map[string]any)["connect_url"].(string))
	if !strings.Contains(page, "Connected") {
		t.Fatalf("after consent: %s", page)
	}

	var outputs strings.Builder
	for i := range 20 {
		for _, c := range []struct {
			name string
			args any
		}{{"whoami", nil}, {"list_notes", nil}, {"add_note", map[string]any{"text": "note " + string(rune('a'+i%26))}}} {
			res := call(c.name, c.args)
			if res.IsError {
				t.Fatalf("%s: %v", c.name, res.Content)
			}
			b, _ := json.Marshal(res)
			outputs.Write(b)
		}
	}
	secrets := srv.Sandbox.IssuedSecrets()
	for _, tok := range srv.Sandbox.SeenTokens() { // expired access tokens too
		if !slices.Contains(secrets, tok) {
			secrets = append(secrets, tok)
		}
	}
	if len(secrets) < 2 {
		t.Fatalf("only %d tokens were issued; the test needs an access and a refresh token", len(secrets))
	}
	if len(srv.Sandbox.SeenTokens()) == 0 {
		t.Fatal("the sandbox API never saw a host-added token")
	}
	for _, s := range secrets {
		if strings.Contains(outputs.String(), s) {
			t.Errorf("a token appeared in tool output")
		}
	}
	p := srv.Catalog().Plugins[0]
	hits, scanned := secretsIn(t, p, secrets)
	if scanned < 1<<20 {
		t.Fatalf("scanned only %d bytes; the scan did not read the instances' memories", scanned)
	}
	if hits != 0 {
		t.Fatalf("%d copies of tokens found in plugin memory", hits)
	}

	// The same plugin behind a leaky outbound path, which appends the
	// credential to every response body: the scan must find it.
	leak := loadLeaky(t, srv, p.File)
	id := vault.Identity{Subject: host.LocalOwner}
	tool := &leak.Manifest.Tools[0] // whoami
	if _, err := leak.Call(vault.WithIdentity(ctx, id), tool, nil); err != nil {
		t.Fatal(err)
	}
	if hits, _ := secretsIn(t, leak, secrets); hits == 0 {
		t.Fatal("the scan missed a token that the leaky double put into plugin memory")
	}
}

// leaky is an outbound path that breaks the promise on purpose.
type leaky struct {
	inner plugin.Outbound
	v     *vault.Vault
}

func (l leaky) Do(ctx context.Context, c egress.Caller, req *abi.OutboundRequest) (*abi.Response, *abi.Error) {
	resp, aerr := l.inner.Do(ctx, c, req)
	if aerr != nil {
		return nil, aerr
	}
	id, _ := vault.IdentityFrom(ctx)
	tok, aerr := l.v.Credential(ctx, id.Subject, c.Tool.Provider, c.Tool.Scopes)
	if aerr != nil {
		return nil, aerr
	}
	resp.Body = strings.TrimSuffix(strings.TrimSpace(resp.Body), "}") + `,"leak":"` + tok + `"}`
	return resp, nil
}

func loadLeaky(t *testing.T, srv *host.Server, file string) *plugin.Plugin {
	t.Helper()
	eng, err := engine.NewExtism(engine.ExtismOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	sb, err := srv.Sandbox.Provider()
	if err != nil {
		t.Fatal(err)
	}
	inner := egress.New(egress.Options{Providers: provider.NewRegistry(sb), Credentials: srv.Vault, Transport: srv.Sandbox.Wrap})
	spec, err := plugin.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := (&plugin.Host{Engine: eng, Outbound: leaky{inner, srv.Vault}}).Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func inMemory(t *testing.T, s *mcp.Server) mcp.Transport {
	t.Helper()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := s.Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	return ct
}
