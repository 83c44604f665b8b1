package main

// Configuration layers for serve: a TOML file, the environment and the
// command line, over the flags' defaults. The layers are generic over the
// flag set, so every serve flag, present and future, is a file key and an
// environment variable without being listed here.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/alterhost/alterhost/host"
	"github.com/alterhost/alterhost/host/plugin"
	"github.com/alterhost/alterhost/oauth/provider"
	"github.com/alterhost/alterhost/vault/seal"
)

const (
	// configFlag names the configuration file; $ALTERHOST_CONFIG too.
	configFlag = "config"
	envPrefix  = "ALTERHOST_"
)

// actionFlags do something instead of configuring serve: they are no file
// keys, no environment variables, and when given they skip the file, so
// `alterhost --version` works whatever the configuration holds.
var actionFlags = []string{"version"}

// envSecrets are the secrets alterhost reads from the environment only,
// shown by config check as set or not, never by value.
var envSecrets = []string{oidcSecretEnv, seal.KeyEnv}

// configSource says which layer a setting came from.
type configSource string

const (
	fromDefault configSource = "default"
	fromFile    configSource = "file"
	fromEnv     configSource = "env"
	fromFlag    configSource = "flag"
)

// origin is where a setting's value came from: Where is "FILE:LINE",
// "$NAME" or "command line".
type origin struct {
	Source  configSource
	Where   string
	Invalid bool // the layer's value did not parse; the one below stands
}

// configLayers records what applyConfig did: the file it read and the
// origin of every setting not left at its default.
type configLayers struct {
	File    string
	origins map[string]origin
}

func (c *configLayers) origin(name string) origin {
	if o, ok := c.origins[name]; ok {
		return o
	}
	return origin{Source: fromDefault}
}

// configProblems lists every problem found, so an operator fixes them in
// one round instead of one per start.
type configProblems []string

func (p configProblems) Error() string {
	if len(p) == 1 {
		return p[0]
	}
	return fmt.Sprintf("%d configuration problems:\n  %s", len(p), strings.Join(p, "\n  "))
}

// envName is the environment variable that sets a flag: ALTERHOST_BASE_URL
// for --base-url.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyConfig sets fs's flags from the configuration file (--config FILE on
// the command line, else $ALTERHOST_CONFIG) and then from the environment
// (ALTERHOST_<FLAG>), so that the fs.Parse(args) that must follow lets the
// command line win: flag > environment > file > default. It defines
// --config on fs if fs has none. Every problem is reported at once.
func applyConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (*configLayers, error) {
	return applyConfigTo(fs, args, getenv, nil)
}

// applyAdminConfig is applyConfig for the commands beside serve (audit,
// grants, signin-link, ...), so that they find the database serve uses: it
// reads the same file and environment, sets the flags the command shares
// with serve (--data-dir, --database-url, --base-url, ...) and passes over
// serve's other settings. The command's own flags (--subject, --limit)
// come from the command line only.
func applyAdminConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (*configLayers, error) {
	serveFlags, _ := newServeFlags(io.Discard)
	return applyConfigTo(fs, args, getenv, serveFlags)
}

// applyConfigTo is applyConfig; with serve set, only the flags fs shares
// with serve are settings, and the file's keys for serve's other flags
// are passed over.
func applyConfigTo(fs *flag.FlagSet, args []string, getenv func(string) string, serve *flag.FlagSet) (*configLayers, error) {
	if fs.Lookup(configFlag) == nil {
		fs.String(configFlag, "", "TOML `FILE` of settings, keys named like these flags (env "+envName(configFlag)+")")
	}
	layers := &configLayers{origins: map[string]origin{}}
	cmdline, stop := commandLine(fs, args)
	if stop {
		return layers, nil
	}
	var problems configProblems
	path, fromCmdline := cmdline[configFlag]
	if !fromCmdline {
		if path = getenv(envName(configFlag)); path != "" {
			fs.Set(configFlag, path)
			layers.origins[configFlag] = origin{Source: fromEnv, Where: "$" + envName(configFlag)}
		}
	}
	if path != "" {
		layers.File = path
		problems = append(problems, applyFile(fs, path, layers, serve)...)
	}
	problems = append(problems, applyEnv(fs, getenv, layers, serve)...)
	for name := range cmdline {
		layers.origins[name] = origin{Source: fromFlag, Where: "command line"}
	}
	if len(problems) > 0 {
		return layers, problems
	}
	return layers, nil
}

// probe stands in for a flag while commandLine looks at the arguments: it
// accepts any value, and is a boolean flag where the real one is.
type probe struct {
	name   string
	isBool bool
	seen   map[string]string
}

func (p *probe) String() string     { return "" }
func (p *probe) IsBoolFlag() bool   { return p.isBool }
func (p *probe) Set(v string) error { p.seen[p.name] = v; return nil }

// commandLine returns the flags that args set, by name, without touching
// fs: the file and the environment are applied before fs.Parse. stop is
// true when args ask for help or an action flag, which need no
// configuration. A malformed command line yields what was read before the
// mistake; the real fs.Parse reports it.
func commandLine(fs *flag.FlagSet, args []string) (seen map[string]string, stop bool) {
	seen = map[string]string{}
	probes := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	probes.SetOutput(io.Discard)
	probes.Usage = func() {}
	fs.VisitAll(func(f *flag.Flag) {
		probes.Var(&probe{name: f.Name, isBool: kindOf(f) == kindBool, seen: seen}, f.Name, "")
	})
	if err := probes.Parse(args); errors.Is(err, flag.ErrHelp) {
		return seen, true
	}
	for _, name := range actionFlags {
		if v, ok := seen[name]; ok && v != "false" {
			return seen, true
		}
	}
	return seen, false
}

// setting reports whether a flag is configurable through the file and the
// environment; with serve set (applyAdminConfig), only if serve has it too.
func setting(name string, serve *flag.FlagSet) bool {
	return name != configFlag && !slices.Contains(actionFlags, name) && (serve == nil || serve.Lookup(name) != nil)
}

// applyEnv sets every flag whose ALTERHOST_<FLAG> is set and not empty.
func applyEnv(fs *flag.FlagSet, getenv func(string) string, layers *configLayers, serve *flag.FlagSet) configProblems {
	var problems configProblems
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		v := getenv(env)
		if !setting(f.Name, serve) || v == "" {
			return
		}
		if err := setFlag(fs, f, v); err != nil {
			layers.origins[f.Name] = origin{Source: fromEnv, Where: "$" + env, Invalid: true}
			switch k := kindOf(f); {
			case k == kindBool:
				problems = append(problems, fmt.Sprintf("$%s: --%s: want true or false, got %q", env, f.Name, v))
			case k == kindDuration:
				problems = append(problems, fmt.Sprintf(`$%s: --%s: want a duration such as "1h" or "90s", got %q`, env, f.Name, v))
			case (k == kindString || k == kindOther) && secretEnv(env):
				// The message of a failed Set may repeat the value.
				problems = append(problems, fmt.Sprintf("$%s: not a valid value for --%s", env, f.Name))
			default:
				problems = append(problems, fmt.Sprintf("$%s: --%s: %v", env, f.Name, err))
			}
			return
		}
		layers.origins[f.Name] = origin{Source: fromEnv, Where: "$" + env}
	})
	return problems
}

// setFlag sets a flag, keeping its value when the text does not parse:
// the flag package's own values are zeroed by a failed Set.
func setFlag(fs *flag.FlagSet, f *flag.Flag, text string) error {
	prev := f.Value.String()
	err := fs.Set(f.Name, text)
	if err != nil {
		f.Value.Set(prev)
	}
	return err
}

// fileKey is one top-level key of the configuration file.
type fileKey struct {
	name   string // dotted keys joined with "."
	line   int
	dotted bool
}

// applyFile reads the TOML file at path and sets the flags it names.
func applyFile(fs *flag.FlagSet, path string, layers *configLayers, serve *flag.FlagSet) configProblems {
	data, err := os.ReadFile(path)
	if err != nil {
		return configProblems{fmt.Sprintf("--%s: %v", configFlag, err)}
	}
	var values map[string]any
	if err := toml.Unmarshal(data, &values); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return configProblems{fmt.Sprintf("%s:%d:%d: %s", path, line, col, strings.TrimPrefix(de.Error(), "toml: "))}
		}
		return configProblems{fmt.Sprintf("%s: %v", path, err)}
	}
	keys, problems := topLevelKeys(path, data)
	known := map[string]*flag.Flag{}
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if setting(f.Name, serve) {
			known[f.Name] = f
			names = append(names, f.Name)
		}
	})
	for _, k := range keys {
		at := fmt.Sprintf("%s:%d", path, k.line)
		f := known[k.name]
		switch {
		case f == nil && serve != nil && setting(k.name, serve):
			continue // a setting of serve's that this command does not take
		case k.dotted:
			problems = append(problems, fmt.Sprintf("%s: %s: keys are flag names at the top level, without dots (did you mean %s?)",
				at, k.name, nearest(strings.ReplaceAll(k.name, ".", "-"), names)))
			continue
		case f == nil && k.name == configFlag:
			problems = append(problems, fmt.Sprintf("%s: %s: a configuration file cannot name another; use --%s or $%s",
				at, k.name, configFlag, envName(configFlag)))
			continue
		case f == nil && slices.Contains(actionFlags, k.name):
			problems = append(problems, fmt.Sprintf("%s: %s: --%s is an action, not a setting", at, k.name, k.name))
			continue
		case f == nil:
			if env, ok := secretKey(k.name); ok {
				problems = append(problems, fmt.Sprintf("%s: %s: secrets are never read from the configuration file; set %s in the environment (for systemd, an EnvironmentFile readable only by root)",
					at, k.name, env))
			} else {
				problems = append(problems, fmt.Sprintf("%s: unknown key %q (did you mean %s?)", at, k.name, nearest(k.name, names)))
			}
			continue
		}
		text, err := fileValueText(f, values[k.name])
		if err == nil {
			err = fileSecretCheck(f, text)
		}
		if err == nil {
			err = setFlag(fs, f, text)
		}
		if err != nil {
			layers.origins[f.Name] = origin{Source: fromFile, Where: at, Invalid: true}
			problems = append(problems, fmt.Sprintf("%s: %s: %v", at, k.name, err))
			continue
		}
		layers.origins[f.Name] = origin{Source: fromFile, Where: at}
	}
	return problems
}

// topLevelKeys lists the file's top-level keys with their lines, which
// toml.Unmarshal does not give; tables are reported as problems, since
// every setting is a top-level key.
func topLevelKeys(path string, data []byte) ([]fileKey, configProblems) {
	var keys []fileKey
	var problems configProblems
	p := unstable.Parser{}
	p.Reset(data)
	inTable := false
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			inTable = true
			it := e.Key()
			var parts []string
			line := 0
			for it.Next() {
				if line == 0 {
					line = p.Shape(it.Node().Raw).Start.Line
				}
				parts = append(parts, string(it.Node().Data))
			}
			problems = append(problems, fmt.Sprintf("%s:%d: [%s]: the file has no tables: every setting is a top-level key named like its flag, before any [table]",
				path, line, strings.Join(parts, ".")))
		case unstable.KeyValue:
			if inTable {
				continue // reported with its table
			}
			it := e.Key()
			var k fileKey
			var parts []string
			for it.Next() {
				if k.line == 0 {
					k.line = p.Shape(it.Node().Raw).Start.Line
				}
				parts = append(parts, string(it.Node().Data))
			}
			k.name, k.dotted = strings.Join(parts, "."), len(parts) > 1
			keys = append(keys, k)
		}
	}
	return keys, problems
}

// flagKind is the type of value a flag takes, as far as the file cares.
type flagKind int

const (
	kindOther flagKind = iota
	kindString
	kindBool
	kindDuration
	kindInt
	kindUint
	kindFloat
)

func kindOf(f *flag.Flag) flagKind {
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case string:
			return kindString
		case bool:
			return kindBool
		case time.Duration:
			return kindDuration
		case int, int64:
			return kindInt
		case uint, uint64:
			return kindUint
		case float64:
			return kindFloat
		}
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return kindBool
	}
	return kindOther
}

// commaListFlag reports whether a string flag takes a comma-separated list,
// which the file may give as an array of strings.
func commaListFlag(f *flag.Flag) bool {
	return kindOf(f) == kindString && strings.Contains(f.Usage, "comma-separated")
}

// fileValueText checks a file value against its flag's type and returns it
// as the flag's text, so fs.Set parses it as a command line would.
func fileValueText(f *flag.Flag, v any) (string, error) {
	switch kindOf(f) {
	case kindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
		if items, ok := v.([]any); ok && commaListFlag(f) {
			var out []string
			for _, item := range items {
				s, ok := item.(string)
				if !ok {
					return "", fmt.Errorf("want an array of strings, got an array holding %s", tomlType(item))
				}
				if strings.Contains(s, ",") {
					return "", fmt.Errorf("%q: an item of the array holds a comma; give each item on its own", s)
				}
				out = append(out, s)
			}
			return strings.Join(out, ","), nil
		}
		if commaListFlag(f) {
			return "", fmt.Errorf("want an array of strings (or one comma-separated string), got %s", tomlType(v))
		}
		return "", fmt.Errorf("want a string, got %s", tomlType(v))
	case kindBool:
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
		return "", fmt.Errorf("want true or false, got %s", tomlType(v))
	case kindDuration:
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf(`want a duration string such as "1h" or "90s", got %s`, tomlType(v))
		}
		if _, err := time.ParseDuration(s); err != nil {
			return "", fmt.Errorf(`want a duration such as "1h" or "90s": %v`, err)
		}
		return s, nil
	case kindInt:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want an integer, got %s", tomlType(v))
	case kindUint:
		if n, ok := v.(int64); ok && n >= 0 {
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want an integer of 0 or more, got %s", tomlType(v))
	case kindFloat:
		switch n := v.(type) {
		case float64:
			return strconv.FormatFloat(n, 'g', -1, 64), nil
		case int64:
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want a number, got %s", tomlType(v))
	}
	// A flag of its own type parses its text; the file gives that text.
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("want a string, got %s", tomlType(v))
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

// fileSecretCheck refuses a secret inside a file value: a database URL
// carrying a password.
func fileSecretCheck(f *flag.Flag, text string) error {
	if u, err := url.Parse(text); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			env := envName(f.Name)
			if f.Name == "database-url" {
				return fmt.Errorf("the URL holds a password, and secrets are never read from the configuration file: set $%s instead, or leave the password out and set $PGPASSWORD", env)
			}
			return fmt.Errorf("the URL holds a password, and secrets are never read from the configuration file: set $%s instead", env)
		}
	}
	return nil
}

// secretWords mark a key, or an environment variable, that holds a secret.
var secretWords = []string{"secret", "password", "passwd", "token", "key", "credential"}

// secretKey reports whether an unknown file key names a secret, and which
// environment variable holds that secret instead.
func secretKey(key string) (env string, ok bool) {
	k := strings.ToLower(strings.ReplaceAll(key, "_", "-"))
	if !slices.ContainsFunc(secretWords, func(w string) bool { return strings.Contains(k, w) }) {
		return "", false
	}
	switch {
	case k == "client-secret" || strings.HasPrefix(k, "oidc-"):
		return "$" + oidcSecretEnv, true
	case strings.Contains(k, "vault") || k == "key":
		return "$" + seal.KeyEnv, true
	case strings.Contains(k, "database") || strings.Contains(k, "postgres") || strings.Contains(k, "password"):
		return "$" + envName("database-url") + " (the whole URL) or $PGPASSWORD", true
	case strings.HasSuffix(k, "-client-secret"):
		return "$" + provider.EnvPrefix(strings.TrimSuffix(k, "-client-secret")) + "CLIENT_SECRET", true
	}
	return "ALTERHOST_<PROVIDER>_CLIENT_SECRET (upstream providers), $" + oidcSecretEnv + " or $" + seal.KeyEnv, true
}

// secretEnv reports whether an environment variable's name says it holds a
// secret, so its value is never printed.
func secretEnv(name string) bool {
	n := strings.ToLower(name)
	return slices.ContainsFunc(secretWords, func(w string) bool { return strings.Contains(n, w) })
}

// nearest returns the candidate closest to s: among those holding every
// word of s ("oidc-domains" in "oidc-allowed-domains") if any, by edit
// distance.
func nearest(s string, candidates []string) string {
	s = strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	words := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '.' })
	holdsAll := func(c string) bool {
		return len(words) > 1 && !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(c, w) })
	}
	pool := slices.DeleteFunc(slices.Clone(candidates), func(c string) bool { return !holdsAll(c) })
	if len(pool) == 0 {
		pool = candidates
	}
	best, bestD := "", -1
	for _, c := range pool {
		if d := editDistance(s, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

const configCheckUsage = `usage: alterhost config check [--config FILE] [serve flags...]

Reads the configuration exactly as serving would (command line, then
$ALTERHOST_<FLAG> variables, then the TOML file, then defaults), checks
what can be checked without starting, prints the effective settings and
where each came from, and exits non-zero listing every problem found.
Secrets are never printed.

Flags:
`

// runConfigCheck is `alterhost config check`: fs is a freshly built serve
// flag set, so the check reads exactly the flags serve reads.
func runConfigCheck(args []string, fs *flag.FlagSet, getenv func(string) string, stdout, stderr io.Writer) error {
	// Parse errors are listed with the other problems, not printed with
	// the usage.
	fs.SetOutput(io.Discard)
	var problems configProblems
	layers, err := applyConfig(fs, args, getenv)
	if ps, ok := err.(configProblems); ok {
		problems = append(problems, ps...)
	} else if err != nil {
		problems = append(problems, err.Error())
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, configCheckUsage)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return err
	} else if err != nil {
		problems = append(problems, "command line: "+err.Error())
	} else if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("command line: unexpected argument %q", fs.Arg(0)))
	}
	summary, ps := checkServeConfig(fs)
	problems = append(problems, ps...)
	printConfig(stdout, fs, layers, getenv)
	if summary != "" {
		fmt.Fprintln(stdout, "\n"+summary)
	}
	if len(problems) > 0 {
		return problems
	}
	fmt.Fprintln(stdout, "\nconfiguration OK")
	return nil
}

// printConfig prints every setting with its value and origin, secrets
// masked, and whether each environment-only secret is set.
func printConfig(w io.Writer, fs *flag.FlagSet, layers *configLayers, getenv func(string) string) {
	if layers.File != "" {
		fmt.Fprintf(w, "configuration file: %s\n", layers.File)
	} else {
		fmt.Fprintln(w, "configuration file: none")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE")
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(actionFlags, f.Name) {
			return
		}
		o := layers.origin(f.Name)
		src := string(o.Source)
		if o.Where != "" && o.Source != fromFlag {
			src += " " + o.Where
		}
		value := shownValue(f, o)
		if o.Invalid {
			value = "(invalid)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, value, src)
	})
	tw.Flush()
	fmt.Fprintln(w, "\nsecrets (environment only, never shown):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, env := range envSecrets {
		state := "not set"
		if getenv(env) != "" {
			state = "set"
		}
		fmt.Fprintf(tw, "  $%s\t%s\n", env, state)
	}
	tw.Flush()
}

// shownValue is a setting's value as config check prints it: a string from
// a variable named like a secret is masked, and so is the password of any
// URL. Booleans, durations and numbers cannot hold a secret.
func shownValue(f *flag.Flag, o origin) string {
	v := f.Value.String()
	k := kindOf(f)
	if o.Source == fromEnv && (k == kindString || k == kindOther) && secretEnv(o.Where) && v != "" {
		return "********"
	}
	v = redactURL(v)
	if v == "" {
		return `""`
	}
	return v
}

// redactURL masks the password of a URL, leaving anything else as it is.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return s
}

// checkServeConfig checks what can be checked without starting: addresses,
// URLs, the plugins folder and every plugin's manifest and settings, the
// providers file and the database URL. It looks flags up by name, and skips
// a check whose flag is gone. summary counts the plugins and tools found.
func checkServeConfig(fs *flag.FlagSet) (summary string, problems configProblems) {
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	str := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	on := func(name string) bool { v, _ := strconv.ParseBool(str(name)); return v }

	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok && d < 0 {
				add("--%s: %s is negative", f.Name, d)
			}
		}
	})
	authMode := !on("stdio") && !on("no-auth")
	if addr := str("addr"); addr != "" {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			add("--addr: %v", err)
		} else if _, err := net.LookupPort("tcp", port); err != nil {
			add("--addr: port %q: %v", port, err)
		} else if !authMode {
			if err := host.CheckLoopback(addr); err != nil {
				add("--addr: %v", err)
			}
		}
	}
	for _, name := range []string{"base-url", "trust-issuer", "trust-jwks", "oidc-issuer"} {
		if err := checkAbsoluteURL(str(name)); err != nil {
			add("--%s: %v", name, err)
		}
	}
	if str("trust-issuer") == "" && str("trust-jwks") != "" {
		add("--trust-jwks needs --trust-issuer")
	}
	if str("trust-issuer") != "" && !authMode {
		add("--trust-issuer guards HTTP MCP with tokens: it does not go with --no-auth or --stdio")
	}
	if fs.Lookup("oidc-issuer") != nil {
		oidc, err := oidcConfig(str("oidc-issuer"), str("oidc-client-id"), str("oidc-allowed-domains"), str("oidc-allowed-people"))
		if err != nil {
			add("%v", err)
		} else if oidc != nil && !authMode {
			add("--oidc-issuer signs people in to HTTP MCP: it does not go with --no-auth or --stdio")
		}
	}
	if fs.Lookup("log-level") != nil {
		var level slog.Level
		if err := level.UnmarshalText([]byte(str("log-level"))); err != nil {
			add("--log-level: %v", err)
		}
	}
	if fs.Lookup("data-dir") != nil {
		if dir := str("data-dir"); dir == "" {
			add("--data-dir is required: it holds the vault key and database")
		} else if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			add("--data-dir %s: not a directory", dir)
		}
	}
	if err := checkDatabaseURL(str("database-url")); err != nil {
		add("--database-url: %v", err)
	}
	if fs.Lookup("providers") != nil {
		if _, err := provider.Load(str("providers")); err != nil {
			add("--providers: %v", err)
		}
	}
	if fs.Lookup("plugins") != nil {
		var ps configProblems
		summary, ps = checkPlugins(str("plugins"))
		problems = append(problems, ps...)
	}
	return summary, problems
}

// checkAbsoluteURL accepts "" (unset) or an absolute http(s) URL.
func checkAbsoluteURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, which may hold a password
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%s is not an absolute http or https URL", redactURL(s))
	}
	return nil
}

// checkDatabaseURL parses a --database-url as serving would open it,
// without connecting, and without repeating its password.
func checkDatabaseURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		if _, err := pgconn.ParseConfig(s); err != nil {
			msg := err.Error()
			if pw, ok := u.User.Password(); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
			return errors.New(msg)
		}
	case "sqlite":
	default:
		return fmt.Errorf("scheme %q is not supported; use postgres://... or sqlite:PATH", u.Scheme)
	}
	return nil
}

// checkPlugins reads every plugin's manifest and settings as loading
// would, without compiling or running any of them.
func checkPlugins(dir string) (summary string, problems configProblems) {
	if dir == "" {
		return "", configProblems{"--plugins DIR is required"}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", configProblems{fmt.Sprintf("--plugins: %v", err)}
	}
	pluginFile := map[string]string{}
	toolFile := map[string]string{}
	tools := 0
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		spec, err := plugin.Read(path)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if _, err := spec.Settings(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: settings: %v", path, err))
		}
		if first, dup := pluginFile[spec.Manifest.Name]; dup {
			problems = append(problems, fmt.Sprintf("%s: plugin name %q is already used by %s", path, spec.Manifest.Name, first))
			continue
		}
		pluginFile[spec.Manifest.Name] = path
		for _, t := range spec.Manifest.Tools {
			if first, dup := toolFile[t.Name]; dup {
				problems = append(problems, fmt.Sprintf("%s: tool %q is already served by %s", path, t.Name, first))
				continue
			}
			toolFile[t.Name] = path
			tools++
		}
	}
	return fmt.Sprintf("plugins: %d readable in %s, serving %d tools", len(pluginFile), dir, tools), problems
}
