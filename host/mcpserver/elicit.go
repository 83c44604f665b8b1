package mcpserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
)

// How a Connect URL reaches a client depends on the protocol revision it
// speaks and on whether it declared URL elicitation:
//
//   - 2026-07-28 and later: the call returns an input request (the
//     multi-round-trip form): a "url" elicitation the client shows and then
//     answers by calling the tool again. On that retry the host waits for the
//     person to finish connecting, then runs the tool.
//   - 2025-11-25: the call fails with the URL-elicitation-required error
//     (-32042), and when the person finishes, the session that asked gets
//     notifications/elicitation/complete, so the client can retry.
//   - otherwise, or without the capability: a tool result with isError and
//     the URL in words (see failed).
const (
	multiRoundTripVersion = "2026-07-28"
	urlElicitationVersion = "2025-11-25"
	// connectInput is the input request's key in the result and the retry.
	connectInput = "connect"
)

// Connections remembers the Connect URLs handed out as URL elicitations
// until the person finishes connecting or the link expires, so the host
// can tell the asking session, or wake a retried call, when they do.
//
// It knows only this process: a Connect flow finished through another
// instance reaches a waiting retry through Connected, which reads the
// shared store, but not a 2025-11-25 session's completion notification.
type Connections struct {
	// Connected reports whether subject's grant at provider now covers
	// scopes. Nil: retries wait for this process's Completed alone.
	Connected func(ctx context.Context, subject, provider string, scopes []string) (bool, error)
	// Wait bounds how long a retried call waits for the person to finish
	// (default 5 minutes; the client's own timeout may end it first), and
	// Poll is how often it asks Connected meanwhile (default 1 s).
	Wait, Poll time.Duration
	// TTL is how long an unfinished elicitation is remembered: the life of
	// a Connect link (default 15 minutes).
	TTL time.Duration
	Now func() time.Time

	mu      sync.Mutex
	pending map[string]*elicitation
}

// elicitation is one Connect URL sent to a client as a URL elicitation.
type elicitation struct {
	subject, provider string
	// session hears the completion (2025-11-25); nil for the
	// multi-round-trip form, where the retry itself waits.
	session *mcp.ServerSession
	done    chan struct{}
	expires time.Time
}

func (c *Connections) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func orDefault(d, v time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return v
}

// add records an elicitation for subject at provider and returns its id.
func (c *Connections) add(subject, provider string, session *mcp.ServerSession) string {
	b := make([]byte, 18)
	rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[string]*elicitation{}
	}
	// Forget what expired; the map holds at most a link's life of asks.
	for k, e := range c.pending {
		if !now.Before(e.expires) {
			delete(c.pending, k)
		}
	}
	c.pending[id] = &elicitation{subject: subject, provider: provider, session: session,
		done: make(chan struct{}), expires: now.Add(orDefault(c.TTL, 15*time.Minute))}
	return id
}

// Completed is told that subject just connected provider (the Connect
// flow's callback): every elicitation waiting for that is finished, its
// session notified and its waiting retry woken.
func (c *Connections) Completed(ctx context.Context, subject, provider string) {
	c.mu.Lock()
	var finished []*elicitation
	var ids []string
	for id, e := range c.pending {
		if e.subject == subject && e.provider == provider {
			finished = append(finished, e)
			ids = append(ids, id)
			delete(c.pending, id)
		}
	}
	c.mu.Unlock()
	for i, e := range finished {
		close(e.done)
		if e.session != nil {
			// A session that went away cannot hear it; nothing to do then.
			_ = e.session.NotifyElicitationComplete(ctx, &mcp.ElicitationCompleteParams{ElicitationID: ids[i]})
		}
	}
}

// wait blocks until subject has connected provider with scopes: this
// process hears the elicitation id finish, or Connected says so, or the
// wait bound or ctx ends. It reports whether the connection happened.
func (c *Connections) wait(ctx context.Context, id, subject, provider string, scopes []string) bool {
	var done chan struct{}
	c.mu.Lock()
	if e, ok := c.pending[id]; ok && e.subject == subject && e.provider == provider {
		done = e.done
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, orDefault(c.Wait, 5*time.Minute))
	defer cancel()
	tick := time.NewTicker(orDefault(c.Poll, time.Second))
	defer tick.Stop()
	for {
		if c.Connected != nil {
			if ok, err := c.Connected(ctx, subject, provider, scopes); err == nil && ok {
				return true
			}
		}
		select {
		case <-done: // nil when unknown here: never ready
			return true
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// urlElicitation is how a client takes URL elicitations, from the
// protocol revision and capabilities it declared.
type urlElicitation int

const (
	noElicitation   urlElicitation = iota
	elicitByError                  // 2025-11-25: -32042 and a completion notification
	elicitByRequest                // 2026-07-28: an input request and a retry
)

func elicitationOf(req *mcp.CallToolRequest) urlElicitation {
	caps := req.ClientCapabilities()
	if caps == nil || caps.Elicitation == nil || caps.Elicitation.URL == nil {
		return noElicitation
	}
	switch v := req.ProtocolVersion(); {
	case v >= multiRoundTripVersion:
		return elicitByRequest
	case v >= urlElicitationVersion && req.Session != nil:
		return elicitByError
	}
	return noElicitation
}

// elicitParams is the URL elicitation of a Connect URL.
func elicitParams(tool string, r *abi.Error, id string) *mcp.ElicitParams {
	msg := "Connect an account so that " + tool + " can act for you: " + r.Message + "."
	if r.Code == abi.CodeScopeReauthRequired {
		msg = "Grant more access so that " + tool + " can act for you: " + r.Message + "."
	}
	return &mcp.ElicitParams{Mode: "url", Message: msg, URL: r.ConnectURL, ElicitationID: id}
}
