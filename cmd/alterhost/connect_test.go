package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/internal/sandboxtest"
)

// errorMeta returns the machine-readable fields of a failed tool result.
func errorMeta(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	m, _ := res.Meta["alterhost/error"].(map[string]any)
	return m
}

// TestConnectJourney walks the whole journey with the sandbox provider: a
// call without a grant gets a Connect URL; approving stores a grant; the
// call then works with a credential the host added; a tool needing more
// scope gets a re-consent URL; disconnecting brings grant_not_found back.
func TestConnectJourney(t *testing.T) {
	bin, plugins := build(t)
	dir, data := t.TempDir(), t.TempDir()
	b, err := os.ReadFile(filepath.Join(plugins, "sandbox.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "sandbox.wasm"), b, 0o644)
	endpoint, _, logs := start(t, dir, "--dev", "--data-dir", data)
	base := strings.TrimSuffix(endpoint, "/mcp")

	ctx := context.Background()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "journey", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	call := func(name string, args any) *mcp.CallToolResult {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}

	// 1. No grant: grant_not_found with a fresh Connect URL, said in words.
	res := call("whoami", nil)
	meta := errorMeta(t, res)
	connectURL, _ := meta["connect_url"].(string)
	if !res.IsError || meta["code"] != "grant_not_found" || !strings.HasPrefix(connectURL, base+"/connect/sandbox?link=") ||
		!strings.Contains(text(t, res), connectURL) {
		t.Fatalf("whoami without a grant: %s meta=%v", text(t, res), meta)
	}

	// 2. Approve: the grant is stored.
	browser := sandboxtest.Browser()
	if page := sandboxtest.Approve(t, browser, connectURL); !strings.Contains(page, "Connected Sandbox") {
		t.Fatalf("connect page: %s", page)
	}
	// The link was single-use.
	if resp, err := browser.Get(connectURL); err != nil || resp.StatusCode != http.StatusGone {
		t.Errorf("reusing the Connect URL: %v %v; want 410", resp.StatusCode, err)
	}

	// 3. The same call works, and the sandbox API saw the bearer token.
	res = call("whoami", nil)
	var who struct {
		Authenticated bool     `json:"authenticated"`
		TokenSeen     bool     `json:"token_seen"`
		Scopes        []string `json:"scopes"`
	}
	json.Unmarshal([]byte(text(t, res)), &who)
	if res.IsError || !who.Authenticated || !who.TokenSeen || strings.Join(who.Scopes, " ") != "read" {
		t.Fatalf("whoami with a grant: %s", text(t, res))
	}

	// Rotating the vault key while alterhost runs re-seals the grant; the
	// running process picks the new key up from the key file.
	if out, err := exec.Command(bin, "vault", "rotate-key", "--data-dir", data).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "re-sealed 1 grants") {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}

	// 4. A tool needing an extra scope: scope_reauth_required, then consent.
	res = call("add_note", map[string]any{"text": "from the journey"})
	meta = errorMeta(t, res)
	if !res.IsError || meta["code"] != "scope_reauth_required" || !strings.Contains(text(t, res), "write") {
		t.Fatalf("add_note with only read: %s meta=%v", text(t, res), meta)
	}
	sandboxtest.Approve(t, browser, meta["connect_url"].(string))
	if res := call("add_note", map[string]any{"text": "from the journey"}); res.IsError {
		t.Fatalf("add_note after re-consent: %s", text(t, res))
	}
	if res := call("list_notes", nil); res.IsError || !strings.Contains(text(t, res), "from the journey") {
		t.Fatalf("list_notes: %s", text(t, res))
	}

	// 5. Disconnect: the grant is revoked and deleted; the next call asks
	// to connect again.
	resp, err := http.PostForm(base+"/connect/sandbox/disconnect", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("disconnect: %v %v", resp.StatusCode, err)
	}
	if res := call("whoami", nil); errorMeta(t, res)["code"] != "grant_not_found" {
		t.Fatalf("whoami after disconnect: %s", text(t, res))
	}

	// The audit trail has every request (written in batches, so give it a
	// moment), and no secret reached any log.
	var out []byte
	for range 50 {
		if out, err = exec.Command(bin, "audit", "--data-dir", data).CombinedOutput(); err != nil {
			t.Fatalf("audit: %v\n%s", err, out)
		}
		if strings.Count(string(out), "\n") == 7 { // header and 6 requests
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"owner", "journey", "sandbox", "whoami", "add_note", "list_notes",
		"GET sandbox.alterhost.test/api/whoami", "POST sandbox.alterhost.test/api/notes", "grant_not_found", "scope_reauth_required"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("audit output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(logs.String(), "sbx_at_") || strings.Contains(logs.String(), "sbx_rt_") {
		t.Error("a token reached the logs")
	}
}

// TestProvidersHideSecrets lists providers in both formats with a client
// secret configured: it must show the provider ready and never the secret.
func TestProvidersHideSecrets(t *testing.T) {
	bin, _ := build(t)
	for _, args := range [][]string{{"providers"}, {"providers", "--json"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "ALTERHOST_GITHUB_CLIENT_ID=client-123", "ALTERHOST_GITHUB_CLIENT_SECRET=hunter2-secret")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "github") || strings.Contains(string(out), "hunter2-secret") {
			t.Errorf("alterhost %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
