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
	resp, err := browser.Get(connectURL)
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
	defer resp.Body.Close()
	done, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after approving: %d\n%s", resp.StatusCode, done)
	}
	return string(done)
}
