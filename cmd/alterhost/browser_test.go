package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// findChromium returns the chromium binary on PATH, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowserConsent walks the sign-in and consent pages in a real headless
// Chromium: the person opens the printed sign-in link, the client's
// authorize URL shows the consent page with the client, the scope and the
// sandbox provider, the person connects the sandbox from the consent page's
// Connect link and approves the sandbox's own consent page, then approves
// alterhost's consent page; the browser lands on the client's redirect URI
// (a server of this test) with the code, state and iss, and the code is
// exchanged for a token. It also frames the consent page from another
// origin and checks that the browser does not render it there.
func TestBrowserConsent(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium on PATH: run scripts/setup.sh")
		}
		t.Skip("no chromium on PATH (scripts/setup.sh installs it)")
	}
	_, plugins := build(t)
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(plugins, "sandbox.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sandbox.wasm"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	endpoint, _, logs := startWith(t, []string{"--addr", "127.0.0.1:0", "--plugins", dir, "--data-dir", t.TempDir(), "--dev"})
	base := strings.TrimSuffix(endpoint, "/mcp")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	httpc := &http.Client{Timeout: 10 * time.Second}

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

	// The client's redirect URI: a server of this test that records what
	// the browser brings back.
	callbacks := make(chan url.Values, 4)
	client := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		select {
		case callbacks <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Client callback</title><h1>Back at the client</h1>`)
	}))
	defer client.Close()
	redirectURI := client.URL + "/callback"

	// Discovery and registration, as a client does them.
	var meta struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		RegistrationEndpoint  string `json:"registration_endpoint"`
	}
	getJSON(t, httpc, base+"/.well-known/oauth-authorization-server", &meta)
	if meta.AuthorizationEndpoint == "" || meta.TokenEndpoint == "" || meta.RegistrationEndpoint == "" {
		t.Fatalf("authorization server metadata: %+v", meta)
	}
	const clientName = "Browser Test Client"
	reg, _ := json.Marshal(map[string]any{
		"client_name": clientName, "redirect_uris": []string{redirectURI},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"},
	})
	resp, err := httpc.Post(meta.RegistrationEndpoint, "application/json", strings.NewReader(string(reg)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var registered struct {
		ClientID string `json:"client_id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &registered) != nil || registered.ClientID == "" {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	conf := &oauth2.Config{
		ClientID:    registered.ClientID,
		RedirectURL: redirectURI,
		Scopes:      []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint,
			AuthStyle: oauth2.AuthStyleInParams},
	}
	type authorization struct{ url, state, verifier string }
	newAuthorization := func() authorization {
		a := authorization{state: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
		a.url = conf.AuthCodeURL(a.state, oauth2.S256ChallengeOption(a.verifier),
			oauth2.SetAuthURLParam("resource", endpoint))
		return a
	}

	// The browser: headless, a fresh profile, background services off, and
	// every host name unresolvable, so it reaches nothing but this test's
	// servers on 127.0.0.1.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chrome),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // root, on a sandboxed machine
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	defer cancelAlloc()
	var consoleMu sync.Mutex
	var console []string
	record := func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			// A CSP violation, or an error or warning about one of
			// alterhost's URLs (not the favicon of this test's pages).
			if ev.Entry.Level != "error" && ev.Entry.Level != "warning" ||
				ev.Entry.Source != "security" && !strings.HasPrefix(ev.Entry.URL, base+"/") {
				return
			}
			line = fmt.Sprintf("%s %s %s: %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.URL, ev.Entry.Text)
		case *runtime.EventExceptionThrown:
			line = fmt.Sprintf("exception: %s", ev.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			line = fmt.Sprintf("console.%s", ev.Type)
		default:
			return
		}
		consoleMu.Lock()
		console = append(console, line)
		consoleMu.Unlock()
	}
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithListener(record))
	defer cancelBrowser()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\nalterhost's log:\n%s", what, err, logs.String())
		}
	}

	// Sign in with the printed link: opening it shows a button, which
	// signs in.
	res, err := chromedp.Run(bctx, chromedp.NavigateResponse(link))
	step("opening the sign-in link", err)
	if h1 := heading(t, bctx); res.Status != http.StatusOK || h1 != "Sign in to alterhost" {
		t.Fatalf("sign-in link: %d %q", res.Status, h1)
	}
	res, err = chromedp.RunResponse(bctx, chromedp.Click(chromedp.CSS(`form[action="/signin"] button[type="submit"]`), chromedp.NodeVisible))
	step("pressing Sign in", err)
	if h1 := heading(t, bctx); res.Status != http.StatusOK || h1 != "Signed in" {
		t.Fatalf("sign-in: %d %q", res.Status, h1)
	}

	// The consent page.
	first := newAuthorization()
	res, err = chromedp.Run(bctx, chromedp.NavigateResponse(first.url))
	step("opening the authorize URL", err)
	if res.Status != http.StatusOK {
		t.Fatalf("authorize: status %d", res.Status)
	}
	// The headers as the browser received them.
	if csp := header(res.Headers, "Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("consent page CSP %q lacks frame-ancestors 'none'", csp)
	}
	if xfo := header(res.Headers, "X-Frame-Options"); !strings.EqualFold(xfo, "DENY") {
		t.Errorf("consent page X-Frame-Options = %q; want DENY", xfo)
	}
	page := consentView(t, bctx)
	if page.Title != "Allow "+clientName+"?" || !strings.Contains(page.Text, clientName) {
		t.Errorf("consent page does not name the client: title %q\n%s", page.Title, page.Text)
	}
	if !contains(page.Codes, "mcp") {
		t.Errorf("consent page does not list the scope mcp: %q\n%s", page.Codes, page.Text)
	}
	var sandbox *providerItem
	for i := range page.Providers {
		if strings.HasPrefix(page.Providers[i].Text, "Sandbox") {
			sandbox = &page.Providers[i]
		}
	}
	if sandbox == nil || sandbox.LinkText != "Connect" || !strings.HasPrefix(sandbox.Href, base+"/connect/sandbox?") {
		t.Fatalf("consent page lists no Sandbox provider with a Connect link: %+v\n%s", page.Providers, page.Text)
	}
	if page.Buttons != "Approve,Deny,Sign out" {
		t.Errorf("consent page buttons = %q; want Approve,Deny,Sign out", page.Buttons)
	}

	// Connect the sandbox from the consent page: the link opens a new tab.
	step("clicking Connect", chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`a[href^="`+base+`/connect/sandbox?"]`), chromedp.NodeVisible)))
	tabID, err := waitForTab(bctx, base+"/")
	step("waiting for the Connect tab", err)
	tab, cancelTab := chromedp.NewContext(bctx, chromedp.WithTargetID(tabID), chromedp.WithListener(record))
	defer cancelTab()
	step("the sandbox's consent page", waitFor(tab, `document.title.startsWith("Sandbox: allow") && document.querySelector('button[value="approve"]') !== null`))
	sandboxText, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
	step("reading the sandbox's consent page", err)
	if !strings.Contains(sandboxText, "Allow") || !strings.Contains(sandboxText, "sandbox notes") {
		t.Errorf("sandbox consent page:\n%s", sandboxText)
	}
	res, err = chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`button[value="approve"]`), chromedp.NodeVisible))
	step("approving the sandbox", err)
	if h1 := heading(t, tab); res.Status != http.StatusOK || !strings.HasPrefix(h1, "Connected Sandbox") {
		text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("after approving the sandbox: %d %s (%s)\n%s\nalterhost's log:\n%s", res.Status, h1, res.URL, text, logs.String())
	}
	cancelTab()

	// Back to the client's request, a fresh one, and approve.
	second := newAuthorization()
	res, err = chromedp.Run(bctx, chromedp.NavigateResponse(second.url))
	step("opening the authorize URL again", err)
	if page := consentView(t, bctx); res.Status != http.StatusOK || page.Title != "Allow "+clientName+"?" {
		t.Fatalf("authorize after connecting: %d %q\n%s", res.Status, page.Title, page.Text)
	}
	res, err = chromedp.RunResponse(bctx, chromedp.Click(chromedp.CSS(`button[value="approve"]`), chromedp.NodeVisible))
	step("approving", err)
	if !strings.HasPrefix(res.URL, redirectURI+"?") || res.Status != http.StatusOK {
		t.Fatalf("approving landed on %d %s; want the client's %s", res.Status, res.URL, redirectURI)
	}
	var q url.Values
	select {
	case q = <-callbacks:
	case <-ctx.Done():
		t.Fatal("the client's redirect URI was never reached")
	}
	if q.Get("state") != second.state || q.Get("iss") != meta.Issuer || q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("callback query %v; want a code, state %q and iss %q", q, second.state, meta.Issuer)
	}
	select {
	case extra := <-callbacks:
		t.Errorf("a second callback: %v", extra)
	default:
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, httpc), q.Get("code"),
		oauth2.VerifierOption(second.verifier), oauth2.SetAuthURLParam("resource", endpoint))
	if err != nil {
		t.Fatalf("token exchange: %v", err)
	}
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("token: %+v", tok)
	}

	// Nothing on alterhost's pages broke in the browser: no CSP violation
	// (the pages carry no script and load nothing), no error from a load.
	consoleMu.Lock()
	for _, line := range console {
		t.Errorf("browser console during the journey: %s", line)
	}
	console = nil
	consoleMu.Unlock()

	// Clickjacking: a page of another origin frames the consent page. The
	// browser must not render it in the frame. A second frame, of a third
	// origin and without any frame policy, shows that this check would see
	// a framed document's text.
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>control</title><p>framable control page</p>`)
	}))
	defer control.Close()
	framed := newAuthorization()
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>framing</title>
<iframe id="consent" src="%s" onload="this.dataset.loaded=1"></iframe>
<iframe id="control" src="%s" onload="this.dataset.loaded=1"></iframe>`,
			strings.ReplaceAll(framed.url, "&", "&amp;"), control.URL)
	}))
	defer attacker.Close()
	step("opening the framing page", chromedp.Do(bctx, chromedp.Navigate(attacker.URL)))
	step("waiting for both frames", waitFor(bctx, `document.querySelectorAll('iframe[data-loaded]').length === 2`))
	frames, err := frameTexts(bctx)
	step("reading the frames", err)
	if !strings.Contains(frames["control"].text, "framable control page") {
		t.Fatalf("the control frame's text was not seen (%q): this check cannot see framed documents", frames)
	}
	if got := frames["consent"]; got.url == framed.url || strings.Contains(got.text, clientName) || strings.Contains(got.text, "Approve") {
		t.Errorf("the consent page rendered inside another site's frame (%s):\n%s", got.url, got.text)
	} else {
		t.Logf("the framed consent page: %s %q", got.url, strings.Join(strings.Fields(got.text), " "))
	}
	consoleMu.Lock()
	for _, line := range console {
		if strings.Contains(line, "frame-ancestors") {
			t.Logf("the browser reported: %s", strings.TrimSpace(line))
		}
	}
	consoleMu.Unlock()
	select {
	case extra := <-callbacks:
		t.Errorf("a callback from the framed page: %v", extra)
	default:
	}
}

// header returns a response header from the browser's view of it (names
// may arrive in any case).
func header(h map[string]any, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func getJSON(t *testing.T, c *http.Client, u string, v any) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, v) != nil {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
}

// heading is the page's first h1, as rendered.
func heading(t *testing.T, ctx context.Context) string {
	t.Helper()
	h, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("h1") || {innerText: ""}).innerText`))
	if err != nil {
		t.Fatalf("reading the heading: %v", err)
	}
	return h
}

type providerItem struct {
	Text     string `json:"text"`
	LinkText string `json:"linkText"`
	Href     string `json:"href"`
	Target   string `json:"target"`
}

type consentContent struct {
	Title     string         `json:"title"`
	Text      string         `json:"text"`
	Codes     []string       `json:"codes"`
	Providers []providerItem `json:"providers"`
	Buttons   string         `json:"buttons"`
}

// consentView reads the consent page as rendered: its text, the code
// elements (scopes), the list items that carry a link (providers) and
// the form's buttons.
func consentView(t *testing.T, ctx context.Context) consentContent {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[consentContent](`({
		title: document.title.replace(/ · alterhost$/, ""),
		text: document.body.innerText,
		codes: [...document.querySelectorAll("main ul li > code")].map(c => c.innerText),
		providers: [...document.querySelectorAll("main ul li")].filter(li => li.querySelector("a")).map(li => ({
			text: li.innerText.trim(), linkText: li.querySelector("a").innerText,
			href: li.querySelector("a").href, target: li.querySelector("a").target})),
		buttons: [...document.querySelectorAll("form button")].map(b => b.innerText).join(","),
	})`))
	if err != nil {
		t.Fatalf("reading the consent page: %v", err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page until it holds.
func waitFor(ctx context.Context, cond string) error {
	var last error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("waiting for %s", cond), last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitForTab returns a page target opened by a page, whose URL starts
// with prefix.
func waitForTab(ctx context.Context, prefix string) (target.ID, error) {
	first := chromedp.FromContext(ctx).Target.TargetID
	for {
		infos, err := chromedp.Targets(ctx)
		if err != nil {
			return "", err
		}
		for _, info := range infos {
			if info.Type == "page" && info.TargetID != first && strings.HasPrefix(info.URL, prefix) {
				return info.TargetID, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no new tab: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type frameContent struct{ url, text string }

// frameTexts returns, by iframe id, the URL and the text of the document
// the browser put in each iframe of the page.
func frameTexts(ctx context.Context) (map[string]frameContent, error) {
	return chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (map[string]frameContent, error) {
		depth, pierce := int64(-1), true
		doc, err := cdp.Call(ctx, t, dom.GetDocument, dom.GetDocumentParams{Depth: &depth, Pierce: &pierce})
		if err != nil {
			return nil, err
		}
		out := map[string]frameContent{}
		var walk func(n *cdp.Node)
		walk = func(n *cdp.Node) {
			if n.NodeName == "IFRAME" {
				var b strings.Builder
				nodeText(n.ContentDocument, &b)
				c := frameContent{text: b.String()}
				if n.ContentDocument != nil {
					c.url = n.ContentDocument.DocumentURL
				}
				out[attr(n, "id")] = c
				return
			}
			for _, c := range n.Children {
				walk(c)
			}
		}
		walk(doc.Root)
		return out, nil
	})
}

// nodeText appends the text under n, leaving out scripts and styles.
func nodeText(n *cdp.Node, b *strings.Builder) {
	if n == nil || n.NodeName == "SCRIPT" || n.NodeName == "STYLE" {
		return
	}
	if n.NodeType == 3 {
		b.WriteString(n.NodeValue)
		b.WriteByte(' ')
	}
	for _, c := range n.Children {
		nodeText(c, b)
	}
}

func attr(n *cdp.Node, name string) string {
	for i := 0; i+1 < len(n.Attributes); i += 2 {
		if n.Attributes[i] == name {
			return n.Attributes[i+1]
		}
	}
	return ""
}
