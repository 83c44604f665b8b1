package server

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/vault/store"
)

// marker is written into documents that must be refused: no error
// message may repeat it, since messages never carry a document's content.
const marker = "DOCUMENT-CONTENT-MARKER"

// docServer serves client metadata documents over TLS on 127.0.0.1 and
// counts the requests for each path.
type docServer struct {
	ts       *httptest.Server
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	hits     map[string]*atomic.Int32
}

func newDocServer(t *testing.T) *docServer {
	d := &docServer{handlers: map[string]http.HandlerFunc{}, hits: map[string]*atomic.Int32{}}
	d.ts = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		h, n := d.handlers[r.URL.Path], d.hits[r.URL.Path]
		d.mu.Unlock()
		if n != nil {
			n.Add(1)
		}
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(d.ts.Close)
	return d
}

// url is the client_id a document at path has.
func (d *docServer) url(path string) string { return d.ts.URL + path }

func (d *docServer) handle(path string, h http.HandlerFunc) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handlers[path] = h
	if d.hits[path] == nil {
		d.hits[path] = &atomic.Int32{}
	}
	return d.url(path)
}

func (d *docServer) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.hits[path]; n != nil {
		return int(n.Load())
	}
	return 0
}

// serve answers path with doc as JSON, with a Cache-Control header if
// cacheControl is not empty.
func (d *docServer) serve(path string, doc map[string]any, cacheControl string) string {
	b, _ := json.Marshal(doc)
	return d.handle(path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		w.Write(b)
	})
}

// document is a good metadata document for a client at id.
func document(id string) map[string]any {
	return map[string]any{"client_id": id, "client_name": "Doc Client", "redirect_uris": []string{redirect},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "client_uri": "https://app.example/"}
}

// trusting is the TLS configuration of a client that trusts d.
func (d *docServer) trusting() *tls.Config {
	return d.ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

func allowLoopback(a netip.Addr) bool { return a.IsLoopback() }

// noLimits lifts the per-address limits for tests that send many requests.
func (e *env) noLimits() {
	e.unlimited()
	e.srv.tokenIPLimit = newLimiter(1000, 1000)
}

// cimdEnv is an env whose server fetches documents from a docServer: through
// the guard, which lets it reach loopback, with a fetch timeout of timeout.
func cimdEnv(t *testing.T, timeout time.Duration, configure ...func(*Options)) (*env, *docServer) {
	d := newDocServer(t)
	mc := newMetadataClient(allowLoopback, d.trusting(), timeout)
	e := newEnv(t, append([]func(*Options){func(o *Options) { o.MetadataClient = mc }}, configure...)...)
	return e, d
}

// loadErr loads the client id directly and returns its metadataError.
func (e *env) loadErr(id string) *metadataError {
	e.t.Helper()
	_, err := e.srv.loadClient(httptest.NewRequest(http.MethodGet, "/authorize", nil), id)
	var me *metadataError
	if !errors.As(err, &me) {
		e.t.Fatalf("loadClient(%s) = %v, want a metadata error", id, err)
	}
	if !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("a metadata error does not count as an unknown client")
	}
	return me
}

// refused checks that client id is refused everywhere with a message
// containing want: /authorize with an error page, never a redirect;
// /token with invalid_client; and that nothing is stored for it.
func (e *env) refused(id, want string) {
	e.t.Helper()
	resp, body := e.get(http.DefaultClient, e.ts.URL+"/authorize?"+e.baseParams(id).Encode())
	noRedirect(e.t, resp, body)
	// The page says what is wrong with the document, not "unknown client".
	if !strings.Contains(body, html.EscapeString(want)) {
		e.t.Errorf("the authorize page does not say %q:\n%s", want, body)
	}
	msg := e.loadErr(id).Error()
	if !strings.Contains(msg, want) {
		e.t.Errorf("message %q lacks %q", msg, want)
	}
	status, m := e.postForm("/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "code": {"x"},
		"code_verifier": {strings.Repeat("v", 43)}, "redirect_uri": {redirect}}, "", "")
	desc, _ := m["error_description"].(string)
	if status != http.StatusUnauthorized || m["error"] != "invalid_client" || !strings.Contains(desc, want) {
		e.t.Errorf("token endpoint: %d %v, want invalid_client saying %q", status, m, want)
	}
	for _, s := range []string{msg, body, desc} {
		if strings.Contains(s, marker) {
			e.t.Errorf("an error repeats the document's content: %s", s)
		}
	}
	if _, err := e.store.GetClient(e.t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("a refused document was stored: %v", err)
	}
}

// TestCIMDFullFlow: a client known only by its metadata document goes
// through consent, PKCE, the code exchange, a refresh and revocation; the
// document is fetched once, and the consent page names its host.
func TestCIMDFullFlow(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	id := d.serve("/oauth/client.json", document(d.url("/oauth/client.json")), "max-age=3600")
	e.signIn()

	v := oauth2.GenerateVerifier()
	resp, body := e.get(e.browser, e.authURL(id, v))
	host := strings.TrimPrefix(d.ts.URL, "https://")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Doc Client ("+host+")") {
		t.Fatalf("consent page: %d %s", resp.StatusCode, body)
	}
	code := e.code(id, v)
	at, rt := e.tokens(id, code, v)
	info, err := e.srv.Verify(t.Context(), at, nil)
	if err != nil || info.Extra["client_id"] != id {
		t.Fatalf("Verify: %+v %v", info, err)
	}
	status, m := e.refresh(id, rt, nil)
	if status != http.StatusOK {
		e.e(status, m)
	}
	if status, _ := e.postForm("/revoke", url.Values{"client_id": {id}, "token": {m["refresh_token"].(string)}}, "", ""); status != http.StatusOK {
		t.Fatalf("revoke: %d", status)
	}
	if e.valid(m["access_token"].(string)) {
		t.Fatal("revoked family still valid")
	}
	if n := d.count("/oauth/client.json"); n != 1 {
		t.Fatalf("document fetched %d times, want 1", n)
	}
	c, err := e.store.GetClient(t.Context(), id)
	if err != nil || !c.ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) || c.SecretHash != nil {
		t.Fatalf("stored client: %+v %v", c, err)
	}
	// Basic credentials (a secret) are refused: a document client is public.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"ah_rt_x"}}
	if status, m := e.postForm("/token", form, id, "secret"); status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Fatalf("basic auth: %d %v", status, m)
	}
}

// TestCIMDRefusedDocuments: each document the server must not accept.
func TestCIMDRefusedDocuments(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	e.noLimits()
	with := func(path string, mod func(map[string]any)) string {
		doc := document(d.url(path))
		mod(doc)
		return d.serve(path, doc, "")
	}
	raw := func(path, contentType string, status int, body string) string {
		return d.handle(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			w.Write([]byte(body))
		})
	}
	big := func(path string, chunked bool) string {
		doc := document(d.url(path))
		doc["padding"] = strings.Repeat(marker, 6<<10/len(marker))
		b, _ := json.Marshal(doc)
		return d.handle(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if chunked { // no Content-Length: only reading tells the size
				w.Write(b[:100])
				w.(http.Flusher).Flush()
				w.Write(b[100:])
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b)
		})
	}
	good := d.serve("/good.json", document(d.url("/good.json")), "")
	for name, tc := range map[string]struct{ id, want string }{
		"client_id differs": {with("/differs.json", func(m map[string]any) { m["client_id"] = d.url("/other.json") }),
			"its client_id does not match its URL"},
		"client_id in another case": {with("/Case.json", func(m map[string]any) { m["client_id"] = d.url("/case.json") }),
			"does not match its URL"},
		"client_id missing":  {with("/noid.json", func(m map[string]any) { delete(m, "client_id") }), "has no client_id"},
		"client_id a number": {with("/numid.json", func(m map[string]any) { m["client_id"] = 7 }), "has no client_id"},
		"not an object":      {raw("/array.json", "application/json", 200, `[{"client_id":"`+marker+`"}]`), "not a JSON object"},
		"null":               {raw("/null.json", "application/json", 200, `null`), "not a JSON object"},
		"not JSON":           {raw("/broken.json", "application/json", 200, `{"client_id": "`+marker), "not a JSON object"},
		"too large":          {big("/big.json", false), "larger than 5120 bytes"},
		"too large, chunked": {big("/bigchunked.json", true), "larger than 5120 bytes"},
		"status 404":         {raw("/missing.json", "application/json", 404, `{"`+marker+`":1}`), "HTTP status 404"},
		"status 500":         {raw("/error.json", "application/json", 500, marker), "HTTP status 500"},
		"HTML content type":  {raw("/page.json", "text/html", 200, `{"client_id":"`+marker+`"}`), "did not serve it as JSON"},
		"no content type":    {raw("/plain.json", "", 200, `{}`), "did not serve it as JSON"},
		"text/json":          {raw("/textjson.json", "text/json", 200, `{}`), "did not serve it as JSON"},
		"client_secret":      {with("/secret.json", func(m map[string]any) { m["client_secret"] = marker }), "has a client_secret"},
		"client_secret_expires_at": {with("/secretexp.json", func(m map[string]any) { m["client_secret_expires_at"] = 0 }),
			"has a client_secret_expires_at"},
		"client_secret_basic": {with("/basic.json", func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_basic" }),
			"token_endpoint_auth_method must be none"},
		"client_secret_post": {with("/post.json", func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_post" }),
			"token_endpoint_auth_method must be none"},
		"private_key_jwt": {with("/jwt.json", func(m map[string]any) { m["token_endpoint_auth_method"] = "private_key_jwt" }),
			"private_key_jwt, which alterhost does not support"},
		"javascript redirect": {with("/js.json", func(m map[string]any) { m["redirect_uris"] = []string{"javascript:" + marker} }),
			"redirect_uris[0]"},
		"http redirect": {with("/httpcb.json", func(m map[string]any) {
			m["redirect_uris"] = []string{redirect, "http://app.example/" + marker}
		}), "redirect_uris[1]"},
		"no redirect_uris": {with("/nocb.json", func(m map[string]any) { delete(m, "redirect_uris") }), "redirect_uris is required"},
		"implicit grant": {with("/implicit.json", func(m map[string]any) { m["grant_types"] = []string{"implicit", marker} }),
			"grant_types[0] is not supported"},
		"bidi in name": {with("/bidi.json", func(m map[string]any) { m["client_name"] = "Claude\u202e" + marker }), "client_name"},
		"wrong type":   {with("/type.json", func(m map[string]any) { m["redirect_uris"] = marker }), "its redirect_uris has the wrong type"},
		"scope":        {with("/scope.json", func(m map[string]any) { m["scope"] = "mcp " + marker }), "scope names a scope"},
		"redirect": {d.handle("/moved.json", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, good, http.StatusFound)
		}), "answered with a redirect"},
		"permanent redirect": {d.handle("/moved301.json", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, good, http.StatusMovedPermanently)
		}), "answered with a redirect"},
	} {
		t.Run(name, func(t *testing.T) {
			e.t = t
			e.refused(tc.id, tc.want)
		})
	}
	if n := d.count("/good.json"); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
}

// TestCIMDSlowDocument: a server that does not answer in time is given up
// on, and so is one that sends its headers but not its body.
func TestCIMDSlowDocument(t *testing.T) {
	e, d := cimdEnv(t, 300*time.Millisecond)
	wait := func(r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(1500 * time.Millisecond):
		}
	}
	slow := d.handle("/slow.json", func(w http.ResponseWriter, r *http.Request) { wait(r) })
	body := d.handle("/slowbody.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"client_id": `))
		w.(http.Flusher).Flush()
		wait(r)
	})
	for _, id := range []string{slow, body} {
		start := time.Now()
		msg := e.loadErr(id).Error()
		if !strings.Contains(msg, "took longer than 300ms") {
			t.Errorf("%s: %q", id, msg)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: gave up after %v", id, took)
		}
	}
	resp, page := e.get(http.DefaultClient, e.ts.URL+"/authorize?"+e.baseParams(slow).Encode())
	noRedirect(t, resp, page)
}

// TestCIMDRefusedURLs: client_ids that are URLs but not acceptable
// document URLs are refused without any fetch.
func TestCIMDRefusedURLs(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	e.noLimits()
	good := d.serve("/c.json", document(d.url("/c.json")), "")
	host := strings.TrimPrefix(d.ts.URL, "https://")
	for id, want := range map[string]string{
		"http://" + host + "/c.json":                        "must be an https URL",
		"HTTPS://" + host + "/c.json":                       "must be an https URL",
		"http:" + host + "/c.json":                          "must be an https URL",
		good + "#frag":                                      "must not have a fragment",
		good + "#":                                          "must not have a fragment",
		"https://user@" + host + "/c.json":                  "user name or password",
		"https://user:pw@" + host + "/c.json":               "user name or password",
		d.ts.URL:                                            "needs a path",
		d.ts.URL + "/":                                      "needs a path",
		d.ts.URL + "/a/../c.json":                           "must not have . or .. segments",
		d.ts.URL + "/./c.json":                              "must not have . or .. segments",
		d.ts.URL + "/a/%2e%2e/c.json":                       "must not have . or .. segments",
		d.ts.URL + "/c.json?x=" + strings.Repeat("a", 2000): "longer than 2000 bytes",
		d.ts.URL + "/c json":                                "spaces",
		d.ts.URL + "/c\u00e9.json":                          "non-ASCII",
		"https:///c.json":                                   "needs a valid host",
		"https://ho_st.example/c.json":                      "needs a valid host",
	} {
		t.Run(id[:min(len(id), 60)], func(t *testing.T) {
			e.t = t
			e.refused(id, want)
		})
	}
	if n := d.count("/c.json"); n != 0 {
		t.Errorf("refused URLs were fetched %d times", n)
	}
	// The good URL is accepted, and its query (allowed) too.
	if _, err := e.srv.loadClient(httptest.NewRequest(http.MethodGet, "/", nil), good); err != nil {
		t.Fatal(err)
	}
}

// TestCIMDDefaultGuard: without a MetadataClient, the server refuses to
// fetch from loopback, by address or by name, before connecting.
func TestCIMDDefaultGuard(t *testing.T) {
	d := newDocServer(t)
	e := newEnv(t)
	path := "/c.json"
	d.serve(path, document(d.url(path)), "")
	port := d.ts.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	for _, id := range []string{
		d.url(path),
		fmt.Sprintf("https://localhost:%d%s", port, path),
		fmt.Sprintf("https://[::ffff:127.0.0.1]:%d%s", port, path),
	} {
		msg := e.loadErr(id).Error()
		if !strings.Contains(msg, "resolves to a loopback address") {
			t.Errorf("%s: %q", id, msg)
		}
	}
	resp, body := e.get(http.DefaultClient, e.ts.URL+"/authorize?"+e.baseParams(d.url(path)).Encode())
	noRedirect(t, resp, body)
	if n := d.count(path); n != 0 {
		t.Fatalf("the default guard let %d requests through to loopback", n)
	}
}

// TestMetadataClientGuard: the guard refuses internal addresses at dial
// time, however the URL spells them; allowing loopback lets exactly that
// through. No connection is attempted to the refused addresses.
func TestMetadataClientGuard(t *testing.T) {
	d := newDocServer(t)
	d.serve("/c.json", document(d.url("/c.json")), "")
	port := d.ts.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	strict := newMetadataClient(nil, d.trusting(), time.Second)
	for _, u := range []string{
		d.url("/c.json"),
		fmt.Sprintf("https://localhost:%d/c.json", port),
		fmt.Sprintf("https://[::1]:%d/c.json", port),
		fmt.Sprintf("https://[::ffff:127.0.0.1]:%d/c.json", port),
		"https://10.0.0.1/c.json",
		"https://169.254.169.254/latest/meta-data/",
		"https://100.64.0.1/c.json",
		"https://[fd00::1]/c.json",
		"https://0.0.0.0/c.json",
	} {
		resp, err := strict.Get(u)
		var blocked *blockedAddrError
		if !errors.As(err, &blocked) {
			if resp != nil {
				resp.Body.Close()
			}
			t.Errorf("%s: %v, want the guard's refusal", u, err)
		}
	}
	if _, err := strict.Get(strings.Replace(d.url("/c.json"), "https:", "http:", 1)); err == nil || !strings.Contains(err.Error(), "https only") {
		t.Errorf("http: %v", err)
	}
	if n := d.count("/c.json"); n != 0 {
		t.Fatalf("the guard let %d requests through", n)
	}
	loose := newMetadataClient(allowLoopback, d.trusting(), time.Second)
	resp, err := loose.Get(d.url("/c.json"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("loopback allowed: %v", err)
	}
	resp.Body.Close()
	if resp, err := loose.Get("https://10.0.0.1/c.json"); err == nil {
		resp.Body.Close()
		t.Fatal("allowing loopback allowed a private address")
	}
}

func TestNonPublic(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "a loopback", "127.255.0.9": "a loopback", "::1": "a loopback", "::ffff:127.0.0.1": "a loopback",
		"10.0.0.1": "a private", "172.16.5.4": "a private", "192.168.1.1": "a private", "::ffff:10.1.2.3": "a private",
		"fc00::1": "a private", "fd12:3456::1": "a private", "fec0::1": "a private",
		"169.254.169.254": "a link-local", "fe80::1": "a link-local", "fe80::1%eth0": "a link-local",
		"100.64.0.1": "a shared (carrier-grade NAT)", "100.127.255.254": "a shared (carrier-grade NAT)",
		"0.0.0.0": "an unspecified", "::": "an unspecified", "0.1.2.3": "a reserved",
		"224.0.0.1": "a link-local", "224.0.1.1": "a multicast", "239.1.2.3": "a multicast", "ff02::1": "a link-local", "ff05::2": "a multicast",
		"255.255.255.255": "a reserved", "240.0.0.1": "a reserved", "192.0.2.7": "a reserved", "198.18.0.1": "a reserved",
		"2001:db8::1": "a reserved", "2001::1": "a reserved", "::10.0.0.1": "a reserved", "64:ff9b:1::1": "a private",
		"64:ff9b::a00:1": "a private", "64:ff9b::7f00:1": "a loopback", "2002:a9fe:a9fe::1": "a link-local",
		"8.8.8.8": "", "1.1.1.1": "", "100.128.0.1": "", "2606:4700:4700::1111": "", "2a00:1450:4001::200e": "",
		"::ffff:8.8.8.8": "", "64:ff9b::808:808": "", "2002:808:808::1": "",
	} {
		if got := nonPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("nonPublic(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestMetadataTTL(t *testing.T) {
	now := time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	for name, tc := range map[string]struct {
		h    http.Header
		want time.Duration
	}{
		"none":                  {http.Header{}, 5 * time.Minute},
		"max-age":               {http.Header{"Cache-Control": {"max-age=600"}}, 10 * time.Minute},
		"with other directives": {http.Header{"Cache-Control": {"public, Max-Age=3600, must-revalidate"}}, time.Hour},
		"quoted":                {http.Header{"Cache-Control": {`max-age="900"`}}, 15 * time.Minute},
		"below the minimum":     {http.Header{"Cache-Control": {"max-age=1"}}, 5 * time.Minute},
		"zero":                  {http.Header{"Cache-Control": {"max-age=0"}}, 5 * time.Minute},
		"above the maximum":     {http.Header{"Cache-Control": {"max-age=999999999999999"}}, 24 * time.Hour},
		"negative":              {http.Header{"Cache-Control": {"max-age=-5"}}, 5 * time.Minute},
		"no-store":              {http.Header{"Cache-Control": {"no-store"}}, 5 * time.Minute},
		"no-cache wins":         {http.Header{"Cache-Control": {"max-age=3600", "no-cache"}}, 5 * time.Minute},
		"Expires":               {http.Header{"Date": {date}, "Expires": {now.Add(2 * time.Hour).Format(http.TimeFormat)}}, 2 * time.Hour},
		"Expires without Date":  {http.Header{"Expires": {now.Add(3 * time.Hour).Format(http.TimeFormat)}}, 3 * time.Hour},
		"Expires invalid":       {http.Header{"Expires": {"0"}}, 5 * time.Minute},
		"max-age over Expires": {http.Header{"Cache-Control": {"max-age=1200"},
			"Expires": {now.Add(2 * time.Hour).Format(http.TimeFormat)}}, 20 * time.Minute},
		"Age": {http.Header{"Cache-Control": {"max-age=3600"}, "Age": {"1800"}}, 30 * time.Minute},
	} {
		if got := metadataTTL(tc.h, now); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

// TestCIMDCache: within max-age the stored document is used; after it,
// the document is fetched again and its changes take effect.
func TestCIMDCache(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	path := "/cached.json"
	id := d.serve(path, document(d.url(path)), "max-age=600")
	e.signIn()
	for range 3 {
		if resp, body := e.authorizeWith(e.baseParams(id)); !strings.Contains(body, "Doc Client") {
			t.Fatalf("consent page: %d %s", resp.StatusCode, body)
		}
	}
	if n := d.count(path); n != 1 {
		t.Fatalf("fetched %d times within max-age, want 1", n)
	}
	e.clock.Advance(9 * time.Minute)
	e.authorizeWith(e.baseParams(id))
	if n := d.count(path); n != 1 {
		t.Fatalf("fetched %d times within max-age, want 1", n)
	}
	changed := document(d.url(path))
	changed["client_name"] = "Renamed Client"
	d.serve(path, changed, "no-store")
	e.clock.Advance(time.Minute)
	resp, body := e.authorizeWith(e.baseParams(id))
	if !strings.Contains(body, "Renamed Client") || resp.StatusCode != http.StatusOK {
		t.Fatalf("after expiry: %d %s", resp.StatusCode, body)
	}
	if n := d.count(path); n != 2 {
		t.Fatalf("fetched %d times after expiry, want 2", n)
	}
	// no-store: cached for the minimum only.
	c, err := e.store.GetClient(t.Context(), id)
	if err != nil || !c.ExpiresAt.Equal(e.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("stored: %+v %v", c, err)
	}
}

// TestCIMDStaleRefused: once the cached copy expires, a document that can
// no longer be fetched ends the client's use: the stale copy is not used.
func TestCIMDStaleRefused(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	path := "/stale.json"
	id := d.serve(path, document(d.url(path)), "max-age=600")
	e.signIn()
	v := oauth2.GenerateVerifier()
	_, rt := e.tokens(id, e.code(id, v), v)

	e.clock.Advance(11 * time.Minute)
	d.handle(path, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	status, m := e.refresh(id, rt, nil)
	desc, _ := m["error_description"].(string)
	if status != http.StatusUnauthorized || m["error"] != "invalid_client" ||
		!strings.Contains(desc, "HTTP status 503") || !strings.Contains(desc, "cached copy has expired") {
		t.Fatalf("refresh with a stale document: %d %v", status, m)
	}
	resp, body := e.authorizeWith(e.baseParams(id))
	noRedirect(t, resp, body)

	// Back, it is fetched again; the refresh token was not spent.
	d.serve(path, document(d.url(path)), "max-age=600")
	if status, m := e.refresh(id, rt, nil); status != http.StatusOK {
		t.Fatalf("refresh once the document is back: %d %v", status, m)
	}
}

// TestCIMDRedirectURINotInDocument: a redirect URI the document does not
// list gets an error page, not a redirect.
func TestCIMDRedirectURINotInDocument(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	id := d.serve("/c.json", document(d.url("/c.json")), "")
	e.signIn()
	for _, bad := range []string{"https://evil.example/cb", "http://127.0.0.1:5555/other", "https://app.example/"} {
		p := e.baseParams(id)
		p.Set("redirect_uri", bad)
		resp, body := e.authorizeWith(p)
		noRedirect(t, resp, body)
	}
	if resp, _ := e.authorizeWith(e.baseParams(id)); resp.StatusCode != http.StatusOK {
		t.Fatalf("listed redirect URI: %d", resp.StatusCode)
	}
}

// TestCIMDConcurrentFetchOnce: requests that miss the cache together
// share one fetch.
func TestCIMDConcurrentFetchOnce(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	path := "/shared.json"
	b, _ := json.Marshal(document(d.url(path)))
	arrived, release := make(chan struct{}, 16), make(chan struct{})
	id := d.handle(path, func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	const n = 8
	statuses := make(chan int, n)
	u := e.ts.URL + "/authorize?" + e.baseParams(id).Encode()
	for range n {
		go func() {
			resp, err := http.Get(u)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	<-arrived
	time.Sleep(150 * time.Millisecond) // let the others reach the shared fetch
	close(release)
	for range n {
		if s := <-statuses; s != http.StatusOK {
			t.Errorf("status %d", s)
		}
	}
	if got := d.count(path); got != 1 {
		t.Fatalf("%d concurrent requests fetched %d times, want 1", n, got)
	}
}

// TestCIMDFetchRateLimit: fetches that miss the cache draw on a
// per-address budget; cached documents do not.
func TestCIMDFetchRateLimit(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	e.srv.registerLimit = newLimiter(0.001, 2)
	a := d.serve("/a.json", document(d.url("/a.json")), "max-age=3600")
	b := d.serve("/b.json", document(d.url("/b.json")), "max-age=3600")
	c := d.serve("/c.json", document(d.url("/c.json")), "max-age=3600")
	get := func(id string) (*http.Response, string) {
		return e.get(http.DefaultClient, e.ts.URL+"/authorize?"+e.baseParams(id).Encode())
	}
	for _, id := range []string{a, b} {
		if resp, body := get(id); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", id, resp.StatusCode, body)
		}
	}
	resp, body := get(c)
	noRedirect(t, resp, body)
	if n := d.count("/c.json"); n != 0 {
		t.Fatalf("fetched past the limit")
	}
	// An empty bucket for every address, to see the refusal's status.
	e.srv.registerLimit = newLimiter(0.001, 0)
	if me := e.loadErr(c); me.status != http.StatusTooManyRequests || !strings.Contains(me.msg, "too many documents were fetched for your address") {
		t.Fatalf("limited: %d %q", me.status, me.msg)
	}
	if resp, _ := get(a); resp.StatusCode != http.StatusOK {
		t.Fatalf("a cached document was limited: %d", resp.StatusCode)
	}
}

// TestCIMDAccepts: documents that are fine in ways worth pinning down.
func TestCIMDAccepts(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	for path, mod := range map[string]func(w http.ResponseWriter, doc map[string]any){
		"/plus.json": func(w http.ResponseWriter, _ map[string]any) {
			w.Header().Set("Content-Type", "application/x-meta+json")
		},
		"/charset.json": func(w http.ResponseWriter, _ map[string]any) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		},
		"/minimal.json": func(w http.ResponseWriter, doc map[string]any) {
			w.Header().Set("Content-Type", "application/json")
			for k := range doc {
				if k != "client_id" && k != "redirect_uris" {
					delete(doc, k)
				}
			}
			doc["unknown_field"] = map[string]any{"tolerated": true}
		},
		"/query.json": nil,
	} {
		id := d.url(path)
		if path == "/query.json" {
			id += "?v=2"
		}
		d.handle(path, func(w http.ResponseWriter, _ *http.Request) {
			doc := document(id)
			w.Header().Set("Content-Type", "application/json")
			if mod != nil {
				mod(w, doc)
			}
			b, _ := json.Marshal(doc)
			w.Write(b)
		})
		c, err := e.srv.loadClient(httptest.NewRequest(http.MethodGet, "/", nil), id)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if !c.public() || c.meta.TokenEndpointAuthMethod != "none" || len(c.meta.GrantTypes) == 0 {
			t.Errorf("%s: %+v", path, c.meta)
		}
	}
	c, _ := e.srv.loadClient(httptest.NewRequest(http.MethodGet, "/", nil), d.url("/minimal.json"))
	if host := strings.TrimPrefix(d.ts.URL, "https://"); c == nil || c.name() != "An unnamed client ("+host+")" {
		t.Errorf("unnamed document client: %v", c)
	}
}

// TestMetadataErrorPage: the page authorize shows for a failed document
// says what failed, and is not a redirect.
func TestMetadataErrorPage(t *testing.T) {
	e, d := cimdEnv(t, 2*time.Second)
	id := d.serve("/differs.json", document(d.url("/elsewhere.json")), "")
	_, err := e.srv.loadClient(httptest.NewRequest(http.MethodGet, "/", nil), id)
	w := httptest.NewRecorder()
	if !e.srv.metadataErrorPage(w, err) {
		t.Fatalf("not a metadata error: %v", err)
	}
	resp := w.Result()
	body := w.Body.String()
	noRedirect(t, resp, body)
	if !strings.Contains(body, "The client&#39;s metadata document at "+id+" is not acceptable: its client_id does not match its URL") {
		t.Fatalf("page: %s", body)
	}
	if e.srv.metadataErrorPage(httptest.NewRecorder(), store.ErrNotFound) || e.srv.metadataErrorPage(httptest.NewRecorder(), nil) {
		t.Fatal("other errors taken for metadata errors")
	}
}

// TestCIMDRedirectRefusedWhateverTheClient: an operator's MetadataClient
// that follows redirects (and keeps cookies) does not change the fetch's
// rules: the document must be at the client_id itself.
func TestCIMDRedirectRefusedWhateverTheClient(t *testing.T) {
	d := newDocServer(t)
	follows := d.ts.Client()
	follows.Jar, _ = cookiejar.New(nil)
	e := newEnv(t, func(o *Options) { o.MetadataClient = follows })
	good := d.serve("/good.json", document(d.url("/good.json")), "")
	moved := d.handle("/moved.json", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "c", Value: "v"})
		http.Redirect(w, r, good, http.StatusFound)
	})
	if msg := e.loadErr(moved).Error(); !strings.Contains(msg, "answered with a redirect") {
		t.Fatalf("message %q", msg)
	}
	if n := d.count("/good.json"); n != 0 {
		t.Fatal("the redirect was followed")
	}
	if u, _ := url.Parse(d.ts.URL); len(follows.Jar.Cookies(u)) != 0 {
		t.Fatal("the fetch kept a cookie")
	}
}
