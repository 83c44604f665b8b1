// Package balancer is a round-robin HTTP reverse proxy on loopback, for
// tests that run several alterhost instances behind one URL the way a load
// balancer without sticky sessions would: every request goes to the next
// live backend, request bodies and streamed (SSE) responses pass through
// unbuffered, and what each backend served is counted.
//
// A backend whose connection fails is taken out of the rotation. A request
// is tried on the next backend only when it never reached the failed one
// (the dial failed), so nothing is ever sent twice; a request that failed
// after it was sent is recorded as a Failure and answered with 502, or its
// response is cut short, as a real balancer would do.
package balancer

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Failure is a request that reached a backend and failed there: with no
// response (Stage "no response"), or with its response cut short
// ("response cut").
type Failure struct {
	Backend int
	Method  string
	Path    string
	Stage   string
	Started time.Time
	Err     error
}

// Balancer is the proxy. Its methods are safe for concurrent use.
type Balancer struct {
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	next      atomic.Uint64

	mu       sync.Mutex
	backends []*backend
	failures []Failure
}

type backend struct {
	url      *url.URL
	inflight atomic.Int64
	dead     atomic.Bool

	mu     sync.Mutex
	diedAt time.Time
	paths  map[string]int64 // requests that reached it, by URL path
	dials  int64            // connections refused or failed before sending
}

// errNoBackend answers requests when every backend is dead (or none was
// added yet).
var errNoBackend = errors.New("balancer: no live backend")

// Start listens on a free port of 127.0.0.1 and serves until Close. The
// URL is known before any backend exists, so backends can be started with
// it as their external URL.
func Start() (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{ln: ln, transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}}
	quiet := log.New(io.Discard, "", 0) // failures are recorded, not printed
	rp := &httputil.ReverseProxy{
		// The Host header stays the balancer's: backends see the URL the
		// clients use, as behind a real balancer. RoundTrip picks the
		// backend per attempt.
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.Out.Host = pr.In.Host },
		Transport:     b,
		FlushInterval: -1, // every write at once: SSE must not wait in a buffer
		ErrorLog:      quiet,
	}
	b.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet}
	go b.srv.Serve(ln)
	return b, nil
}

// URL is the balancer's base URL, http://127.0.0.1:PORT.
func (b *Balancer) URL() string { return "http://" + b.ln.Addr().String() }

// Add puts a backend (its base URL, e.g. http://127.0.0.1:8081) into the
// rotation and returns its index.
func (b *Balancer) Add(rawURL string) (int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append(b.backends, &backend{url: u, paths: map[string]int64{}})
	return len(b.backends) - 1, nil
}

// Close stops serving and drops idle connections to the backends.
func (b *Balancer) Close() error {
	err := b.srv.Close()
	b.transport.CloseIdleConnections()
	return err
}

func (b *Balancer) all() []*backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.backends
}

func (b *Balancer) backend(i int) *backend { return b.all()[i] }

// pick returns the next live backend in turn.
func (b *Balancer) pick() (int, *backend) {
	bs := b.all()
	for range bs {
		i := int((b.next.Add(1) - 1) % uint64(len(bs)))
		if !bs[i].dead.Load() {
			return i, bs[i]
		}
	}
	return -1, nil
}

func (be *backend) markDead() {
	be.mu.Lock()
	defer be.mu.Unlock()
	if !be.dead.Load() {
		be.diedAt = time.Now()
		be.dead.Store(true)
	}
}

func (b *Balancer) fail(f Failure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = append(b.failures, f)
}

// RoundTrip sends req to the next live backend; the ReverseProxy calls it.
func (b *Balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	var body *replayGuard
	if req.Body != nil && req.Body != http.NoBody {
		body = &replayGuard{r: req.Body}
	}
	for {
		i, be := b.pick()
		if be == nil {
			return nil, errNoBackend
		}
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host = be.url.Scheme, be.url.Host
		if body != nil {
			out.Body = body
		}
		started := time.Now()
		be.inflight.Add(1)
		resp, err := b.transport.RoundTrip(out)
		if err != nil {
			be.inflight.Add(-1)
			if req.Context().Err() != nil {
				return nil, err // the client left: no fault of the backend
			}
			be.markDead()
			if isDial(err) && (body == nil || !body.read.Load()) {
				// Nothing reached the backend: the next one may have it.
				be.mu.Lock()
				be.dials++
				be.mu.Unlock()
				continue
			}
			b.fail(Failure{Backend: i, Method: req.Method, Path: req.URL.Path, Stage: "no response", Started: started, Err: err})
			return nil, err
		}
		be.mu.Lock()
		be.paths[req.URL.Path]++
		be.mu.Unlock()
		resp.Body = &watchedBody{ReadCloser: resp.Body, b: b, i: i, be: be, ctx: req.Context(),
			f: Failure{Backend: i, Method: req.Method, Path: req.URL.Path, Stage: "response cut", Started: started}}
		return resp, nil
	}
}

// isDial reports an error of connecting, before any byte was sent.
func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// replayGuard is a request body the transport may close after a failed
// dial without ending it, so the next backend can be given it; the server
// closes the real body when the request ends. read says whether any of it
// was consumed, after which it cannot be offered again.
type replayGuard struct {
	r    io.ReadCloser
	read atomic.Bool
}

func (g *replayGuard) Read(p []byte) (int, error) {
	g.read.Store(true)
	return g.r.Read(p)
}

func (g *replayGuard) Close() error { return nil }

// watchedBody is a backend's response body: a read error other than the
// client leaving marks the backend dead and records the failure; Close
// ends the request's time in flight.
type watchedBody struct {
	io.ReadCloser
	b      *Balancer
	i      int
	be     *backend
	ctx    context.Context
	f      Failure
	failed bool
	closed atomic.Bool
}

func (w *watchedBody) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	if err != nil && err != io.EOF && w.ctx.Err() == nil && !w.failed {
		w.failed = true
		w.be.markDead()
		w.f.Err = err
		w.b.fail(w.f)
	}
	return n, err
}

func (w *watchedBody) Close() error {
	if !w.closed.Swap(true) {
		w.be.inflight.Add(-1)
	}
	return w.ReadCloser.Close()
}

// Count returns how many requests for path (every path when "") reached
// backend i.
func (b *Balancer) Count(i int, path string) int64 {
	be := b.backend(i)
	be.mu.Lock()
	defer be.mu.Unlock()
	if path != "" {
		return be.paths[path]
	}
	var n int64
	for _, c := range be.paths {
		n += c
	}
	return n
}

// Counts is Count for every backend, in order.
func (b *Balancer) Counts(path string) []int64 {
	out := make([]int64, len(b.all()))
	for i := range out {
		out[i] = b.Count(i, path)
	}
	return out
}

// Paths returns how many requests reached backend i, by path.
func (b *Balancer) Paths(i int) map[string]int64 {
	be := b.backend(i)
	be.mu.Lock()
	defer be.mu.Unlock()
	out := make(map[string]int64, len(be.paths))
	for p, n := range be.paths {
		out[p] = n
	}
	return out
}

// InFlight returns how many requests backend i has not finished answering.
func (b *Balancer) InFlight(i int) int64 { return b.backend(i).inflight.Load() }

// Dead reports whether backend i was taken out of the rotation, and when.
func (b *Balancer) Dead(i int) (bool, time.Time) {
	be := b.backend(i)
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.dead.Load(), be.diedAt
}

// Redials returns how many requests were moved from backend i to the next
// because connecting to it failed.
func (b *Balancer) Redials(i int) int64 {
	be := b.backend(i)
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.dials
}

// Failures returns the requests that failed after reaching a backend.
func (b *Balancer) Failures() []Failure {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Failure(nil), b.failures...)
}
