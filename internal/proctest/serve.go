package proctest

import (
	"bufio"
	"io"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// startTimeout bounds alterhost's start: compiling a Go guest under the
// race detector on a loaded machine takes tens of seconds.
const startTimeout = 60 * time.Second

// servingRE finds the MCP URL in alterhost's "serving MCP over HTTP" log
// line.
var servingRE = regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+/mcp)`)

// Serve runs the alterhost binary bin with args (which should include
// --addr 127.0.0.1:0), waits until it logs that it serves MCP over HTTP,
// and returns that URL, the running command and its log so far and to
// come. The process is killed when the test ends.
func Serve(t testing.TB, bin string, args ...string) (mcpURL string, cmd *exec.Cmd, logs *Buffer) {
	t.Helper()
	cmd = exec.Command(bin, args...)
	logs = &Buffer{}
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(logs, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); pw.Close() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case mcpURL = <-found:
	case <-time.After(startTimeout):
		t.Fatalf("alterhost did not start:\n%s", logs.String())
	}
	return mcpURL, cmd, logs
}
