package egress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/vault/egress"
)

func caller(t *testing.T, hosts []string, limits string) egress.Caller {
	t.Helper()
	hj, _ := json.Marshal(hosts)
	m, err := abi.ParseManifest("test", []byte(fmt.Sprintf(
		`{"abi":"alter/v1","name":"p","version":"1","allowed_hosts":%s,"limits":{%s},
		  "tools":[{"name":"t","description":"d"}]}`, hj, limits)))
	if err != nil {
		t.Fatal(err)
	}
	return egress.Caller{Plugin: m, Tool: &m.Tools[0]}
}

func request(t *testing.T, raw string) *abi.OutboundRequest {
	t.Helper()
	r, err := abi.ParseRequest([]byte(raw), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDo(t *testing.T) {
	var allowed, other *httptest.Server
	allowed = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Set-Cookie", "session=secret")
			w.Header().Set("X-Auth-Token", "secret")
			w.Header().Set("X-Upstream-Token", "secret")
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s q=%s ua=%s", r.Method, r.URL.Path, r.URL.Query()["q"], r.UserAgent())
		case "/big":
			w.Write([]byte(strings.Repeat("x", 2048)))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/redirect-out":
			http.Redirect(w, r, other.URL+"/ok", http.StatusFound)
		case "/redirect-in":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/redirect-scheme":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		}
	}))
	defer allowed.Close()
	other = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the disallowed server was reached")
	}))
	defer other.Close()
	host := strings.TrimPrefix(allowed.URL, "http://")
	c := egress.New(egress.Options{AllowPrivate: true})
	cl := caller(t, []string{host}, `"max_response_body_bytes":1024,"request_timeout_ms":300`)

	resp, err := c.Do(context.Background(), cl, request(t, `{"url":"`+allowed.URL+`/ok","query":{"q":["a","b"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.Body != "GET /ok q=[a b] ua=alterhost" {
		t.Errorf("response = %+v", resp)
	}
	for _, h := range []string{"set-cookie", "x-auth-token", "x-upstream-token"} {
		if _, ok := resp.Headers[h]; ok {
			t.Errorf("header %s reached the guest", h)
		}
	}
	if resp.Headers["content-type"] != "text/plain" {
		t.Errorf("content-type = %q", resp.Headers["content-type"])
	}
	if resp, err := c.Do(context.Background(), cl, request(t, `{"url":"`+allowed.URL+`/redirect-in"}`)); err != nil || resp.Status != 200 {
		t.Errorf("redirect within the allowed host: %+v, %v", resp, err)
	}

	for _, tc := range []struct {
		name, req string
		code      abi.Code
		msg       string
	}{
		{"disallowed host", `{"url":"` + other.URL + `/ok"}`, abi.CodeHostNotAllowed, "not in the allowed_hosts"},
		{"scheme", `{"url":"ftp://` + host + `/x"}`, abi.CodeHostNotAllowed, "only http and https"},
		{"redirect to disallowed host", `{"url":"` + allowed.URL + `/redirect-out"}`, abi.CodeHostNotAllowed, "redirected to"},
		{"redirect to another scheme", `{"url":"` + allowed.URL + `/redirect-scheme"}`, abi.CodeHostNotAllowed, "only http and https"},
		{"response too large", `{"url":"` + allowed.URL + `/big"}`, abi.CodeTooLarge, "limit of 1024 bytes"},
		{"upstream timeout", `{"url":"` + allowed.URL + `/slow"}`, abi.CodeTimeout, "did not answer within 300ms"},
		{"guest credentials", `{"url":"` + allowed.URL + `/ok","headers":{"authorization":"Bearer x"}}`, abi.CodeBadRequest, "may not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Do(context.Background(), cl, request(t, tc.req))
			if err == nil || err.Code != tc.code || !strings.Contains(err.Message, tc.msg) {
				t.Fatalf("got %+v, %v; want %s mentioning %q", resp, err, tc.code, tc.msg)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		deadHost := strings.TrimPrefix(dead.URL, "http://")
		dead.Close()
		_, err := c.Do(context.Background(), caller(t, []string{deadHost}, ""), request(t, `{"url":"`+dead.URL+`/"}`))
		if err == nil || err.Code != abi.CodeUpstreamUnreachable {
			t.Fatalf("err = %v; want upstream_unreachable", err)
		}
	})
	t.Run("internal addresses need the operator's consent", func(t *testing.T) {
		u, _ := url.Parse(allowed.URL)
		strict := egress.New(egress.Options{})
		for _, target := range []string{"localhost:" + u.Port(), u.Host} {
			_, err := strict.Do(context.Background(), caller(t, []string{target}, ""), request(t, `{"url":"http://`+target+`/ok"}`))
			if err == nil || err.Code != abi.CodeHostNotAllowed || !strings.Contains(err.Message, "internal address") {
				t.Errorf("%s: err = %v; want host_not_allowed for an internal address", target, err)
			}
		}
	})
}
