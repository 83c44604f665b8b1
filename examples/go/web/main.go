//go:build wasip1

// Command web is an example alterhost plugin in Go: it fetches web pages
// through the host, and shows that the clock and randomness are real.
//
// Build: scripts/build-plugins.sh (see README.md).
package main

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	alter "github.com/alterhost/alterhost/abi/go"
)

// main is never called: the host calls the exported tools.
func main() {}

type fetchArgs struct {
	URL      string `json:"url"`
	MaxChars int    `json:"max_chars"`
}

type fetchResult struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	Truncated   bool   `json:"truncated"`
}

//go:wasmexport fetch_url
func fetchURL() int32 {
	return alter.HandleJSON(func(in fetchArgs) (fetchResult, error) {
		if in.MaxChars <= 0 {
			in.MaxChars = 4000
		}
		resp, err := alter.Get(in.URL)
		if err != nil {
			// Returned as is: the host shows the user the code, and what to
			// do about it, only if it reaches the host.
			return fetchResult{}, err
		}
		body, truncated := firstChars(strings.ToValidUTF8(string(resp.Body), "\uFFFD"), in.MaxChars)
		return fetchResult{
			Status:      resp.Status,
			ContentType: resp.Headers["content-type"],
			Body:        body,
			Truncated:   truncated,
		}, nil
	})
}

// firstChars returns the first n characters of s (not bytes, so no
// character is cut in half) and whether anything was left out.
func firstChars(s string, n int) (string, bool) {
	for i := range s {
		if n == 0 {
			return s[:i], true
		}
		n--
	}
	return s, false
}

type nowResult struct {
	Unix    int64  `json:"unix"`
	RFC3339 string `json:"rfc3339"`
}

//go:wasmexport now
func now() int32 {
	return alter.HandleJSON(func(struct{}) (nowResult, error) {
		t := time.Now().UTC()
		return nowResult{Unix: t.Unix(), RFC3339: t.Format(time.RFC3339)}, nil
	})
}

//go:wasmexport random_id
func randomID() int32 {
	return alter.Handle(func([]byte) ([]byte, error) {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(b)), nil
	})
}
