package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestTypeScriptClient drives the official TypeScript MCP SDK's client,
// pinned by e2e/ts/package-lock.json, against the real binary: discovery
// from the 401, dynamic registration, PKCE authorization with a scripted
// person signing in and approving, the token exchange, tools/list and a
// tool call, then a call after the access token expired that the SDK gets
// through by refreshing, without authorizing again. e2e/ts/client.mjs does
// the driving and reports what it saw as one JSON line.
func TestTypeScriptClient(t *testing.T) {
	const ts = "../../e2e/ts" // the test runs in cmd/alterhost
	var missing string
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node is not installed"
	} else if _, err := os.Stat(filepath.Join(ts, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		missing = "e2e/ts/node_modules is not installed"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: run scripts/setup.sh", missing)
		}
		t.Skipf("%s: run scripts/setup.sh", missing)
	}

	_, plugins := build(t)
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(plugins, "text.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "text.wasm"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	endpoint, _, logs := startWith(t, []string{"--addr", "127.0.0.1:0", "--plugins", dir, "--data-dir", t.TempDir(),
		"--access-token-ttl", "2s"})

	var link string
	for range 100 {
		if m := signinRE.FindStringSubmatch(logs.String()); m != nil {
			link = m[1]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if link == "" {
		t.Fatalf("no sign-in link printed:\n%s", logs.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(ts, "client.mjs"), endpoint, link)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("client.mjs took %v", time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("client.mjs did not finish within 90 s\nstdout: %s\nstderr: %s\nalterhost:\n%s", &stdout, &stderr, logs.String())
	}
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("node: %v", err)
		}
		t.Fatalf("client.mjs exited %d\nstdout: %s\nstderr: %s\nalterhost:\n%s", exit.ExitCode(), &stdout, &stderr, logs.String())
	}
	if stderr.Len() > 0 {
		t.Logf("client.mjs stderr: %s", &stderr)
	}
	t.Logf("client.mjs: %s", bytes.TrimSpace(stdout.Bytes()))

	var got struct {
		OK             bool     `json:"ok"`
		SDK            string   `json:"sdk"`
		Tools          []string `json:"tools"`
		Authorizations int      `json:"authorizations"`
		Refreshed      bool     `json:"refreshed"`
		Sent           struct {
			Authorize map[string]string `json:"authorize"`
			Token     []struct {
				Status    int    `json:"status"`
				GrantType string `json:"grant_type"`
				Resource  string `json:"resource"`
			} `json:"token"`
		} `json:"sent"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("client.mjs output is not one JSON object: %v\n%s", err, &stdout)
	}
	if !got.OK || !got.Refreshed {
		t.Errorf("ok=%v refreshed=%v; want both", got.OK, got.Refreshed)
	}
	if got.SDK != "1.32.2" {
		t.Errorf("TypeScript SDK %q; want 1.32.2 as e2e/ts/package-lock.json pins it", got.SDK)
	}
	if !slices.Contains(got.Tools, "reverse") {
		t.Errorf("tools %v; want reverse among them", got.Tools)
	}
	if got.Authorizations != 1 {
		t.Errorf("%d authorizations; want 1 (the refresh needs none)", got.Authorizations)
	}
	if r := got.Sent.Authorize["resource"]; r != endpoint {
		t.Errorf("authorize sent resource %q; want %q", r, endpoint)
	}
	grants := map[string]int{}
	for _, tok := range got.Sent.Token {
		if tok.Status == 200 {
			grants[tok.GrantType]++
		}
	}
	if grants["authorization_code"] != 1 || grants["refresh_token"] < 1 {
		t.Errorf("successful token requests by grant %v; want one authorization_code and a refresh_token", grants)
	}
}
