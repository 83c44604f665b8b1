package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/internal/balancer"
	"github.com/alterhost/alterhost/internal/pgtest"
	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/internal/sandboxtest"
	"github.com/alterhost/alterhost/oauth/sandbox"
)

// multiInstances is how many alterhost processes share the database.
const multiInstances = 3

// announced is how long the test lets PostgreSQL's announcement of a
// grant change reach every instance before it expects them to act on it:
// the announcement travels on a connection of its own, so a request sent
// right after the change can arrive first. It is far below the 30 s an
// instance would otherwise keep its cached copy.
const announced = 250 * time.Millisecond

// TestMultiInstance runs three alterhost processes on one PostgreSQL
// schema and one vault key, behind a round-robin balancer without sticky
// sessions, and drives them through it as one server: the OAuth journey,
// a Connect flow, refresh races, a disconnect seen by every instance at
// once, and one instance killed under load.
//
// The upstream is one sandbox (oauth/sandbox) served by the test on
// loopback, as GitHub or Google would be one service for every instance.
// --dev cannot stand in for it here: each process's --dev sandbox keeps
// its codes and tokens in its own memory, so a token one instance obtained
// means nothing to the sandbox of the next.
func TestMultiInstance(t *testing.T) {
	serverURL := pgtest.ServerURL(t) // skips before the slow part when unset
	began := time.Now()
	bin, plugins := build(t)
	dbURL := pgtest.Schema(t, serverURL)

	up := startSharedSandbox(t)
	dir := t.TempDir()
	textWasm, err := os.ReadFile(filepath.Join(plugins, "text.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "text.wasm"), textWasm, 0o644)
	buildSandboxPlugin(t, bin, up.URL+"/api/", filepath.Join(dir, "sandbox.wasm"))
	providers := writeSandboxProvider(t, up)

	lb, err := balancer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	base := lb.URL()

	// One vault key for all: each must open the grants another sealed.
	key := make([]byte, 32)
	rand.Read(key)
	env := append(os.Environ(), "ALTERHOST_VAULT_KEY=multi:"+base64.StdEncoding.EncodeToString(key),
		sandboxSecretEnv+"="+up.secret)
	var insts []*multiInstance
	for range multiInstances {
		insts = append(insts, startMultiInstance(t, bin, env, "--plugins", dir, "--data-dir", t.TempDir(),
			"--database-url", dbURL, "--base-url", base, "--providers", providers, "--allow-private-egress",
			"--access-token-ttl", "2s", "--stateless", "--no-watch", "--metrics-addr", "127.0.0.1:0"))
	}
	for i, in := range insts {
		in.waitReady(t)
		if _, err := lb.Add("http://" + in.addr); err != nil {
			t.Fatal(err)
		}
		t.Logf("instance %d at %s (pid %d)", i, in.addr, in.cmd.Process.Pid)
	}
	t.Logf("setup: %v", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for i, in := range insts {
				t.Logf("instance %d served %v; logs:\n%s", i, lb.Paths(i), in.logs.String())
			}
		}
	})

	db := openTestDB(t, dbURL)
	browser := sandboxtest.Browser()
	httpc := &http.Client{Timeout: 20 * time.Second}
	endpoint := base + "/mcp"

	// The scripted person approves one authorization, in scenario 1; any
	// later one is a re-authorization the refreshes should have made
	// unnecessary, refused and counted.
	var (
		fetchMu        sync.Mutex
		fetchT         *testing.T
		authorizations atomic.Int32
	)
	const redirect = "http://127.0.0.1:1/callback" // never reached: the browser stops at it
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "multi-instance client", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL: redirect,
		AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			authorizations.Add(1)
			fetchMu.Lock()
			ft := fetchT
			fetchT = nil
			fetchMu.Unlock()
			if ft == nil {
				return nil, fmt.Errorf("authorization asked again")
			}
			back := sandboxtest.ApproveRedirect(ft, browser, args.URL)
			q := back.Query()
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
		// oauth2's default refreshes 10 s before expiry, which with 2 s
		// tokens would refresh before every request and run into the token
		// endpoint's rate limit; refresh in the token's last second instead.
		NewTokenSource: func(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (oauth2.TokenSource, error) {
			return oauth2.ReuseTokenSourceWithExpiry(tok, cfg.TokenSource(ctx, tok), time.Second), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	var session *mcp.ClientSession
	call := func(t *testing.T, name string, args any) *mcp.CallToolResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	// onEach calls a tool until every live instance has answered it at
	// least once, and checks each answer. Calls are sequential, so the
	// instance that served one is the one whose /mcp count grew.
	onEach := func(t *testing.T, name string, args any, check func(i int, res *mcp.CallToolResult)) {
		t.Helper()
		answered := map[int]bool{}
		for n := 0; ; n++ {
			live := 0
			for i := range insts {
				if dead, _ := lb.Dead(i); !dead {
					live++
				}
			}
			if len(answered) == live {
				return
			}
			if n == 20 {
				t.Fatalf("%s: after %d calls only instances %v answered", name, n, answered)
			}
			before := lb.Counts("/mcp")
			res := call(t, name, args)
			after := lb.Counts("/mcp")
			served := -1
			for i := range after {
				if after[i] > before[i] {
					if served >= 0 {
						served = -2 // more than one request: retried elsewhere
					} else {
						served = i
					}
				}
			}
			check(served, res)
			if served >= 0 {
				answered[served] = true
			}
		}
	}
	whoami := func(res *mcp.CallToolResult) (authenticated bool, scopes []string) {
		var who struct {
			Authenticated bool     `json:"authenticated"`
			Scopes        []string `json:"scopes"`
		}
		if res.IsError || json.Unmarshal([]byte(textOf(res)), &who) != nil {
			return false, nil
		}
		return who.Authenticated, who.Scopes
	}

	var connectURL string
	ok := t.Run("oauth journey", func(t *testing.T) {
		start := time.Now()
		defer func() { t.Logf("took %v", time.Since(start).Round(time.Millisecond)) }()
		// Without a token: 401 and where to find the authorization server,
		// named by the balancer's URL.
		resp, err := httpc.Post(endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+base+"/.well-known/") {
			t.Fatalf("without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		// Any instance's link works: they are rows in the shared database.
		link := insts[len(insts)-1].signinLink(t)
		if page := sandboxtest.SignIn(t, browser, link); !strings.Contains(page, "Signed in") {
			t.Fatalf("sign-in: %s", page)
		}
		fetchMu.Lock()
		fetchT = t
		fetchMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		session, err = mcp.NewClient(&mcp.Implementation{Name: "multi", Version: "1"}, nil).
			Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, OAuthHandler: handler}, nil)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if n := authorizations.Load(); n != 1 {
			t.Fatalf("%d authorizations; want 1", n)
		}
		onEach(t, "reverse", map[string]any{"text": "abc"}, func(i int, res *mcp.CallToolResult) {
			if res.IsError || textOf(res) != "cba" {
				t.Errorf("reverse on instance %d: %s", i, textOf(res))
			}
		})
		res := call(t, "whoami", nil)
		meta := errorMeta(t, res)
		connectURL, _ = meta["connect_url"].(string)
		if meta["code"] != "grant_not_found" || !strings.HasPrefix(connectURL, base+"/connect/sandbox?link=") {
			t.Fatalf("whoami without a grant: %s %v", textOf(res), meta)
		}
		// Each step of the journey went wherever the balancer sent it.
		for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/register", "/authorize", "/token", "/signin"} {
			var n int64
			for _, c := range lb.Counts(path) {
				n += c
			}
			if n == 0 {
				t.Errorf("no request for %s reached any instance", path)
			}
		}
		for i := range insts {
			t.Logf("instance %d served %v", i, lb.Paths(i))
		}
	})
	if !ok {
		t.FailNow()
	}
	t.Cleanup(func() { session.Close() })

	ok = t.Run("connect", func(t *testing.T) {
		start := time.Now()
		defer func() { t.Logf("took %v", time.Since(start).Round(time.Millisecond)) }()
		// Start, sandbox consent and callback: the callback lands on
		// whichever instance comes next, and finishes what another started.
		starts, callbacks := lb.Counts("/connect/sandbox"), lb.Counts("/connect/sandbox/callback")
		if page := sandboxtest.Approve(t, browser, connectURL); !strings.Contains(page, "Connected Sandbox") {
			t.Fatalf("connect: %s", page)
		}
		if s, c := grew(starts, lb.Counts("/connect/sandbox")), grew(callbacks, lb.Counts("/connect/sandbox/callback")); len(s) != 1 || len(c) != 1 || s[0] == c[0] {
			t.Errorf("the flow started on instances %v and came back on %v; want one each, not the same", s, c)
		}
		onEach(t, "whoami", nil, func(i int, res *mcp.CallToolResult) {
			if ok, scopes := whoami(res); !ok || strings.Join(scopes, " ") != "read" {
				t.Errorf("whoami on instance %d: %s", i, textOf(res))
			}
		})
		// More scope: the new grant replaces the old one on every instance,
		// whose cached copy of the read-only grant must not be used.
		res := call(t, "add_note", map[string]any{"text": "multi"})
		meta := errorMeta(t, res)
		if meta["code"] != "scope_reauth_required" {
			t.Fatalf("add_note with read only: %s %v", textOf(res), meta)
		}
		if page := sandboxtest.Approve(t, browser, meta["connect_url"].(string)); !strings.Contains(page, "Connected Sandbox") {
			t.Fatalf("re-consent: %s", page)
		}
		time.Sleep(announced)
		onEach(t, "add_note", map[string]any{"text": "multi"}, func(i int, res *mcp.CallToolResult) {
			if res.IsError || !strings.Contains(textOf(res), `"text":"multi"`) {
				t.Errorf("add_note on instance %d: %s", i, textOf(res))
			}
		})
		if n := len(up.sb.Notes()); n < multiInstances {
			t.Errorf("the sandbox has %d notes; want one per instance", n)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("refresh races", func(t *testing.T) {
		start := time.Now()
		defer func() { t.Logf("took %v", time.Since(start).Round(time.Millisecond)) }()
		ts, err := handler.TokenSource(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		var clientID string
		if err := db.QueryRow(context.Background(), `SELECT DISTINCT client_id FROM tokens`).Scan(&clientID); err != nil {
			t.Fatalf("the client's id: %v", err)
		}
		time.Sleep(time.Until(tok.Expiry) + 100*time.Millisecond)
		tokensBefore := lb.Counts("/token")

		// The client refreshes once for its concurrent calls; meanwhile the
		// same refresh token is presented concurrently on every instance,
		// as a client retrying after lost answers would. Within the grace
		// window each gets new tokens of the same family; none revokes it.
		const calls, racers = 16, 6
		var wg sync.WaitGroup
		gate := make(chan struct{})
		callErrs := make(chan error, calls)
		raced := make(chan string, racers)
		for range calls {
			wg.Go(func() {
				<-gate
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "reverse", Arguments: map[string]any{"text": "race"}})
				switch {
				case err != nil:
					callErrs <- err
				case res.IsError || textOf(res) != "ecar":
					callErrs <- fmt.Errorf("reverse: %s", textOf(res))
				}
			})
		}
		for range racers {
			wg.Go(func() {
				<-gate
				resp, err := httpc.PostForm(base+"/token", url.Values{"grant_type": {"refresh_token"},
					"refresh_token": {tok.RefreshToken}, "client_id": {clientID}})
				if err != nil {
					raced <- "error: " + err.Error()
					return
				}
				defer resp.Body.Close()
				var out struct {
					AccessToken string `json:"access_token"`
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.AccessToken == "" {
					raced <- fmt.Sprintf("status %d: %s", resp.StatusCode, b)
					return
				}
				raced <- out.AccessToken
			})
		}
		close(gate)
		wg.Wait()
		close(callErrs)
		close(raced)
		for err := range callErrs {
			t.Errorf("a call during the refresh race: %v", err)
		}
		seen := map[string]bool{}
		for at := range raced {
			if !strings.HasPrefix(at, "ah_at_") || seen[at] {
				t.Errorf("a concurrent refresh: %s", at)
			}
			seen[at] = true
		}
		// The racers and the client's own refresh, spread by the balancer.
		tokensAfter := lb.Counts("/token")
		var refreshes int64
		for i := range tokensAfter {
			refreshes += tokensAfter[i] - tokensBefore[i]
		}
		if on := grew(tokensBefore, tokensAfter); refreshes < racers+1 || len(on) < 2 {
			t.Errorf("%d refreshes on instances %v; want at least %d, on several", refreshes, on, racers+1)
		}

		// Afterwards the client still works, without asking the person.
		time.Sleep(time.Until(tok.Expiry.Add(2*time.Second)) + 100*time.Millisecond)
		onEach(t, "reverse", map[string]any{"text": "after"}, func(i int, res *mcp.CallToolResult) {
			if res.IsError || textOf(res) != "retfa" {
				t.Errorf("reverse on instance %d after the race: %s", i, textOf(res))
			}
		})
		if n := authorizations.Load(); n != 1 {
			t.Errorf("%d authorizations; want 1: a refresh race must not send the person back", n)
		}
		var families, revoked int
		if err := db.QueryRow(context.Background(),
			`SELECT count(DISTINCT family_id), count(*) FILTER (WHERE revoked_at IS NOT NULL) FROM tokens`).
			Scan(&families, &revoked); err != nil {
			t.Fatal(err)
		}
		if families != 1 || revoked != 0 {
			t.Errorf("%d token families, %d revoked tokens; want 1 and 0", families, revoked)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		start := time.Now()
		defer func() { t.Logf("took %v", time.Since(start).Round(time.Millisecond)) }()
		// Every instance has the grant cached now (for 30 s)...
		onEach(t, "whoami", nil, func(i int, res *mcp.CallToolResult) {
			if ok, _ := whoami(res); !ok {
				t.Fatalf("whoami on instance %d before the disconnect: %s", i, textOf(res))
			}
		})
		// ...and forgets it as soon as PostgreSQL announces the change.
		resp, err := browser.PostForm(base+"/connect/sandbox/disconnect", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("disconnect: %d", resp.StatusCode)
		}
		time.Sleep(announced)
		onEach(t, "whoami", nil, func(i int, res *mcp.CallToolResult) {
			if code := errorMeta(t, res)["code"]; code != "grant_not_found" {
				t.Errorf("whoami on instance %d after the disconnect: %s (code %v); want grant_not_found", i, textOf(res), code)
			}
		})
	})

	t.Run("kill during load", func(t *testing.T) {
		start := time.Now()
		defer func() { t.Logf("took %v", time.Since(start).Round(time.Millisecond)) }()
		res := call(t, "whoami", nil)
		link, _ := errorMeta(t, res)["connect_url"].(string)
		if link != "" {
			if page := sandboxtest.Approve(t, browser, link); !strings.Contains(page, "Connected Sandbox") {
				t.Fatalf("connect again: %s", page)
			}
		}
		onEach(t, "whoami", nil, func(i int, res *mcp.CallToolResult) {
			if ok, _ := whoami(res); !ok {
				t.Fatalf("whoami on instance %d: %s", i, textOf(res))
			}
		})

		const workers, perWorker, killAfter = 8, 50, 100
		const victim = 1
		var (
			done     atomic.Int32
			mu       sync.Mutex
			failed   []string
			wrong    []string
			kill     = make(chan struct{})
			killOnce sync.Once
		)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for n := range perWorker {
					name, args := "reverse", any(map[string]any{"text": "ab" + strconv.Itoa(w)})
					if n%2 == 1 {
						name, args = "whoami", nil
					}
					// An answer cut off with the instance never comes: the
					// call gives up after a while, which counts as failed.
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
					cancel()
					mu.Lock()
					switch {
					case err != nil:
						failed = append(failed, fmt.Sprintf("%s: %v", name, err))
					case name == "reverse" && (res.IsError || textOf(res) != strconv.Itoa(w)+"ba"):
						wrong = append(wrong, "reverse: "+textOf(res))
					case name == "whoami":
						if ok, _ := whoami(res); !ok {
							wrong = append(wrong, "whoami: "+textOf(res))
						}
					}
					mu.Unlock()
					if done.Add(1) == killAfter {
						killOnce.Do(func() { close(kill) })
					}
				}
			})
		}
		<-kill
		inflight := lb.InFlight(victim)
		insts[victim].kill(t)
		killed := time.Now()
		servedAtKill := lb.Counts("")
		wg.Wait()

		dead, diedAt := lb.Dead(victim)
		if !dead {
			t.Fatalf("the balancer did not notice instance %d died", victim)
		}
		fails := lb.Failures()
		t.Logf("killed instance %d with %d requests in flight after %d calls; %d calls failed, %d requests failed on it, %d moved on when it refused",
			victim, inflight, killAfter, len(failed), len(fails), lb.Redials(victim))
		for _, f := range fails {
			// In flight: sent there before the balancer knew it was gone.
			if f.Backend != victim || !f.Started.Before(later(killed, diedAt)) {
				t.Errorf("a request failed on instance %d, started %v (killed %v, noticed %v): %s %s, %s: %v",
					f.Backend, f.Started.Format(time.StampMicro), killed.Format(time.StampMicro),
					diedAt.Format(time.StampMicro), f.Method, f.Path, f.Stage, f.Err)
			}
		}
		if len(failed) > len(fails) {
			t.Errorf("%d calls failed, but only %d requests failed on the killed instance: %q", len(failed), len(fails), failed)
		}
		if len(wrong) > 0 {
			t.Errorf("%d calls answered wrongly: %q", len(wrong), wrong)
		}
		on := grew(servedAtKill, lb.Counts(""))
		for i := range insts {
			if i != victim && !slices.Contains(on, i) {
				t.Errorf("instance %d served nothing after the kill", i)
			}
		}

		// Nothing stored was lost: the grant is there, and the client goes
		// on with the two instances left.
		var grants int
		if err := db.QueryRow(context.Background(),
			`SELECT count(*) FROM grants WHERE provider = 'sandbox' AND status = 'active'`).Scan(&grants); err != nil {
			t.Fatal(err)
		}
		if grants != 1 {
			t.Errorf("%d active sandbox grants; want 1", grants)
		}
		onEach(t, "whoami", nil, func(i int, res *mcp.CallToolResult) {
			if ok, _ := whoami(res); !ok || i == victim {
				t.Errorf("whoami on instance %d after the kill: %s", i, textOf(res))
			}
		})
		onEach(t, "reverse", map[string]any{"text": "end"}, func(i int, res *mcp.CallToolResult) {
			if res.IsError || textOf(res) != "dne" {
				t.Errorf("reverse on instance %d after the kill: %s", i, textOf(res))
			}
		})
		if n := authorizations.Load(); n != 1 {
			t.Errorf("%d authorizations; want 1", n)
		}
	})

	for i, n := range lb.Counts("") {
		if n == 0 {
			t.Errorf("instance %d served nothing", i)
		}
	}
	for i, in := range insts {
		logs := in.logs.String()
		for _, secret := range []string{"sbx_at_", "sbx_rt_", "ah_at_", "ah_rt_"} {
			if strings.Contains(logs, secret) {
				t.Errorf("instance %d logged a token (%s...)", i, secret)
			}
		}
	}
	t.Logf("total: %v", time.Since(began).Round(time.Millisecond))
}

// grew lists the backends whose count grew from before to after.
func grew(before, after []int64) []int {
	var out []int
	for i := range after {
		if after[i] > before[i] {
			out = append(out, i)
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// textOf is text without a *testing.T, for goroutines.
func textOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// multiInstance is one alterhost process of TestMultiInstance.
type multiInstance struct {
	addr string
	cmd  *exec.Cmd
	logs *proctest.Buffer
	done chan struct{}
}

// startMultiInstance starts alterhost on a free loopback port with env.
// The port is found by binding and releasing it, because with --base-url
// set alterhost names only the base URL in its log, not the port it bound.
func startMultiInstance(t *testing.T, bin string, env []string, args ...string) *multiInstance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &multiInstance{addr: ln.Addr().String(), logs: &proctest.Buffer{}, done: make(chan struct{})}
	ln.Close()
	in.cmd = exec.Command(bin, append([]string{"--addr", in.addr}, args...)...)
	in.cmd.Env = env
	in.cmd.Stdout, in.cmd.Stderr = in.logs, in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		in.cmd.Wait()
		close(in.done)
	}()
	t.Cleanup(func() {
		in.cmd.Process.Kill()
		select {
		case <-in.done:
		case <-time.After(proctest.Timeout):
			t.Errorf("alterhost (pid %d) did not exit after SIGKILL", in.cmd.Process.Pid)
		}
	})
	return in
}

// waitReady waits until the instance printed its sign-in link and its
// /readyz answers 200.
func (in *multiInstance) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-in.done:
			t.Fatalf("alterhost exited: %v\n%s", in.cmd.ProcessState, in.logs.String())
		default:
		}
		if signinRE.MatchString(in.logs.String()) {
			resp, err := http.Get("http://" + in.addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alterhost at %s not ready:\n%s", in.addr, in.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (in *multiInstance) signinLink(t *testing.T) string {
	t.Helper()
	m := signinRE.FindStringSubmatch(in.logs.String())
	if m == nil {
		t.Fatalf("no sign-in link printed:\n%s", in.logs.String())
	}
	return m[1]
}

// kill SIGKILLs the instance and waits until it is gone.
func (in *multiInstance) kill(t *testing.T) {
	t.Helper()
	in.cmd.Process.Kill()
	select {
	case <-in.done:
	case <-time.After(proctest.Timeout):
		t.Fatalf("alterhost (pid %d) did not exit after SIGKILL", in.cmd.Process.Pid)
	}
}

// sharedSandbox is the sandbox provider as an upstream of its own on
// loopback: its consent page for the browser, its token endpoint and API
// for every instance.
type sharedSandbox struct {
	URL    string
	secret string
	sb     *sandbox.Sandbox
}

// sandboxSecretEnv passes the shared sandbox's client secret to the
// instances, as the providers file asks.
const sandboxSecretEnv = "ALTERHOST_MULTI_SANDBOX_SECRET"

func startSharedSandbox(t *testing.T) *sharedSandbox {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	up := &sharedSandbox{URL: "http://" + srv.Listener.Addr().String(), secret: "sbx_secret_" + rand.Text()}
	up.sb = sandbox.New(sandbox.Options{BaseURL: up.URL, ClientSecret: up.secret})
	mux.Handle("/sandbox/", up.sb.BrowserHandler())
	mux.Handle("/", up.sb.Handler())
	srv.Start()
	t.Cleanup(srv.Close)
	return up
}

// writeSandboxProvider configures the provider "sandbox" as the shared
// sandbox, in the form of --providers.
func writeSandboxProvider(t *testing.T, up *sharedSandbox) string {
	t.Helper()
	host := strings.TrimPrefix(up.URL, "http://")
	cfg := map[string]any{"providers": []map[string]any{{
		"name": sandbox.ProviderName, "display_name": "Sandbox",
		"auth_url": up.URL + "/sandbox/authorize", "token_url": up.URL + "/oauth/token",
		"revoke_url": up.URL + "/oauth/revoke", "client_id": sandbox.DefaultClientID,
		"client_secret_env": sandboxSecretEnv, "scopes": []string{sandbox.ScopeRead}, "pkce": true,
		"api_hosts": []string{host},
	}}}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildSandboxPlugin builds examples/go/sandbox calling the API at apiBase
// instead of the --dev sandbox's virtual host, and packs it with its
// manifest allowing that host. The source is swapped with go build's
// -overlay, so the checkout is not touched.
func buildSandboxPlugin(t *testing.T, bin, apiBase, out string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "examples", "go", "sandbox")
	code, err := os.ReadFile(filepath.Join(src, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	const virtual = `"https://sandbox.alterhost.test/api/"`
	if !strings.Contains(string(code), virtual) {
		t.Fatalf("examples/go/sandbox/main.go no longer names %s; update buildSandboxPlugin", virtual)
	}
	tmp := t.TempDir()
	patched := filepath.Join(tmp, "main.go")
	os.WriteFile(patched, []byte(strings.Replace(string(code), virtual, strconv.Quote(apiBase), 1)), 0o644)
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(src, "main.go"): patched}})
	os.WriteFile(filepath.Join(tmp, "overlay.json"), overlay, 0o644)
	wasm := filepath.Join(tmp, "sandbox.wasm")
	// The flags of scripts/build-plugins.sh, so the build cache it filled
	// serves the dependencies.
	cmd := exec.Command("go", "build", "-overlay", filepath.Join(tmp, "overlay.json"), "-buildmode=c-shared",
		"-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o", wasm, "./examples/go/sandbox")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the sandbox plugin: %v\n%s", err, b)
	}
	var m map[string]any
	raw, _ := os.ReadFile(filepath.Join(src, "alter.json"))
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(apiBase)
	m["allowed_hosts"] = []string{u.Host}
	raw, _ = json.Marshal(m)
	manifest := filepath.Join(tmp, "alter.json")
	os.WriteFile(manifest, raw, 0o644)
	if b, err := exec.Command(bin, "plugin", "pack", "-o", out, wasm, manifest).CombinedOutput(); err != nil {
		t.Fatalf("pack the sandbox plugin: %v\n%s", err, b)
	}
}

// openTestDB connects to the instances' schema, for the test to read what
// they stored.
func openTestDB(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
