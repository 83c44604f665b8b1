package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/sqlite"
)

// testStore returns a SQLite store in a temporary directory.
func testStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "alterhost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// pausingStore announces each RedeemAuthCode on entered and holds the
// first redemption, once it has minted its tokens and before the store
// keeps them, until release is closed.
type pausingStore struct {
	store.Store
	calls           atomic.Int32
	entered         chan struct{}
	paused, release chan struct{}
}

func (p *pausingStore) RedeemAuthCode(ctx context.Context, h []byte, family string, now time.Time,
	mint func(store.AuthCode) ([]store.Token, error)) (store.AuthCode, error) {
	first := p.calls.Add(1) == 1
	p.entered <- struct{}{}
	return p.Store.RedeemAuthCode(ctx, h, family, now, func(c store.AuthCode) ([]store.Token, error) {
		ts, err := mint(c)
		if first {
			close(p.paused)
			<-p.release
		}
		return ts, err
	})
}

// TestCodeReplayDuringRedemption replays a code while its first
// redemption has minted tokens the store has not kept yet. Redeeming and
// storing the tokens were two steps once: a replay between them revoked an
// empty family, and the tokens stored next stayed valid. Now the replay
// waits for the redemption and revokes its tokens.
func TestCodeReplayDuringRedemption(t *testing.T) {
	ps := &pausingStore{entered: make(chan struct{}, 2), paused: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, func(o *Options) {
		ps.Store = o.Store
		o.Store = ps
	})
	id := e.publicClient()
	e.signIn()
	v := oauth2.GenerateVerifier()
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "code": {e.code(id, v)},
		"code_verifier": {v}, "redirect_uri": {redirect}, "resource": {e.resource()}}
	type result struct {
		status int
		m      map[string]any
		err    error
	}
	post := func(done chan<- result) {
		resp, err := http.PostForm(e.ts.URL+"/token", form)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		err = json.NewDecoder(resp.Body).Decode(&m)
		done <- result{resp.StatusCode, m, err}
	}
	first, replay := make(chan result, 1), make(chan result, 1)
	go post(first)
	<-ps.entered
	<-ps.paused
	go post(replay)
	<-ps.entered
	// Give the replay time to finish, as it did when it did not wait.
	var r2 result
	replayed := false
	select {
	case r2 = <-replay:
		replayed = true
	case <-time.After(200 * time.Millisecond):
	}
	close(ps.release)
	r1 := <-first
	if !replayed {
		r2 = <-replay
	}
	if r1.err != nil || r2.err != nil {
		t.Fatal(r1.err, r2.err)
	}
	if r1.status != http.StatusOK {
		t.Fatalf("first redemption: %d %v", r1.status, r1.m)
	}
	if r2.status != http.StatusBadRequest || r2.m["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", r2.status, r2.m)
	}
	if e.valid(r1.m["access_token"].(string)) {
		t.Error("the replayed code's access token is still valid")
	}
	if status, m := e.refresh(id, r1.m["refresh_token"].(string), nil); status != http.StatusBadRequest {
		t.Errorf("the replayed code's refresh token still works: %d %v", status, m)
	}
}
