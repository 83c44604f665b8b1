package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T) *Balancer {
	t.Helper()
	b, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func add(t *testing.T, b *Balancer, u string) int {
	t.Helper()
	i, err := b.Add(u)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// echo answers "NAME BODY" and keeps the Host it was asked for.
func echo(t *testing.T, name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", name, r.Host, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, u, body string) string {
	t.Helper()
	resp, err := http.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

func TestRoundRobin(t *testing.T) {
	b := start(t)
	for _, name := range []string{"a", "b", "c"} {
		add(t, b, echo(t, name).URL)
	}
	host := strings.TrimPrefix(b.URL(), "http://")
	var got []string
	for i := range 6 {
		got = append(got, post(t, b.URL()+"/p", fmt.Sprint(i)))
	}
	want := []string{"a " + host + " 0", "b " + host + " 1", "c " + host + " 2", "a " + host + " 3", "b " + host + " 4", "c " + host + " 5"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("answers %q; want %q", got, want)
	}
	for i := range 3 {
		if n := b.Count(i, "/p"); n != 2 {
			t.Errorf("backend %d served %d; want 2", i, n)
		}
	}
}

// TestStreaming: an event reaches the client while the backend still
// holds the stream open.
func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	t.Cleanup(srv.Close)
	b := start(t)
	add(t, b, srv.URL)
	resp, err := http.Get(b.URL() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case l := <-lines:
		if l != "data: first" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event was held back")
	}
	close(release)
	for range lines {
	}
	if n := b.InFlight(0); n != 0 {
		t.Errorf("%d requests in flight after the stream ended", n)
	}
}

// TestDeadBackend: a backend that refuses connections is skipped, and the
// request, body and all, goes to the next one.
func TestDeadBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	b := start(t)
	dead := add(t, b, closed)
	add(t, b, echo(t, "live").URL)
	if got := post(t, b.URL()+"/p", "payload"); !strings.HasSuffix(got, " payload") || !strings.HasPrefix(got, "live ") {
		t.Errorf("answer %q", got)
	}
	if d, _ := b.Dead(dead); !d || b.Redials(dead) != 1 || len(b.Failures()) != 0 {
		t.Errorf("dead=%v redials=%d failures=%v; want dead, 1 redial, no failures", d, b.Redials(dead), b.Failures())
	}
	post(t, b.URL()+"/p", "again")
	if n := b.Redials(dead); n != 1 {
		t.Errorf("%d redials; a dead backend must stay out of the rotation", n)
	}
}

// TestCutResponse: a backend that dies mid-answer is recorded, taken out,
// and the client sees the answer end early.
func TestCutResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	b := start(t)
	add(t, b, srv.URL)
	resp, err := http.Get(b.URL() + "/cut")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("the client read a whole answer")
	}
	fs := b.Failures()
	if d, _ := b.Dead(0); !d || len(fs) != 1 || fs[0].Stage != "response cut" || fs[0].Path != "/cut" {
		t.Errorf("dead=%v failures=%+v", d, fs)
	}
}
