package pluginbuild_test

// The differential test: every language's build of the shared examples
// (examples/LANG/sandbox and examples/LANG/github) runs in the real
// alterhost binary with the same inputs, and each result (text, isError,
// _meta, structured content) must equal the Go plugin's, errors and
// non-ASCII text included.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/internal/pluginbuild"
	"github.com/alterhost/alterhost/internal/proctest"
	"github.com/alterhost/alterhost/internal/sandboxtest"
)

// diffLangs are the languages compared, Go first: it is the reference.
var diffLangs = []pluginbuild.Lang{pluginbuild.Go, pluginbuild.C, pluginbuild.Rust, pluginbuild.AssemblyScript}

// diffBuilt is one language's build of the examples.
type diffBuilt struct {
	lang    pluginbuild.Lang
	sandbox string // the plugin file, or "" if the language has no such example
	github  string
	// githubManifest is examples/LANG/github/alter.json, for the test's
	// sidecar copy.
	githubManifest map[string]any
}

// diffCall is one call of a scenario.
type diffCall struct {
	name, tool string
	args       map[string]any
	after      func(t *testing.T, d *diffServer, res *mcp.CallToolResult) // e.g. approve the Connect URL
}

// diffResult is what a call returned, normalized: per-process values (the
// port, Connect links, creation times) are replaced by placeholders.
type diffResult struct {
	Text       string
	IsError    bool
	Meta       string
	Structured string
}

func TestDifferential(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()

	// Build alterhost and every language's examples at once; the builds
	// are independent and mostly wait on their compilers.
	var wg sync.WaitGroup
	bin := filepath.Join(work, "alterhost")
	var binErr error
	wg.Go(func() {
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/alterhost")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	built := make([]*diffBuilt, len(diffLangs))
	buildErrs := make([][]error, len(diffLangs))
	for i, lang := range diffLangs {
		b := &diffBuilt{lang: lang}
		built[i] = b
		for _, ex := range []string{"sandbox", "github"} {
			dir := filepath.Join(root, "examples", string(lang), ex)
			if _, err := os.Stat(filepath.Join(dir, "alter.json")); err != nil {
				continue
			}
			out := filepath.Join(work, string(lang), ex+".wasm")
			os.MkdirAll(filepath.Dir(out), 0o755)
			if ex == "sandbox" {
				b.sandbox = out
			} else {
				b.github = out
				raw, _ := os.ReadFile(filepath.Join(dir, "alter.json"))
				json.Unmarshal(raw, &b.githubManifest)
			}
			wg.Go(func() {
				err := pluginbuild.Run(context.Background(), pluginbuild.Build{Lang: lang, Dir: dir, Out: out, Root: root})
				if err != nil {
					buildErrs[i] = append(buildErrs[i], fmt.Errorf("examples/%s/%s: %w", lang, ex, err))
				}
			})
		}
	}
	wg.Wait()
	if binErr != nil {
		t.Fatal(binErr)
	}
	var langs []*diffBuilt
	for i, b := range built {
		var te *pluginbuild.ToolchainError
		for _, err := range buildErrs[i] {
			if errors.As(err, &te) && os.Getenv("CI") != "true" {
				t.Logf("skipping %s: %v", b.lang, err)
				b = nil
				break
			}
			t.Fatal(err)
		}
		if b != nil && (b.sandbox != "" || b.github != "") {
			langs = append(langs, b)
		}
	}
	if len(langs) == 0 || langs[0].lang != pluginbuild.Go {
		t.Fatal("the Go examples, the reference, did not build")
	}

	// Each language runs in its own alterhost (the examples share tool
	// names), the languages one after another: 2 cores are busy enough
	// compiling one language's modules.
	results := map[pluginbuild.Lang]map[string]diffResult{}
	for _, b := range langs {
		t.Run(string(b.lang), func(t *testing.T) {
			results[b.lang] = diffRun(t, bin, b)
		})
	}
	ref := results[pluginbuild.Go]
	if testing.Verbose() {
		for _, name := range diffOrder(ref) {
			t.Logf("go %s: %+v", name, ref[name])
		}
	}
	for _, b := range langs[1:] {
		got := results[b.lang]
		for _, name := range diffOrder(ref) {
			g, ok := got[name]
			if !ok {
				continue // the language lacks that example; diffRun said why
			}
			if w := ref[name]; g != w {
				t.Errorf("%s differs from Go in %s:\n  go: %+v\n  %s: %+v", b.lang, name, w, b.lang, g)
			}
		}
	}
}

// diffOrder lists the call names of results in a stable order.
func diffOrder(m map[string]diffResult) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	// Sorted by the scenario index in front of each name.
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	return names
}

// diffServer is one running alterhost and its MCP session.
type diffServer struct {
	base    string
	session *mcp.ClientSession
	browser *http.Client
	logs    *proctest.Buffer
}

// diffRun runs both scenarios against one language's plugins.
func diffRun(t *testing.T, bin string, b *diffBuilt) map[string]diffResult {
	dir := t.TempDir()
	gh := newFakeGitHub(t)
	if b.sandbox != "" {
		copyFile(t, b.sandbox, filepath.Join(dir, "sandbox.wasm"))
	}
	githubOK := false
	if b.github != "" {
		cfg, _ := b.githubManifest["config"].(map[string]any)
		if _, ok := cfg["api_base"]; !ok {
			// Without the setting the plugin cannot be pointed at the fake.
			t.Logf("examples/%s/github/alter.json declares no \"api_base\" setting; its github example is not compared", b.lang)
		} else {
			githubOK = true
			copyFile(t, b.github, filepath.Join(dir, "github.wasm"))
			// The sidecar manifest wins over the embedded one: the same
			// manifest, allowed to reach the fake instead of api.github.com.
			m := b.githubManifest
			m["allowed_hosts"] = []string{gh.host}
			raw, _ := json.Marshal(m)
			os.WriteFile(filepath.Join(dir, "github.alter.json"), raw, 0o644)
			os.WriteFile(filepath.Join(dir, "github.config.json"), []byte(`{"api_base":"`+gh.url+`"}`), 0o644)
		}
	}
	providers := filepath.Join(t.TempDir(), "providers.json")
	os.WriteFile(providers, []byte(`{"providers":[{"name":"github","auth_url":"`+gh.url+`/login/oauth/authorize",`+
		`"token_url":"`+gh.url+`/login/oauth/access_token","client_id":"diff-client","public":true,`+
		`"api_hosts":["`+gh.host+`"]}]}`), 0o644)
	d := startDiffServer(t, bin, "--no-auth", "--dev", "--allow-private-egress", "--addr", "127.0.0.1:0",
		"--plugins", dir, "--data-dir", t.TempDir(), "--providers", providers)

	out := map[string]diffResult{}
	run := func(prefix string, calls []diffCall) {
		for i, c := range calls {
			res, err := d.session.CallTool(context.Background(), &mcp.CallToolParams{Name: c.tool, Arguments: c.args})
			if err != nil {
				t.Fatalf("%s: %v\n%s", c.name, err, d.logs.String())
			}
			out[fmt.Sprintf("%s %02d %s", prefix, i, c.name)] = normalize(d, res)
			if c.after != nil {
				c.after(t, d, res)
			}
		}
	}
	if b.sandbox != "" {
		run("sandbox", sandboxCalls)
	}
	if githubOK {
		run("github", githubCalls)
		if err := gh.check(); err != nil {
			t.Error(err)
		}
	}
	return out
}

var (
	connectRE = regexp.MustCompile(`http://127\.0\.0\.1:\d+/connect/[a-z]+\?link=[A-Za-z0-9_-]+`)
	createdRE = regexp.MustCompile(`"created_at":"[^"]*"`)
	portRE    = regexp.MustCompile(`127\.0\.0\.1:\d+`)
)

// normalize turns a result into a diffResult.
func normalize(d *diffServer, res *mcp.CallToolResult) diffResult {
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text.WriteString(tc.Text)
		} else {
			b, _ := json.Marshal(c)
			text.Write(b)
		}
	}
	meta, _ := json.Marshal(res.Meta)
	structured, _ := json.Marshal(res.StructuredContent)
	clean := func(s string) string {
		s = connectRE.ReplaceAllString(s, "CONNECT_URL")
		s = createdRE.ReplaceAllString(s, `"created_at":"TIME"`)
		return portRE.ReplaceAllString(s, "127.0.0.1:PORT")
	}
	return diffResult{Text: clean(text.String()), IsError: res.IsError, Meta: clean(string(meta)), Structured: clean(string(structured))}
}

// approveConnect follows a result's Connect URL and approves.
func approveConnect(t *testing.T, d *diffServer, res *mcp.CallToolResult) {
	meta, _ := res.Meta["alterhost/error"].(map[string]any)
	u, _ := meta["connect_url"].(string)
	if u == "" {
		t.Fatalf("no connect_url in %v", res.Meta)
	}
	sandboxtest.Approve(t, d.browser, u)
}

// connectGitHub follows a result's Connect URL through the fake GitHub,
// which approves at once.
func connectGitHub(t *testing.T, d *diffServer, res *mcp.CallToolResult) {
	meta, _ := res.Meta["alterhost/error"].(map[string]any)
	u, _ := meta["connect_url"].(string)
	if u == "" {
		t.Fatalf("no connect_url in %v", res.Meta)
	}
	resp, err := d.browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("connecting GitHub: %d\n%s", resp.StatusCode, page)
	}
}

// tricky is note and issue text that has tripped JSON code before.
const tricky = "héllo ☃ <b>&</b> 😀 \u2028 \u2029 \"q\" \\ / \t \x01 \x7f é \uFFFD"

var sandboxCalls = []diffCall{
	{name: "whoami without a grant", tool: "whoami", after: approveConnect},
	{name: "whoami", tool: "whoami"},
	{name: "no notes", tool: "list_notes"},
	{name: "add_note needs write", tool: "add_note", args: map[string]any{"text": tricky}, after: approveConnect},
	{name: "add_note", tool: "add_note", args: map[string]any{"text": tricky}},
	{name: "add_note html", tool: "add_note", args: map[string]any{"text": "<script>alert('&amp;')</script>"}},
	{name: "add_note astral", tool: "add_note", args: map[string]any{"text": strings.Repeat("😀", 2000)}},
	{name: "add_note too long", tool: "add_note", args: map[string]any{"text": strings.Repeat("é", 2001)}},
	{name: "add_note blank", tool: "add_note", args: map[string]any{"text": "   "}},
	{name: "add_note empty", tool: "add_note", args: map[string]any{"text": ""}},
	{name: "add_note no text", tool: "add_note", args: map[string]any{}},
	{name: "list_notes", tool: "list_notes"},
	{name: "whoami with write", tool: "whoami"},
}

var githubCalls = []diffCall{
	{name: "list_repos without a grant", tool: "list_repos", args: map[string]any{}, after: connectGitHub},
	{name: "list_repos", tool: "list_repos", args: map[string]any{"visibility": "private", "sort": "updated", "per_page": 5}},
	{name: "list_repos defaults", tool: "list_repos", args: map[string]any{}},
	{name: "list_repos 401", tool: "list_repos", args: map[string]any{"per_page": 1}},
	{name: "list_repos rate limit", tool: "list_repos", args: map[string]any{"per_page": 2}},
	{name: "list_repos not a list", tool: "list_repos", args: map[string]any{"per_page": 3}},
	{name: "list_repos 500 not UTF-8", tool: "list_repos", args: map[string]any{"per_page": 4}},
	{name: "list_repos not UTF-8", tool: "list_repos", args: map[string]any{"per_page": 6}},
	{name: "list_repos 403", tool: "list_repos", args: map[string]any{"per_page": 7}},
	{name: "list_repos sparse", tool: "list_repos", args: map[string]any{"per_page": 8}},
	{name: "create_issue", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "hello", "title": "Bug <1> " + tricky, "body": "line\n" + tricky}},
	{name: "create_issue no body", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "hello", "title": "t"}},
	{name: "create_issue 404", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "gone", "title": "t"}},
	{name: "create_issue 422", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "invalid", "title": "t"}},
	{name: "create_issue 422 not UTF-8", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "latin1", "title": "t"}},
	{name: "create_issue 410", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "off", "title": "t"}},
	{name: "create_issue 502", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "broken", "title": "t"}},
	{name: "create_issue 401", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "denied", "title": "t"}},
	{name: "create_issue dot dot", tool: "create_issue", args: map[string]any{"owner": "..", "repo": "hello", "title": "t"}},
	{name: "create_issue blank title", tool: "create_issue", args: map[string]any{"owner": "octo", "repo": "hello", "title": " \t\u00a0\u3000"}},
	{name: "create_issue schema", tool: "create_issue", args: map[string]any{"owner": "octo/x", "repo": "hello", "title": "t"}},
}

// fakeGitHub is GitHub's OAuth endpoints and the two REST endpoints the
// examples call, with canned answers chosen by per_page and by the
// repository's name. It checks every request and notes what was wrong.
type fakeGitHub struct {
	url, host string
	mu        sync.Mutex
	problems  []string
}

const fakeToken = "gho_differential"

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.host = strings.TrimPrefix(srv.URL, "http://")
	return f
}

func (f *fakeGitHub) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func (f *fakeGitHub) check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) > 0 {
		return errors.New("the fake GitHub saw: " + strings.Join(f.problems, "; "))
	}
	return nil
}

// fakeRepos has escapes, HTML-ish text, null, a missing field, an extra
// field and a number written in an unusual way.
const fakeRepos = `[{"id":1,"full_name":"octo/hello","private":false,"description":"Hi ☃ <x> \u00e9 \ud83d\ude00 \u2028",` +
	`"html_url":"https://github.com/octo/hello","default_branch":"main","stargazers_count":42,"updated_at":"2026-01-02T03:04:05Z","owner":{"login":"octo"}},
 {"full_name":"octo/secret","private":true,"description":null,"html_url":"https://github.com/octo/secret",
  "default_branch":"trunk","stargazers_count":0,"updated_at":"2026-02-03T04:05:06Z"},
 {"full_name":"octo/odd","private":"yes","html_url":"https://github.com/octo/odd","stargazers_count":1.5e3,
  "default_branch":"a\/b","updated_at":"2026-03-04T05:06:07Z","description":"\u0000\u001f\" \\"}]`

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/login/oauth/authorize":
		q := r.URL.Query()
		http.Redirect(w, r, q.Get("redirect_uri")+"?code=diff-code&state="+q.Get("state"), http.StatusFound)
		return
	case r.URL.Path == "/login/oauth/access_token":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","scope":"repo"}`, fakeToken)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+fakeToken {
		f.problem("%s %s with Authorization %q", r.Method, r.URL.Path, got)
	}
	if r.Header.Get("Accept") != "application/vnd.github+json" || r.Header.Get("X-GitHub-Api-Version") != "2022-11-28" ||
		r.Header.Get("User-Agent") == "" {
		f.problem("%s %s without GitHub's headers: %v", r.Method, r.URL.Path, r.Header)
	}
	answer := func(status int, body string, kv ...string) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Set(kv[i], kv[i+1])
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/user/repos":
		q := r.URL.Query()
		switch q.Get("per_page") {
		case "5":
			if q.Get("visibility") != "private" || q.Get("sort") != "updated" || len(q) != 3 {
				f.problem("list_repos query %s", r.URL.RawQuery)
			}
			answer(200, fakeRepos)
		case "30":
			if len(q) != 1 {
				f.problem("list_repos query %s", r.URL.RawQuery)
			}
			answer(200, " [ ] ")
		case "1":
			answer(401, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`)
		case "2":
			answer(403, `{"message":"API rate limit exceeded for user ID 1."}`, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1767225600")
		case "3":
			answer(200, `{"message":"odd"}`)
		case "4":
			answer(500, "\xff\xfe server \xe9rror")
		case "6":
			answer(200, "[{\"full_name\":\"octo/caf\xe9\",\"private\":true,\"description\":\"bad \xff\xfe bytes\",\"html_url\":\"u\","+
				"\"default_branch\":\"m\xe2\x98\",\"stargazers_count\":-0,\"updated_at\":\"\\ud800\"}]")
		case "8":
			// GitHub leaves out what it does not know: the output keeps
			// nulls, which the output schema allows.
			answer(200, `[{"full_name":"octo/new","private":false,"html_url":"https://github.com/octo/new"}]`)
		case "7":
			answer(403, `{"message":"Resource not accessible by integration","errors":["one",{"code":"too_many_things"},{"field":"x"}]}`,
				"X-RateLimit-Remaining", "4999")
		default:
			f.problem("list_repos query %s", r.URL.RawQuery)
			answer(400, `{}`)
		}
	case r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/repos/octo/") && strings.HasSuffix(r.URL.Path, "/issues"):
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			f.problem("create_issue with Content-Type %q", ct)
		}
		var issue map[string]any
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &issue); err != nil || issue["title"] == nil || len(issue) > 2 {
			f.problem("create_issue body %s", raw)
		}
		repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/repos/octo/"), "/issues")
		switch repo {
		case "hello":
			want := map[string]any{"title": "t"}
			if issue["title"] != "t" {
				want = map[string]any{"title": "Bug <1> " + tricky, "body": "line\n" + tricky}
			}
			if fmt.Sprint(issue) != fmt.Sprint(want) {
				f.problem("create_issue body %s", raw)
			}
			answer(201, `{"number":7,"html_url":"https://github.com/octo/hello/issues/7","title":`+string(mustJSON(issue["title"]))+
				`,"state":"open","id":99,"user":{"login":"octo"}}`)
		case "gone":
			answer(404, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}`)
		case "invalid":
			answer(422, `{"message":"Validation Failed","errors":[{"resource":"Issue","code":"missing_field","field":"title"},`+
				`{"code":"custom","message":"labels are locked \u003cfor now\u003e"},"plain text"]}`)
		case "latin1":
			answer(422, "{\"message\":\"Validation \xe9chou\xe9e\"}")
		case "off":
			answer(410, `{"message":"Issues are disabled for this repo"}`)
		case "broken":
			answer(502, `<html><body>bad gateway</body></html>`)
		case "denied":
			answer(401, `{"message":"Requires authentication"}`)
		default:
			f.problem("create_issue for %s", r.URL.Path)
			answer(400, `{}`)
		}
	default:
		f.problem("unexpected %s %s", r.Method, r.URL)
		answer(404, `{"message":"Not Found"}`)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDiffServer runs alterhost with args, waits until it serves HTTP,
// and connects an MCP client.
func startDiffServer(t *testing.T, bin string, args ...string) *diffServer {
	t.Helper()
	endpoint, _, logs := proctest.Serve(t, bin, args...)
	session, err := mcp.NewClient(&mcp.Implementation{Name: "differential", Version: "1"}, nil).
		Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { session.Close() })
	jar, _ := cookiejar.New(nil)
	return &diffServer{base: strings.TrimSuffix(endpoint, "/mcp"), session: session, browser: &http.Client{Jar: jar}, logs: logs}
}
