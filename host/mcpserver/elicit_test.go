package mcpserver

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
)

func TestConnectionsWait(t *testing.T) {
	never := func(context.Context, string, string, []string) (bool, error) { return false, nil }
	t.Run("woken by Completed", func(t *testing.T) {
		c := &Connections{Connected: never, Wait: 5 * time.Second, Poll: time.Hour}
		id := c.add("ann", "github", nil)
		go func() {
			time.Sleep(20 * time.Millisecond)
			c.Completed(context.Background(), "bob", "github") // another person: no effect
			c.Completed(context.Background(), "ann", "gitlab") // another provider: no effect
			time.Sleep(20 * time.Millisecond)
			c.Completed(context.Background(), "ann", "github")
		}()
		start := time.Now()
		if !c.wait(context.Background(), id, "ann", "github", nil) {
			t.Fatal("wait did not see the connection")
		}
		if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
			t.Fatalf("woke after %v", d)
		}
		if len(c.pending) != 0 {
			t.Fatalf("%d elicitations still pending", len(c.pending))
		}
	})
	t.Run("another person's id does not wake", func(t *testing.T) {
		c := &Connections{Connected: never, Wait: 100 * time.Millisecond, Poll: time.Hour}
		id := c.add("ann", "github", nil)
		go c.Completed(context.Background(), "ann", "github")
		// bob presents ann's id as his request state: he waits for his own
		// connection, which never comes, until the bound.
		if c.wait(context.Background(), id, "bob", "github", nil) {
			t.Fatal("bob's retry woke on ann's connection")
		}
	})
	t.Run("unknown id polls the store", func(t *testing.T) {
		var polls atomic.Int32
		c := &Connections{Wait: 5 * time.Second, Poll: 10 * time.Millisecond,
			Connected: func(_ context.Context, subject, provider string, scopes []string) (bool, error) {
				if subject != "ann" || provider != "github" || len(scopes) != 1 || scopes[0] != "repo" {
					t.Errorf("Connected(%s, %s, %v)", subject, provider, scopes)
				}
				return polls.Add(1) == 3, nil
			}}
		// A retry reaching another instance than the one that asked.
		if !c.wait(context.Background(), "elsewhere", "ann", "github", []string{"repo"}) || polls.Load() != 3 {
			t.Fatalf("polled %d times", polls.Load())
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := &Connections{Connected: never, Wait: 50 * time.Millisecond, Poll: 10 * time.Millisecond}
		if c.wait(context.Background(), c.add("ann", "github", nil), "ann", "github", nil) {
			t.Fatal("wait reported a connection that never happened")
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c.Wait = time.Hour
		if c.wait(ctx, c.add("ann", "github", nil), "ann", "github", nil) {
			t.Fatal("a canceled call waited on")
		}
	})
	t.Run("expired asks are forgotten", func(t *testing.T) {
		now := time.Unix(1000, 0)
		c := &Connections{TTL: time.Minute, Now: func() time.Time { return now }}
		c.add("ann", "github", nil)
		now = now.Add(2 * time.Minute)
		c.add("bob", "github", nil)
		if len(c.pending) != 1 {
			t.Fatalf("%d pending; want only the fresh one", len(c.pending))
		}
	})
}

func TestElicitParams(t *testing.T) {
	e := elicitParams("list_repos", &abi.Error{Code: abi.CodeGrantNotFound, Message: "no github account is connected",
		ConnectURL: "https://h/connect/github?link=x"}, "id1")
	if e.Mode != "url" || e.URL != "https://h/connect/github?link=x" || e.ElicitationID != "id1" ||
		e.Message != "Connect an account so that list_repos can act for you: no github account is connected." {
		t.Fatalf("%+v", e)
	}
	e = elicitParams("t", &abi.Error{Code: abi.CodeScopeReauthRequired, Message: "lacks repo", ConnectURL: "u"}, "id2")
	if e.Message != "Grant more access so that t can act for you: lacks repo." {
		t.Fatalf("%+v", e)
	}
	// The SDK builds the -32042 error only from URL-mode elicitations.
	_ = mcp.URLElicitationRequiredError([]*mcp.ElicitParams{e})
}
