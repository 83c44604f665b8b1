package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Transport returns a RoundTripper that serves requests for Host
// in-process, by calling Handler directly: no socket, no DNS, http or https
// alike. Other hosts go to Options.Fallback, or fail if it is nil.
func (s *Sandbox) Transport() http.RoundTripper {
	return &transport{s: s, fallback: s.opts.Fallback}
}

// Wrap is Transport with base as the fallback. Its signature fits
// egress.Options.Transport, so the outbound client serves the sandbox below
// its policy checks and sends everything else on as before.
func (s *Sandbox) Wrap(base http.RoundTripper) http.RoundTripper {
	return &transport{s: s, fallback: base}
}

type transport struct {
	s        *Sandbox
	fallback http.RoundTripper
}

// RoundTrip serves Host in-process and hands anything else to the
// fallback.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.EqualFold(req.URL.Hostname(), Host) {
		if t.fallback == nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, fmt.Errorf("sandbox transport: %s is not %s and there is no fallback", req.URL.Host, Host)
		}
		return t.fallback.RoundTrip(req)
	}
	return t.s.serve(req)
}

// serve runs the handler on a copy of req, as net/http's server would
// present it, and returns the buffered response.
func (s *Sandbox) serve(req *http.Request) (resp *http.Response, err error) {
	if req.Body != nil {
		defer req.Body.Close() // a RoundTripper always closes the body
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	in := req.Clone(req.Context())
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	in.RemoteAddr = "in-process:0"
	in.Proto, in.ProtoMajor, in.ProtoMinor = "HTTP/1.1", 1, 1
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}}
	defer func() {
		// A panicking handler fails this request, as a server would, not
		// the caller's goroutine.
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("sandbox transport: handler panicked: %v", p)
		}
	}()
	s.server.ServeHTTP(rec, in)
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	body := rec.body.Bytes()
	if req.Method == http.MethodHead {
		body = nil
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)),
		StatusCode:    rec.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.sent,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// recorder is a minimal buffering ResponseWriter. Headers are frozen at
// WriteHeader, as on the wire.
type recorder struct {
	header http.Header
	sent   http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status != 0 {
		return
	}
	r.status = status
	r.sent = r.header.Clone()
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.body.Write(b)
}
