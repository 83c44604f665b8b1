package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alterhost/alterhost/host"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/oauth/server"
	"github.com/alterhost/alterhost/vault"
	"github.com/alterhost/alterhost/vault/seal"
	"github.com/alterhost/alterhost/vault/store"
)

// storeFlags are the flags every command that opens the vault shares.
type storeFlags struct {
	dataDir, databaseURL *string
}

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		dataDir: fs.String("data-dir", defaultDataDir(), "`DIR` for alterhost's state: vault key, embedded database, compilation cache"),
		databaseURL: fs.String("database-url", os.Getenv("ALTERHOST_DATABASE_URL"),
			"PostgreSQL `URL` (postgres://...) shared by several instances; default: SQLite in --data-dir (env ALTERHOST_DATABASE_URL)"),
	}
}

func (f storeFlags) open(ctx context.Context) (store.Store, error) {
	if *f.dataDir == "" && *f.databaseURL == "" {
		return nil, errors.New("--data-dir or --database-url is required")
	}
	return vault.OpenStore(ctx, *f.databaseURL, *f.dataDir)
}

// runAudit prints recent audit records.
func runAudit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	var f store.AuditFilter
	fs.StringVar(&f.Subject, "subject", "", "only this person's requests")
	fs.StringVar(&f.Plugin, "plugin", "", "only this plugin's requests")
	fs.StringVar(&f.Provider, "provider", "", "only requests with this provider's credentials")
	since := fs.Duration("since", 0, "only requests in this last `DURATION`, e.g. 1h")
	fs.IntVar(&f.Limit, "limit", 50, "at most `N` rows, newest first")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: alterhost audit [--subject S] [--plugin P] [--provider P] [--since 1h] [--limit N]")
		fmt.Fprintln(stderr, "\nLists recent alter_request calls, newest first.")
		fs.PrintDefaults()
	}
	if _, err := applyAdminConfig(fs, args, os.Getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *since > 0 {
		f.Since = time.Now().Add(-*since)
	}
	ctx := context.Background()
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	recs, err := st.ListAudit(ctx, f)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSUBJECT\tAGENT\tPLUGIN\tTOOL\tPROVIDER\tREQUEST\tSTATUS\tDURATION\tERROR")
	for _, r := range recs {
		agent := r.Agent
		if r.ParentAgent != "" {
			agent += " < " + r.ParentAgent
		}
		status := "-"
		if r.Status != 0 {
			status = fmt.Sprint(r.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s %s%s\t%s\t%s\t%s\n", r.Time.Local().Format(time.DateTime),
			dash(r.Subject), dash(agent), r.Plugin, r.Tool, dash(r.Provider), r.Method, r.Host, r.Path,
			status, r.Duration.Round(time.Microsecond), dash(r.ErrorCode))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runGrants lists connected accounts, without their secrets.
func runGrants(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost grants", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	subject := fs.String("subject", "", "only this person's grants")
	if _, err := applyAdminConfig(fs, args, os.Getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	gs, err := st.ListGrants(ctx, *subject)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tPROVIDER\tACCOUNT\tSCOPES\tSTATUS\tEXPIRES\tUPDATED")
	for _, g := range gs {
		exp := "-"
		if !g.ExpiresAt.IsZero() {
			exp = g.ExpiresAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Subject, g.Provider, dash(g.AccountID),
			dash(strings.Join(g.Scopes, " ")), g.Status, exp, g.UpdatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

// runRotateKey adds a new vault key and re-seals every grant with it.
func runRotateKey(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost vault rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: alterhost vault rotate-key [--data-dir DIR] [--database-url URL]")
		fmt.Fprintln(stderr, "\nAdds a new key to DIR/vault.key, makes it current and re-seals every grant with it.")
		fmt.Fprintln(stderr, "Older keys stay in the file so instances still running can open what they read.")
		fmt.Fprintln(stderr, "With $ALTERHOST_VAULT_KEY, append the new ID:KEY there first; this then re-seals with it.")
		fs.PrintDefaults()
	}
	if _, err := applyAdminConfig(fs, args, os.Getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	// Keys from the environment are the operator's to add to (a new ID:KEY
	// at the end becomes current); alterhost then only re-seals.
	rotate := seal.Rotate
	if os.Getenv(seal.KeyEnv) != "" {
		rotate = seal.Load
	}
	keys, err := rotate(*sf.dataDir)
	if err != nil {
		return err
	}
	n, err := vault.New(st, keys, nil, nil).Rekey(ctx)
	if err != nil {
		return fmt.Errorf("re-sealed %d grants, then: %w", n, err)
	}
	fmt.Fprintf(stdout, "new vault key %s; re-sealed %d grants\n", keys.Current(), n)
	return nil
}

// runProviders lists the upstream providers and whether each is usable,
// never showing a client secret.
func runProviders(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost providers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("providers", "", "JSON `FILE` configuring upstream OAuth providers")
	asJSON := fs.Bool("json", false, "print each provider's configuration as JSON (secrets redacted)")
	if _, err := applyAdminConfig(fs, args, os.Getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	reg, err := provider.Load(*file)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reg.All())
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tREADY\tPKCE\tAPI HOSTS\tCONFIGURE WITH")
	for _, p := range reg.All() {
		ready, how := "yes", "-"
		if !p.Configured() {
			ready, how = "no", provider.EnvPrefix(p.Name())+"CLIENT_ID and _CLIENT_SECRET, or --providers FILE"
		}
		hosts := make([]string, 0, len(p.APIHosts()))
		for _, h := range p.APIHosts() {
			hosts = append(hosts, string(h))
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", p.Name(), ready, p.PKCE(), strings.Join(hosts, " "), how)
	}
	return tw.Flush()
}

// runSigninLink prints a fresh one-time sign-in link for alterhost's owner.
// An alterhost in OIDC mode has no sign-in links; it asks the running one
// first, and says so instead.
func runSigninLink(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost signin-link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	base := fs.String("base-url", "", "external `URL` of the running alterhost (default http://ADDR)")
	addr := fs.String("addr", "127.0.0.1:8080", "`HOST:PORT` the running alterhost serves on, when --base-url is not set")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: alterhost signin-link [--base-url URL | --addr HOST:PORT] [--data-dir DIR] [--database-url URL]")
		fmt.Fprintln(stderr, "\nPrints a link that signs the owner in to the alterhost at URL, once, within 15 minutes.")
		fmt.Fprintln(stderr, "An alterhost that signs people in through OpenID Connect (--oidc-issuer) has no such links.")
		fs.PrintDefaults()
	}
	if _, err := applyAdminConfig(fs, args, os.Getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	// As serve derives it, so that a configuration file naming only addr
	// sends the link to that alterhost, not to another one on 8080.
	if *base == "" {
		*base = "http://" + *addr
	}
	issuer, err := url.Parse(*base)
	if err != nil {
		return fmt.Errorf("--base-url: %w", err)
	}
	ctx := context.Background()
	oidc, err := signinByOIDC(ctx, issuer)
	if err != nil {
		fmt.Fprintf(stderr, "alterhost: could not ask %s how it signs people in (%v); if it runs with --oidc-issuer, it refuses this link\n", issuer, err)
	}
	if oidc {
		return fmt.Errorf("the alterhost at %s signs people in through OpenID Connect (--oidc-issuer), so there are no sign-in links: open %s in a browser", issuer, issuer.JoinPath("signin"))
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	as, err := server.New(server.Options{Store: st, Issuer: issuer, Owner: host.LocalOwner})
	if err != nil {
		return err
	}
	link, err := as.SigninLink(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, link)
	return nil
}

// signinByOIDC asks the alterhost at base whether it signs people in
// through OpenID Connect: its /signin then redirects to the OIDC start
// (oauth/server's signin handler) instead of showing owner mode's page.
func signinByOIDC(ctx context.Context, base *url.URL) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.JoinPath("signin").String(), nil)
	if err != nil {
		return false, err
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	loc, err := resp.Location()
	return resp.StatusCode == http.StatusSeeOther && err == nil && loc.Path == "/signin/oidc", nil
}
