package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The tools measured are plugin tools that do almost nothing, so that what
// is measured is the way to them: reverse from examples/c/text (a C guest)
// and random_id from examples/go/web (a Go guest). Their definitions here
// are the ones alterhost derives from the plugins' manifests (alter.json),
// so both servers validate the same arguments against the same schema; the
// load job checks that tools/list agrees before it measures anything.

// textSchema is the input schema of reverse in examples/c/text/alter.json.
const textSchema = `{"type":"object","properties":{"text":{"type":"string","description":"The text to reverse, up to about 1 MiB."}},"required":["text"],"additionalProperties":false}`

// emptySchema is the input schema of random_id in examples/go/web/alter.json.
const emptySchema = `{"type":"object","properties":{},"additionalProperties":false}`

func boolPtr(b bool) *bool { return &b }

// reverseTool is reverse as alterhost lists it.
var reverseTool = &mcp.Tool{
	Name:        "reverse",
	Title:       "Reverse text",
	Description: "Reverse a text character by character (by Unicode code point, so multi-byte characters stay intact).",
	InputSchema: json.RawMessage(textSchema),
	Annotations: &mcp.ToolAnnotations{Title: "Reverse text", ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: boolPtr(false)},
}

// randomIDTool is random_id as alterhost lists it.
var randomIDTool = &mcp.Tool{
	Name:        "random_id",
	Title:       "Random ID",
	Description: "Return a random 128-bit identifier as 32 lower-case hex digits.",
	InputSchema: json.RawMessage(emptySchema),
	Annotations: &mcp.ToolAnnotations{Title: "Random ID", ReadOnlyHint: true, OpenWorldHint: boolPtr(false)},
}

// reverse returns s with its code points in reverse order, each code
// point's bytes in their order, as the C plugin does.
func reverse(s string) string {
	out := make([]byte, len(s))
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		copy(out[len(s)-i-n:], s[i:i+n])
		i += n
	}
	return string(out)
}

// randomID is 16 random bytes in hex, as the Go plugin returns them.
func randomID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

type textArgs struct {
	Text string `json:"text"`
}

// addNative registers the native tools the way a go-sdk author would: the
// typed AddTool, which validates the arguments against the input schema
// and decodes them, as alterhost validates a plugin's arguments.
func addNative(s *mcp.Server) {
	mcp.AddTool(s, reverseTool, func(_ context.Context, _ *mcp.CallToolRequest, in textArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: reverse(in.Text)}}}, nil, nil
	})
	mcp.AddTool(s, randomIDTool, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		id, err := randomID()
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: id}}}, nil, nil
	})
}

// A bench is one tool as the load job calls it.
type bench struct {
	tool *mcp.Tool
	// args are the arguments of the timed calls.
	args map[string]any
	// verify checks one result of the timed calls, cheaply: every answer
	// is checked, not only the first.
	verify func(*mcp.CallToolResult) error
	// cases are the calls checked once before timing, more thoroughly.
	cases []checkCase
}

type checkCase struct {
	args  map[string]any
	check func(*mcp.CallToolResult) error
}

// same checks that a result's content, structured content and error flag
// are byte for byte want's once encoded. The rest differs by server and
// revision: 2026-07-28 results name the server in _meta.
func same(want *mcp.CallToolResult) func(*mcp.CallToolResult) error {
	return func(got *mcp.CallToolResult) error {
		answer := func(r *mcp.CallToolResult) string {
			return marshal(&mcp.CallToolResult{Content: r.Content, StructuredContent: r.StructuredContent, IsError: r.IsError})
		}
		if g, w := answer(got), answer(want); g != w {
			return fmt.Errorf("result %s; want %s", g, w)
		}
		return nil
	}
}

// benchText is the text reversed by the timed calls: short, with
// multi-byte characters, since the tool is meant to cost next to nothing.
const benchText = "The quick brown fox jumps over the lazy dog — naïve café, 東京, 🎉."

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// benches are the tools the load job knows.
var benches = map[string]bench{
	"reverse": {
		tool: reverseTool,
		args: map[string]any{"text": benchText},
		verify: func(res *mcp.CallToolResult) error {
			return wantText(res, func(s string) bool { return s == reverse(benchText) })
		},
		cases: func() []checkCase {
			var cs []checkCase
			for _, s := range []string{"", "a", benchText, "e\u0301 combining, \u00a0nbsp\ttab\nnewline", strings.Repeat("ab東🎉", 2500)} {
				cs = append(cs, checkCase{map[string]any{"text": s},
					same(&mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: reverse(s)}}})})
			}
			return cs
		}(),
	},
	"random_id": {
		tool: randomIDTool,
		args: map[string]any{},
		verify: func(res *mcp.CallToolResult) error {
			return wantText(res, func(s string) bool { return len(s) == 32 })
		},
		cases: []checkCase{{map[string]any{}, func(res *mcp.CallToolResult) error {
			return wantText(res, hexID.MatchString)
		}}},
	},
}

// wantText checks that res is one text content, not an error, with no
// structured content, whose text ok accepts.
func wantText(res *mcp.CallToolResult, ok func(string) bool) error {
	if res.IsError || len(res.Content) != 1 || res.StructuredContent != nil {
		return fmt.Errorf("unexpected result: %s", marshal(res))
	}
	tc, isText := res.Content[0].(*mcp.TextContent)
	if !isText || !ok(tc.Text) {
		return fmt.Errorf("unexpected result: %s", marshal(res))
	}
	return nil
}

func marshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}
