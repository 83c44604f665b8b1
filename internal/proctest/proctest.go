// Package proctest runs a test's helper code in child processes, the way
// Go's own os/exec tests do: the test binary runs itself again with
// -test.run=^TestHelperProcess$ and RoleEnv naming what the child should
// do. Children talk to the parent with lines on stdout (Printf, read by
// Child.Expect) and stdin (Child.Send, read by ReadLine).
//
// It also gives such tests a database both processes can share: a fresh
// PostgreSQL schema (Postgres) and SQLite's integrity check
// (IntegrityCheck).
//
// Every wait is bounded; nothing here waits forever.
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alterhost/alterhost/internal/pgtest"

	_ "modernc.org/sqlite" // the "sqlite" driver, for IntegrityCheck
)

// RoleEnv names the role a child process runs; it is unset in the parent.
const RoleEnv = "ALTERHOST_PROCTEST_ROLE"

// PostgresEnv holds the URL of a PostgreSQL server for tests, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "ALTERHOST_TEST_POSTGRES_URL"

// Timeout bounds every wait for a child: its lines, its exit.
const Timeout = 15 * time.Second

// prefix marks the protocol lines on a child's stdout, which also carries
// the testing package's own output.
const prefix = "proctest: "

// Role returns the role this process was started in, or "" in the parent.
func Role() string { return os.Getenv(RoleEnv) }

var stdoutMu sync.Mutex

// Printf writes one protocol line to the parent (format without newline).
func Printf(format string, args ...any) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Fprintf(os.Stdout, prefix+format+"\n", args...)
}

var stdin = bufio.NewReader(os.Stdin)

// ReadLine reads one line the parent sent; io.EOF when the parent closed
// stdin or died.
func ReadLine() (string, error) {
	line, err := stdin.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// WaitStdinClosed blocks until the parent closes stdin (or dies).
func WaitStdinClosed() { io.Copy(io.Discard, stdin) }

// Child is a running child process.
type Child struct {
	Cmd   *exec.Cmd
	role  string
	stdin io.WriteCloser
	lines chan string
	out   Buffer
	done  chan struct{}
	err   error // set before done is closed
}

// Start runs the test binary's TestHelperProcess in role, with env added
// to this process's environment. The child is killed and waited for when
// t ends, if it has not exited by then.
func Start(t testing.TB, role string, env ...string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v",
		"-test.timeout="+(4*Timeout).String()) // a child left behind stops by itself
	// Under -race a child would sleep a second before exiting
	// (atexit_sleep_ms); it has no goroutines left to report on by then.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+role, "GORACE="+gorace), env...)
	c := &Child{Cmd: cmd, role: role, lines: make(chan string, 4096), done: make(chan struct{})}
	cmd.Stderr = &c.out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s child: %v", role, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			c.out.Write([]byte(line + "\n"))
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				c.lines <- rest
			}
		}
		io.Copy(io.Discard, stdout)
		c.err = cmd.Wait() // after all reads from the pipe, as exec requires
		close(c.lines)
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
			return
		default:
		}
		cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(Timeout):
			t.Errorf("%s child (pid %d) did not exit after SIGKILL", role, cmd.Process.Pid)
		}
	})
	return c
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Done is closed when the child has exited and been waited for.
func (c *Child) Done() <-chan struct{} { return c.done }

// Output is everything the child wrote so far, for failure messages.
func (c *Child) Output() string { return c.out.String() }

// Send writes one line to the child's stdin.
func (c *Child) Send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		t.Fatalf("send to %s child: %v\n%s", c.role, err, c.Output())
	}
}

// CloseStdin tells the child to finish (see WaitStdinClosed).
func (c *Child) CloseStdin() { c.stdin.Close() }

// Expect returns the rest of the child's next protocol line, which must
// start with word and a space. It fails t if the line is another, if the
// child exits first, or after Timeout.
func (c *Child) Expect(t testing.TB, word string) string {
	t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.done
			t.Fatalf("%s child exited (%v) before saying %q:\n%s", c.role, c.err, word, c.Output())
		}
		rest, found := strings.CutPrefix(line, word+" ")
		if !found && line != word {
			t.Fatalf("%s child said %q, want %q...:\n%s", c.role, line, word, c.Output())
		}
		return rest
	case <-time.After(Timeout):
		t.Fatalf("%s child did not say %q within %v:\n%s", c.role, word, Timeout, c.Output())
	}
	return ""
}

// Wait waits for the child to exit by itself, at most Timeout, and returns
// how it exited (nil for status 0).
func (c *Child) Wait(t testing.TB) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(Timeout):
		t.Fatalf("%s child did not exit within %v:\n%s", c.role, Timeout, c.Output())
	}
	return nil
}

// Kill SIGKILLs the child and waits for it, at most Timeout.
func (c *Child) Kill(t testing.TB) {
	t.Helper()
	if err := c.Cmd.Process.Kill(); err != nil {
		select {
		case <-c.done: // it had already exited
			t.Fatalf("%s child exited before it could be killed (%v):\n%s", c.role, c.err, c.Output())
		default:
		}
		t.Fatalf("kill %s child: %v", c.role, err)
	}
	select {
	case <-c.done:
	case <-time.After(Timeout):
		t.Fatalf("%s child (pid %d) did not exit within %v of SIGKILL", c.role, c.Pid(), Timeout)
	}
	if ws, ok := c.Cmd.ProcessState.Sys().(interface{ Signaled() bool }); ok && !ws.Signaled() {
		t.Fatalf("%s child exited (%v) before SIGKILL reached it:\n%s", c.role, c.err, c.Output())
	}
}

// Buffer collects output written from several goroutines, such as a
// child's stderr or a server's log, for a test to read meanwhile.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// DB is a database the processes of a test share.
type DB struct {
	// URL opens it with vault.OpenStore: sqlite:PATH or postgres://...
	URL string
	// File is the SQLite file, or "" for PostgreSQL.
	File string
}

// ForEachDB runs f in a subtest "sqlite" on a new SQLite file, and in a
// subtest "postgres" on a new PostgreSQL schema (see Postgres; skipped when
// PostgresEnv is unset).
func ForEachDB(t *testing.T, f func(t *testing.T, db DB)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "alterhost.db")
		f(t, DB{URL: "sqlite:" + path, File: path})
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, DB{URL: Postgres(t)})
	})
}

// Postgres returns the URL of a new, empty schema on the server named by
// $ALTERHOST_TEST_POSTGRES_URL, dropped when t ends; see pgtest.URL.
func Postgres(t testing.TB) string {
	t.Helper()
	return pgtest.URL(t)
}

// IntegrityCheck runs PRAGMA integrity_check on the SQLite file at path
// through a connection of its own, and fails t unless it answers "ok".
func IntegrityCheck(t testing.TB, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: path, RawQuery: "_busy_timeout=5000"}).String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if len(got) != 1 || got[0] != "ok" {
		t.Errorf("PRAGMA integrity_check = %q, want ok", got)
	}
}
