package egress_test

// Benchmarks of the vault path of alter_request against a plain Go HTTP
// call carrying the same token, to the same loopback upstream.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./vault/egress/   (or scripts/bench.sh)
//
// BenchmarkAlterRequest/native is the baseline; every sibling's added cost
// is its time minus native's (scripts/bench.sh prints it). The parts of the
// vault path are measured apart by BenchmarkCredential, BenchmarkSealOpen
// and BenchmarkAuditRecord. Set ALTERHOST_TEST_POSTGRES_URL to also run the
// vault over PostgreSQL, in a schema of its own.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/internal/pgtest"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/egress"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store"
	"github.com/alterhost/alterhost/vault/store/postgres"
	"github.com/alterhost/alterhost/vault/store/sqlite"
)

const (
	benchSubject  = "alice"
	benchProvider = "acme"
	// benchToken is as long as a GitHub OAuth token (gho_ + 36).
	benchToken   = "gho_0123456789abcdefghijABCDEFGHIJ012345"
	benchRefresh = "ghr_0123456789abcdefghijABCDEFGHIJ012345abcdefghijABCDEFGHIJ0123456789"
	benchBody    = `{"login":"alice","id":1,"name":"Alice","public_repos":12}`
)

var benchScopes = []string{"read"}

// upstream is the loopback API every variant calls. It remembers the last
// Authorization header it saw, so each benchmark can check, before timing,
// that the token arrived.
type upstream struct {
	*httptest.Server
	lastAuth atomic.Pointer[string]
}

func newUpstream(b *testing.B) *upstream {
	b.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		u.lastAuth.Store(&a)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, benchBody)
	}))
	b.Cleanup(u.Close)
	return u
}

// checkAuth fails b unless the upstream's last request carried want.
func (u *upstream) checkAuth(b *testing.B, want string) {
	b.Helper()
	got := ""
	if p := u.lastAuth.Load(); p != nil {
		got = *p
	}
	if got != want {
		b.Fatalf("the upstream saw Authorization %q; want %q", got, want)
	}
}

func (u *upstream) host() string { return strings.TrimPrefix(u.URL, "http://") }

func benchManifest(b *testing.B, host, provider string) egress.Caller {
	b.Helper()
	prov := ""
	if provider != "" {
		prov = fmt.Sprintf(`"provider":%q,"scopes":["read"],`, provider)
	}
	m, err := abi.ParseManifest("bench", []byte(fmt.Sprintf(`{"abi":"alter/v1","name":"p","version":"1",%s
		"allowed_hosts":[%q],"tools":[{"name":"t","description":"d"}]}`, prov, host)))
	if err != nil {
		b.Fatal(err)
	}
	return egress.Caller{Plugin: m, Tool: &m.Tools[0]}
}

func benchRequest(b *testing.B, u string) *abi.OutboundRequest {
	b.Helper()
	r, aerr := abi.ParseRequest([]byte(`{"url":"`+u+`"}`), 1<<20)
	if aerr != nil {
		b.Fatal(aerr)
	}
	return r
}

func benchKeyring(b *testing.B) *seal.Keyring {
	b.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	k, err := seal.New(map[string][]byte{"k1": key}, "k1")
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// openSQLite opens a new SQLite store in b.TempDir, closed when b ends.
func openSQLite(b *testing.B) store.Store {
	b.Helper()
	st, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), vault.DatabaseFile))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// openPostgres opens a store in a new schema of the server named by
// ALTERHOST_TEST_POSTGRES_URL, dropped when b ends; it skips b when the
// variable is not set.
func openPostgres(b *testing.B) store.Store {
	b.Helper()
	u := pgtest.URL(b)
	st, err := postgres.Open(b.Context(), u)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() }) // runs before the schema is dropped
	return st
}

// newVault returns a vault over st holding benchSubject's grant at
// benchProvider, valid for a day so that no call refreshes it.
func newVault(b *testing.B, st store.Store, ps vault.Providers) *vault.Vault {
	b.Helper()
	v := vault.New(st, benchKeyring(b), ps, nil)
	_, err := v.Save(b.Context(), benchSubject, benchProvider, vault.Token{
		AccessToken: benchToken, RefreshToken: benchRefresh,
		Expiry: time.Now().Add(24 * time.Hour), Scopes: benchScopes,
	})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// newAuditor starts an auditor on st, flushed and stopped when b ends
// (before st closes: cleanups run last-registered first).
func newAuditor(b *testing.B, st store.Store) *vault.Auditor {
	b.Helper()
	a := vault.NewAuditor(st, nil)
	b.Cleanup(a.Close)
	return a
}

func BenchmarkAlterRequest(b *testing.B) {
	up := newUpstream(b)
	target := up.URL + "/user"
	ps := providers{benchProvider: fakeProvider{hosts: []abi.HostPattern{abi.HostPattern(up.host())}}}
	ctx := vault.WithIdentity(context.Background(), vault.Identity{Subject: benchSubject, Agent: "claude"})

	// native: what a Go tool in the host would do, with the same token.
	b.Run("native", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
		b.Cleanup(client.CloseIdleConnections)
		call := func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+benchToken)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != benchBody {
				b.Fatalf("native call: %d %q %v", resp.StatusCode, body, err)
			}
		}
		call()
		up.checkAuth(b, "Bearer "+benchToken)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			call()
		}
	})

	// egressCase times egress.Client.Do of caller's request through c,
	// after checking the upstream saw wantAuth.
	egressCase := func(b *testing.B, c *egress.Client, caller egress.Caller, wantAuth string) {
		b.Helper()
		req := benchRequest(b, target)
		call := func() {
			resp, aerr := c.Do(ctx, caller, req)
			if aerr != nil || resp.Status != http.StatusOK || resp.Body != benchBody {
				b.Fatalf("egress call: %+v %v", resp, aerr)
			}
		}
		call()
		up.checkAuth(b, wantAuth)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			call()
		}
	}

	// egress_plain: a tool without a provider, so policy, guard and audit
	// but no credential.
	b.Run("egress_plain", func(b *testing.B) {
		st := openSQLite(b)
		c := egress.New(egress.Options{Providers: ps, Audit: newAuditor(b, st), AllowPrivate: true})
		egressCase(b, c, benchManifest(b, up.host(), ""), "")
	})

	vaultCase := func(b *testing.B, st store.Store) {
		c := egress.New(egress.Options{
			Providers: ps, Credentials: newVault(b, st, ps), Audit: newAuditor(b, st), AllowPrivate: true,
		})
		egressCase(b, c, benchManifest(b, up.host(), benchProvider), "Bearer "+benchToken)
	}
	b.Run("vault", func(b *testing.B) { vaultCase(b, openSQLite(b)) })
	// vault_noaudit is vault with no Recorder: the difference is what the
	// audit writer costs the call path on this machine.
	b.Run("vault_noaudit", func(b *testing.B) {
		st := openSQLite(b)
		c := egress.New(egress.Options{Providers: ps, Credentials: newVault(b, st, ps), AllowPrivate: true})
		egressCase(b, c, benchManifest(b, up.host(), benchProvider), "Bearer "+benchToken)
	})
	b.Run("vault_postgres", func(b *testing.B) { vaultCase(b, openPostgres(b)) })
}

// BenchmarkCredential is Vault.Credential alone (store lookup, unseal,
// JSON), and, apart, the store lookup it starts with.
func BenchmarkCredential(b *testing.B) {
	ps := providers{benchProvider: fakeProvider{}}
	for _, backend := range []struct {
		name string
		open func(*testing.B) store.Store
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		b.Run(backend.name, func(b *testing.B) {
			v := newVault(b, backend.open(b), ps)
			ctx := b.Context()
			if tok, aerr := v.Credential(ctx, benchSubject, benchProvider, benchScopes); aerr != nil || tok != benchToken {
				b.Fatalf("Credential = %q, %v", tok, aerr)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, aerr := v.Credential(ctx, benchSubject, benchProvider, benchScopes); aerr != nil {
					b.Fatal(aerr)
				}
			}
		})
		b.Run(backend.name+"_get_grant", func(b *testing.B) {
			st := backend.open(b)
			newVault(b, st, ps)
			ctx := b.Context()
			if _, err := st.GetGrant(ctx, benchSubject, benchProvider); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := st.GetGrant(ctx, benchSubject, benchProvider); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSealOpen opens a token bundle as the vault seals it: the JSON
// of both tokens, bound to its row by the associated data. /json adds the
// decoding Vault.Credential does after.
func BenchmarkSealOpen(b *testing.B) {
	k := benchKeyring(b)
	plain, err := json.Marshal(map[string]string{"access_token": benchToken, "refresh_token": benchRefresh})
	if err != nil {
		b.Fatal(err)
	}
	ad := []byte("alterhost/grant/v1\x00" + benchSubject + "\x00" + benchProvider + "\x00" + "0123456789abcdef0123456789abcdef")
	id, sealed, err := k.Seal(plain, ad)
	if err != nil {
		b.Fatal(err)
	}
	if got, err := k.Open(id, sealed, ad); err != nil || string(got) != string(plain) {
		b.Fatalf("Open = %q, %v", got, err)
	}
	b.Run("aes_gcm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Open(id, sealed, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("aes_gcm+json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := k.Open(id, sealed, ad)
			if err != nil {
				b.Fatal(err)
			}
			var s struct {
				AccessToken  string `json:"access_token"`
				RefreshToken string `json:"refresh_token,omitempty"`
			}
			if err := json.Unmarshal(out, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// discardAudit is a store whose AppendAudit throws records away, so that
// Record's cost is the queue alone and not the writer behind it.
type discardAudit struct {
	store.Store
	n atomic.Int64
}

func (d *discardAudit) AppendAudit(_ context.Context, rs []store.AuditRecord) error {
	d.n.Add(int64(len(rs)))
	return nil
}

// BenchmarkAuditRecord is Auditor.Record of one record as egress makes it.
// /queue writes to a store that discards, so it is the enqueue alone;
// /sqlite writes to SQLite, and once the queue (4096 records) is full it
// is the writer's sustained rate, since Record waits rather than drop.
func BenchmarkAuditRecord(b *testing.B) {
	rec := store.AuditRecord{
		Time: time.Now(), Subject: benchSubject, Agent: "claude", Plugin: "p", Tool: "t",
		Provider: benchProvider, Method: http.MethodGet, Host: "127.0.0.1:12345", Path: "/user",
		Status: http.StatusOK, Duration: 50 * time.Microsecond,
	}
	b.Run("queue", func(b *testing.B) {
		d := &discardAudit{}
		a := vault.NewAuditor(d, nil)
		b.ReportAllocs()
		for b.Loop() {
			a.Record(rec)
		}
		b.StopTimer()
		a.Close()
		if got := d.n.Load(); got < int64(b.N) {
			b.Fatalf("%d records reached the store; want %d", got, b.N)
		}
	})
	b.Run("sqlite", func(b *testing.B) {
		st := openSQLite(b)
		a := newAuditor(b, st)
		a.Record(rec)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			a.Record(rec)
		}
		b.StopTimer()
		a.Close()
		got, err := st.ListAudit(context.Background(), store.AuditFilter{Limit: 1})
		if err != nil || len(got) != 1 || got[0].Subject != benchSubject {
			b.Fatalf("ListAudit = %+v, %v", got, err)
		}
	})
}
