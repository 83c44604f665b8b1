// Package sandboxtest drives the --dev sandbox provider's consent page
// the way a person in a browser would, for end-to-end tests.
package sandboxtest

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"testing"
)

// Browser returns an HTTP client that keeps cookies, as the Connect flow's
// browser binding needs.
func Browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	hidden     = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// Approve opens a Connect URL in browser, approves the sandbox's consent
// page, and returns the page alterhost shows at the end.
func Approve(t testing.TB, browser *http.Client, connectURL string) string {
	t.Helper()
	resp := approve(t, browser, connectURL)
	defer resp.Body.Close()
	done, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after approving: %d\n%s", resp.StatusCode, done)
	}
	return string(done)
}

// SignIn opens an owner-mode sign-in link in browser and presses its
// button, and returns the page alterhost shows then.
func SignIn(t testing.TB, browser *http.Client, link string) string {
	t.Helper()
	resp := approve(t, browser, link)
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signing in: %d\n%s", resp.StatusCode, page)
	}
	return string(page)
}

// ApproveRedirect opens a URL whose page is a consent form (the sandbox's,
// or alterhost's own for MCP clients), approves it, and returns where the
// approval redirects to, without following it: an OAuth client's redirect
// URI need not exist in a test.
func ApproveRedirect(t testing.TB, browser *http.Client, pageURL string) *url.URL {
	t.Helper()
	noFollow := *browser
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp := approve(t, &noFollow, pageURL)
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || err != nil {
		t.Fatalf("approving did not redirect: %d %v", resp.StatusCode, err)
	}
	return loc
}

// approve loads the consent page at pageURL and posts its form with
// decision=approve.
func approve(t testing.TB, browser *http.Client, pageURL string) *http.Response {
	t.Helper()
	follow := *browser
	follow.CheckRedirect = nil // the page itself may be a redirect away
	resp, err := follow.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := formAction.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("consent page: %d\n%s", resp.StatusCode, page)
	}
	action, err := resp.Request.URL.Parse(html.UnescapeString(string(m[1])))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"decision": {"approve"}}
	for _, h := range hidden.FindAllSubmatch(page, -1) {
		form.Set(html.UnescapeString(string(h[1])), html.UnescapeString(string(h[2])))
	}
	resp, err = browser.PostForm(action.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
