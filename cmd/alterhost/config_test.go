package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// testServeFlags builds serve's own flag set.
func testServeFlags() *flag.FlagSet {
	fs, _ := newServeFlags(io.Discard)
	return fs
}

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load runs the layers as serve does: applyConfig, then fs.Parse.
func load(t *testing.T, fs *flag.FlagSet, args []string, env map[string]string) (*configLayers, error) {
	t.Helper()
	layers, err := applyConfig(fs, args, envFunc(env))
	if perr := fs.Parse(args); perr != nil {
		t.Fatalf("parse %q: %v", args, perr)
	}
	return layers, err
}

func TestConfigPrecedence(t *testing.T) {
	type layer struct{ file, env, flag string }
	flags := []struct {
		name string
		def  string
		vals layer  // the value each layer gives
		toml string // the file's spelling of vals.file
	}{
		{"base-url", "", layer{"https://file.example", "https://env.example", "https://flag.example"}, `"https://file.example"`},
		{"access-token-ttl", "1h0m0s", layer{"2h0m0s", "3h0m0s", "4h0m0s"}, `"2h"`},
		{"oidc-allowed-domains", "", layer{"a.com,b.org", "env.com", "flag.com"}, `["a.com", "b.org"]`},
	}
	for _, fl := range flags {
		for mask := range 8 {
			inFile, inEnv, inFlag := mask&1 != 0, mask&2 != 0, mask&4 != 0
			t.Run(fmt.Sprintf("%s/file=%v,env=%v,flag=%v", fl.name, inFile, inEnv, inFlag), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				var args []string
				env := map[string]string{}
				want, wantSrc := fl.def, fromDefault
				if inFile {
					env[envName(configFlag)] = writeFile(t, dir, "a.toml", "# settings\n\n"+fl.name+" = "+fl.toml+"\n")
					want, wantSrc = fl.vals.file, fromFile
				}
				if inEnv {
					env[envName(fl.name)] = fl.vals.env
					want, wantSrc = fl.vals.env, fromEnv
				}
				if inFlag {
					args = []string{"--" + fl.name, fl.vals.flag}
					want, wantSrc = fl.vals.flag, fromFlag
				}
				fs := testServeFlags()
				layers, err := load(t, fs, args, env)
				if err != nil {
					t.Fatal(err)
				}
				if got := fs.Lookup(fl.name).Value.String(); got != want {
					t.Errorf("value %q, want %q", got, want)
				}
				o := layers.origin(fl.name)
				if o.Source != wantSrc {
					t.Errorf("source %s, want %s", o.Source, wantSrc)
				}
				if wantSrc == fromFile && !strings.HasSuffix(o.Where, "a.toml:3") {
					t.Errorf("file origin %q, want FILE:3", o.Where)
				}
			})
		}
	}
}

// TestConfigBoolPrecedence: a later layer can also turn a boolean off.
func TestConfigBoolPrecedence(t *testing.T) {
	tests := []struct {
		file, env string
		args      []string
		want      string
		src       configSource
	}{
		{"", "", nil, "false", fromDefault},
		{"true", "", nil, "true", fromFile},
		{"true", "false", nil, "false", fromEnv},
		{"", "1", nil, "true", fromEnv},
		{"true", "true", []string{"--no-watch=false"}, "false", fromFlag},
		{"false", "false", []string{"--no-watch"}, "true", fromFlag},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("file=%s,env=%s,args=%v", tc.file, tc.env, tc.args), func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"ALTERHOST_NO_WATCH": tc.env}
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, dir, "a.toml", "no-watch = "+tc.file+"\n")}, args...)
			}
			fs := testServeFlags()
			layers, err := load(t, fs, args, env)
			if err != nil {
				t.Fatal(err)
			}
			if got := fs.Lookup("no-watch").Value.String(); got != tc.want {
				t.Errorf("no-watch = %s, want %s", got, tc.want)
			}
			if got := layers.origin("no-watch").Source; got != tc.src {
				t.Errorf("source %s, want %s", got, tc.src)
			}
		})
	}
}

// sampleValue returns a value for f unlike its default, as TOML and as the
// flag's text.
func sampleValue(t *testing.T, f *flag.Flag) (tomlValue, text string) {
	switch kindOf(f) {
	case kindString:
		if commaListFlag(f) {
			return `["x.example", "y.example"]`, "x.example,y.example"
		}
		return `"sample-` + f.Name + `"`, "sample-" + f.Name
	case kindBool:
		if f.DefValue == "true" {
			return "false", "false"
		}
		return "true", "true"
	case kindDuration:
		return `"17m"`, "17m0s"
	case kindInt, kindUint:
		return "17", "17"
	case kindFloat:
		return "1.5", "1.5"
	case kindOther:
		if f.Name == "isolation" {
			return `"pooled"`, "pooled"
		}
	}
	t.Fatalf("--%s: no sample for its type", f.Name)
	return "", ""
}

// TestConfigEveryFlag sets every serve setting from the file, then every
// one from the environment.
func TestConfigEveryFlag(t *testing.T) {
	var file strings.Builder
	want := map[string]string{}
	line := map[string]int{}
	envs := map[string]string{}
	n := 0
	testServeFlags().VisitAll(func(f *flag.Flag) {
		if !setting(f.Name, nil) {
			return
		}
		tv, text := sampleValue(t, f)
		n++
		fmt.Fprintf(&file, "%s = %s\n", f.Name, tv)
		want[f.Name], line[f.Name] = text, n
		envs[envName(f.Name)] = text
	})
	if len(want) < 15 {
		t.Fatalf("only %d settings", len(want))
	}
	path := writeFile(t, t.TempDir(), "all.toml", file.String())

	for _, layer := range []configSource{fromFile, fromEnv} {
		t.Run(string(layer), func(t *testing.T) {
			fs := testServeFlags()
			env := map[string]string{envName(configFlag): path}
			if layer == fromEnv {
				env = envs
			}
			layers, err := load(t, fs, nil, env)
			if err != nil {
				t.Fatal(err)
			}
			for name, text := range want {
				if got := fs.Lookup(name).Value.String(); got != text {
					t.Errorf("%s = %q, want %q", name, got, text)
				}
				o := layers.origin(name)
				wantWhere := fmt.Sprintf("%s:%d", path, line[name])
				if layer == fromEnv {
					wantWhere = "$" + envName(name)
				}
				if o.Source != layer || o.Where != wantWhere {
					t.Errorf("%s: origin %+v, want %s %s", name, o, layer, wantWhere)
				}
			}
		})
	}
}

func TestConfigFileProblems(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string // each in the error
	}{
		{"string for bool", "\n\nno-watch = \"yes\"\n", []string{"a.toml:3: no-watch: want true or false, got a string"}},
		{"int for duration", "access-token-ttl = 3600\n", []string{"a.toml:1: access-token-ttl: want a duration string", "got an integer"}},
		{"bad duration", "access-token-ttl = \"an hour\"\n", []string{"a.toml:1: access-token-ttl: want a duration", `invalid duration "an hour"`}},
		{"unknown isolation", "isolation = \"shared\"\n", []string{"a.toml:1: isolation:", `unknown isolation "shared": want person, pooled or call`}},
		{"bool for string", "base-url = true\n", []string{"a.toml:1: base-url: want a string, got a boolean"}},
		{"array for plain string", "plugins = [\"a\", \"b\"]\n", []string{"a.toml:1: plugins: want a string, got an array"}},
		{"numbers in list", "oidc-allowed-people = [1, 2]\n", []string{"want an array of strings, got an array holding an integer"}},
		{"comma in list item", "oidc-allowed-domains = [\"a.com,b.org\"]\n", []string{"holds a comma"}},
		{"unknown key", "plugins = \"p\"\nbase_url = \"https://x\"\n", []string{`a.toml:2: unknown key "base_url" (did you mean base-url?)`}},
		{"misspelt key", "# c\nno-wach = true\n", []string{`a.toml:2: unknown key "no-wach" (did you mean no-watch?)`}},
		{"dotted key", "oidc.issuer = \"https://id\"\n", []string{"a.toml:1: oidc.issuer: keys are flag names at the top level", "did you mean oidc-issuer?"}},
		{"table", "addr = \":1\"\n[oidc]\nissuer = \"x\"\n", []string{"a.toml:2: [oidc]: the file has no tables"}},
		{"config in config", "config = \"other.toml\"\n", []string{"a.toml:1: config: a configuration file cannot name another"}},
		{"action", "version = true\n", []string{"a.toml:1: version: --version is an action"}},
		{"syntax", "addr = \n", []string{"a.toml:1:"}},
		{"duplicate", "addr = \"a:1\"\naddr = \"b:1\"\n", []string{"a.toml:2:"}},
		{"several at once", "no-watch = 1\nbase-uri = \"x\"\naccess-token-ttl = \"1 h\"\n",
			[]string{"3 configuration problems", "a.toml:1: no-watch", `a.toml:2: unknown key "base-uri"`, "a.toml:3: access-token-ttl"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, t.TempDir(), "a.toml", tc.file)
			_, err := applyConfig(testServeFlags(), []string{"--config", path}, envFunc(nil))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigSecretKeysRefused(t *testing.T) {
	tests := []struct{ key, value, env string }{
		{"client-secret", `"s3cr3t"`, "$ALTERHOST_OIDC_CLIENT_SECRET"},
		{"oidc-client-secret", `"s3cr3t"`, "$ALTERHOST_OIDC_CLIENT_SECRET"},
		{"oidc_client_secret", `"s3cr3t"`, "$ALTERHOST_OIDC_CLIENT_SECRET"},
		{"vault-key", `"s3cr3t"`, "$ALTERHOST_VAULT_KEY"},
		{"github-client-secret", `"s3cr3t"`, "$ALTERHOST_GITHUB_CLIENT_SECRET"},
		{"database-password", `"s3cr3t"`, "$ALTERHOST_DATABASE_URL"},
		{"api-token", `"s3cr3t"`, "ALTERHOST_<PROVIDER>_CLIENT_SECRET"},
		{"database-url", `"postgres://u:s3cr3t@db.example/alterhost"`, "$ALTERHOST_DATABASE_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, t.TempDir(), "a.toml", "\n"+tc.key+" = "+tc.value+"\n")
			_, err := applyConfig(testServeFlags(), []string{"--config", path}, envFunc(nil))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range []string{"a.toml:2: " + tc.key + ":", "never read from the configuration file", tc.env} {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q: %s", w, msg)
				}
			}
			if strings.Contains(msg, "s3cr3t") {
				t.Errorf("error repeats the secret: %s", msg)
			}
		})
	}
}

func TestConfigEnvProblems(t *testing.T) {
	fs := testServeFlags()
	_, err := applyConfig(fs, nil, envFunc(map[string]string{"ALTERHOST_NO_WATCH": "maybe", "ALTERHOST_ACCESS_TOKEN_TTL": "soon"}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{`$ALTERHOST_NO_WATCH: --no-watch: want true or false, got "maybe"`,
		`$ALTERHOST_ACCESS_TOKEN_TTL: --access-token-ttl: want a duration such as "1h" or "90s", got "soon"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// TestConfigActionsSkipConfig: --version and -h work whatever the file holds.
func TestConfigActionsSkipConfig(t *testing.T) {
	path := writeFile(t, t.TempDir(), "bad.toml", "nonsense = 1\n")
	for _, args := range [][]string{{"--version"}, {"-h"}, {"--config", path, "--help"}} {
		if _, err := applyConfig(testServeFlags(), args, envFunc(map[string]string{envName(configFlag): path})); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
	if _, err := applyConfig(testServeFlags(), []string{"--config", ""}, envFunc(map[string]string{envName(configFlag): path})); err != nil {
		t.Errorf("--config '' should read no file: %v", err)
	}
}

// pluginsDir returns a folder holding the repository's text plugin.
func pluginsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	wasm, err := os.ReadFile("../../plugins/text.wasm")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "text.wasm", string(wasm))
	return dir
}

func configCheck(t *testing.T, fs *flag.FlagSet, args []string, env map[string]string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := runConfigCheck(args, fs, envFunc(env), &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

// settingRow finds a setting's row in config check's table.
func settingRow(t *testing.T, out, name string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return strings.Join(f, " ")
		}
	}
	t.Fatalf("no row for %s in:\n%s", name, out)
	return ""
}

func TestConfigCheckSourcesAndSecrets(t *testing.T) {
	dir := t.TempDir()
	plugins := pluginsDir(t)
	path := writeFile(t, dir, "alterhost.toml", fmt.Sprintf("plugins = %q\ndata-dir = %q\naddr = \"127.0.0.1:9000\"\n", plugins, dir))
	fs := testServeFlags()
	// A string setting named like a secret: its variable's value is masked.
	fs.String("upstream-api-token", "", "a token")
	env := map[string]string{
		"ALTERHOST_CONFIG":             path,
		"ALTERHOST_DATABASE_URL":       "postgres://alter:hunter2@db.example:5432/alterhost?sslmode=require",
		"ALTERHOST_UPSTREAM_API_TOKEN": "tok-hunter3",
		"ALTERHOST_OIDC_CLIENT_SECRET": "hunter4",
		"ALTERHOST_LOG_LEVEL":          "debug",
	}
	out, err := configCheck(t, fs, []string{"--addr", "127.0.0.1:9001", "--no-auth"}, env)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, secret := range []string{"hunter2", "hunter3", "hunter4"} {
		if strings.Contains(out, secret) {
			t.Errorf("output shows secret %q:\n%s", secret, out)
		}
	}
	secrets := map[string]string{"$ALTERHOST_OIDC_CLIENT_SECRET": "set", "$ALTERHOST_VAULT_KEY": "not set"}
	for name, want := range secrets {
		if got := settingRow(t, out, name); got != name+" "+want {
			t.Errorf("row %q, want %q", got, name+" "+want)
		}
	}
	rows := map[string]string{
		"plugins":            plugins + " file " + path + ":1",
		"data-dir":           dir + " file " + path + ":2",
		"addr":               "127.0.0.1:9001 flag",
		"no-auth":            "true flag",
		"log-level":          "debug env $ALTERHOST_LOG_LEVEL",
		"database-url":       "postgres://alter:xxxxx@db.example:5432/alterhost?sslmode=require env $ALTERHOST_DATABASE_URL",
		"upstream-api-token": "******** env $ALTERHOST_UPSTREAM_API_TOKEN",
		"access-token-ttl":   "1h0m0s default",
		"config":             path + " env $ALTERHOST_CONFIG",
	}
	for name, want := range rows {
		if got := settingRow(t, out, name); got != name+" "+want {
			t.Errorf("row %q, want %q", got, name+" "+want)
		}
	}
	for _, w := range []string{"configuration file: " + path, "plugins: 1 readable", "configuration OK"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestConfigCheckListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	broken := t.TempDir()
	// A module with no manifest, and one whose sidecar manifest is not JSON.
	empty := "\x00asm\x01\x00\x00\x00"
	writeFile(t, broken, "bare.wasm", empty)
	writeFile(t, broken, "sidecar.wasm", empty)
	writeFile(t, broken, "sidecar.alter.json", "{")
	writeFile(t, broken, "junk.wasm", "not wasm")
	good := pluginsDir(t)

	tests := []struct {
		name string
		file string
		args []string
		env  map[string]string
		want []string
	}{
		{
			name: "missing folder, bad duration, bad URL and address",
			file: "plugins = \"" + filepath.Join(dir, "nowhere") + "\"\naccess-token-ttl = \"1 hour\"\n",
			args: []string{"--base-url", "/relative", "--addr", "127.0.0.1"},
			want: []string{"--plugins: open " + filepath.Join(dir, "nowhere"), "alterhost.toml:2: access-token-ttl", "--base-url: /relative is not an absolute",
				"--addr: address 127.0.0.1: missing port"},
		},
		{
			name: "broken manifests",
			file: "plugins = \"" + broken + "\"\n",
			env:  map[string]string{"ALTERHOST_ACCESS_TOKEN_TTL": "-5m"},
			want: []string{"bare.wasm: no manifest", "sidecar.alter.json", "junk.wasm: not a valid WebAssembly module", "--access-token-ttl: -5m0s is negative"},
		},
		{
			name: "database, providers, log level, unknown flag",
			file: "plugins = \"" + good + "\"\nlog-level = \"loud\"\n",
			args: []string{"--database-url", "mysql://db/x", "--providers", filepath.Join(dir, "none.json"), "--frobnicate"},
			want: []string{"--database-url: scheme \"mysql\" is not supported", "--providers: reading the provider configuration",
				"--log-level:", "command line: flag provided but not defined: -frobnicate"},
		},
		{
			name: "no auth on every interface, OIDC without client",
			file: "plugins = \"" + good + "\"\nno-auth = true\naddr = \":8080\"\noidc-issuer = \"https://id.example\"\n",
			want: []string{"--addr: --no-auth serves without authentication", "--oidc-issuer needs --oidc-client-id"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, t.TempDir(), "alterhost.toml", tc.file+"data-dir = \""+dir+"\"\n")
			args := append([]string{"--config", path}, tc.args...)
			out, err := configCheck(t, testServeFlags(), args, tc.env)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("%d configuration problems", len(tc.want))) {
				t.Errorf("want %d problems, got:\n%s", len(tc.want), msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(out, "configuration OK") {
				t.Errorf("output says OK:\n%s", out)
			}
			if !strings.Contains(out, "SETTING") {
				t.Errorf("no settings printed:\n%s", out)
			}
			if strings.Contains(tc.file, "1 hour") {
				want := "access-token-ttl (invalid) file " + path + ":2"
				if got := settingRow(t, out, "access-token-ttl"); got != want {
					t.Errorf("row %q, want %q", got, want)
				}
			}
		})
	}
}

func TestConfigCheckHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runConfigCheck([]string{"-h"}, testServeFlags(), envFunc(nil), &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "usage: alterhost config check") ||
		!strings.Contains(stderr.String(), "-config FILE") {
		t.Errorf("err %v, stderr:\n%s", err, stderr.String())
	}
}

func TestConfigNearest(t *testing.T) {
	names := []string{"base-url", "addr", "no-watch", "oidc-issuer", "oidc-allowed-domains"}
	for in, want := range map[string]string{"base_url": "base-url", "BASE-URL": "base-url", "adr": "addr",
		"nowatch": "no-watch", "oidc-domains": "oidc-allowed-domains"} {
		if got := nearest(in, names); got != want {
			t.Errorf("nearest(%q) = %q, want %q", in, got, want)
		}
	}
	if !slices.Contains(actionFlags, "version") {
		t.Error("version is no action flag")
	}
}

// TestConfigExampleFile keeps docs/alterhost.example.toml whole: every
// setting is in it, what it sets applies cleanly, and so does every
// commented-out example once uncommented.
func TestConfigExampleFile(t *testing.T) {
	raw, err := os.ReadFile("../../docs/alterhost.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	testServeFlags().VisitAll(func(f *flag.Flag) {
		if setting(f.Name, nil) && !regexp.MustCompile(`(?m)^(# )?`+regexp.QuoteMeta(f.Name)+` = `).Match(raw) {
			t.Errorf("docs/alterhost.example.toml lacks %s", f.Name)
		}
	})
	uncommented := regexp.MustCompile(`(?m)^# ([a-z-]+ = )`).ReplaceAll(raw, []byte("$1"))
	for name, content := range map[string][]byte{"as shipped": raw, "uncommented": uncommented} {
		path := writeFile(t, t.TempDir(), "example.toml", string(content))
		if _, err := applyConfig(testServeFlags(), []string{"--config", path}, envFunc(nil)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

var (
	configBinOnce sync.Once
	configBin     string
	configBinErr  error
)

// alterhostBinary builds the command alone (not the example plugins, as
// build does), once.
func alterhostBinary(t *testing.T) string {
	t.Helper()
	configBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alterhost-config-")
		if err != nil {
			configBinErr = err
			return
		}
		configBin = filepath.Join(dir, "alterhost")
		if out, err := exec.Command("go", "build", "-o", configBin, ".").CombinedOutput(); err != nil {
			configBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if configBinErr != nil {
		t.Fatal(configBinErr)
	}
	return configBin
}

// TestConfigBinary runs the real command: serve refuses a bad file before
// starting, and config check prints sources without secrets.
func TestConfigBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := alterhostBinary(t)
	if out, _ := exec.Command(bin, "config", "check", "-h").CombinedOutput(); !strings.Contains(string(out), "usage: alterhost config check") {
		t.Skip("main.go does not dispatch `alterhost config check` yet")
	}
	dir := t.TempDir()
	plugins := pluginsDir(t)
	good := writeFile(t, dir, "good.toml", fmt.Sprintf("plugins = %q\ndata-dir = %q\nno-auth = true\n", plugins, dir))
	bad := writeFile(t, dir, "bad.toml", fmt.Sprintf("plugins = %q\nbase_url = \"https://x\"\nclient-secret = \"hunter2\"\n", plugins))
	env := append(os.Environ(), "ALTERHOST_OIDC_CLIENT_SECRET=hunter4",
		"ALTERHOST_DATABASE_URL=postgres://alter:hunter5@db.example/alterhost")

	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("config", "check", "--config", good, "--log-level", "warn")
	if code != 0 {
		t.Fatalf("config check: exit %d\n%s", code, out)
	}
	for _, w := range []string{"no-auth", "file " + good + ":3", "warn", "flag", "postgres://alter:xxxxx@db.example/alterhost", "configuration OK"} {
		if !strings.Contains(out, w) {
			t.Errorf("config check output lacks %q:\n%s", w, out)
		}
	}
	out, code = run("config", "check", "--config", bad)
	if code == 0 || !strings.Contains(out, "bad.toml:2: unknown key \"base_url\" (did you mean base-url?)") ||
		!strings.Contains(out, "bad.toml:3: client-secret: secrets are never read") {
		t.Errorf("config check of a bad file: exit %d\n%s", code, out)
	}
	// serve stops at the file, before it starts anything.
	out, code = run("--config", bad)
	if code != 1 || !strings.Contains(out, "did you mean base-url?") {
		t.Errorf("serve with a bad file: exit %d\n%s", code, out)
	}
	for _, secret := range []string{"hunter2", "hunter4", "hunter5"} {
		if strings.Contains(out, secret) {
			t.Errorf("output shows %q", secret)
		}
	}
}

// TestAdminConfig checks that the commands beside serve read the settings
// they share with serve from the same file and environment, pass over
// serve's others, and take their own flags from the command line only.
func TestAdminConfig(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "state")
	path := filepath.Join(dir, "a.toml")
	file := fmt.Sprintf("plugins = \"/srv/plugins\"\nno-watch = true\ndata-dir = %q\nisolation = \"call\"\n", dataDir)
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"audit", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("audit: exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "TIME") {
		t.Errorf("audit printed %q", stdout.String())
	}
	if _, err := os.Stat(dataDir); err != nil {
		t.Errorf("audit did not open the file's data-dir: %v", err)
	}

	// signin-link finds the alterhost by the file's addr, as serve would
	// name itself without a base-url.
	if err := os.WriteFile(path, []byte(fmt.Sprintf("addr = \"127.0.0.1:9\"\ndata-dir = %q\n", dataDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"signin-link", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("signin-link: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "http://127.0.0.1:9/") {
		t.Errorf("signin-link printed %q; want a link to the file's addr", stdout.String())
	}

	adminFlags := func() *flag.FlagSet {
		fs := flag.NewFlagSet("alterhost audit", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		addStoreFlags(fs)
		fs.Int("limit", 50, "rows")
		return fs
	}
	fs := adminFlags()
	if _, err := applyAdminConfig(fs, nil, envFunc(map[string]string{
		"ALTERHOST_CONFIG": path, "ALTERHOST_DATABASE_URL": "postgres://db/x", "ALTERHOST_LIMIT": "3"})); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"data-dir": dataDir, "database-url": "postgres://db/x", "limit": "50"} {
		if got := fs.Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %q; want %q", name, got, want)
		}
	}

	for _, tc := range []struct{ file, want string }{
		{"limit = 3\n", `a.toml:1: unknown key "limit"`}, // the command's own flag: not a setting
		{"data-dirr = \"x\"\n", `unknown key "data-dirr" (did you mean data-dir?)`},
		{"data-dir = 3\n", "a.toml:1: data-dir: want a string, got an integer"},
	} {
		if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := applyAdminConfig(adminFlags(), []string{"--config", path}, envFunc(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v; want %q", tc.file, err, tc.want)
		}
	}
}
