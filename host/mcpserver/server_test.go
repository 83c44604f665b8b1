package mcpserver_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/mcpserver"
)

func tool(t *testing.T, spec string) *abi.Tool {
	t.Helper()
	m, err := abi.ParseManifest("t", []byte(`{"abi":"alter/v1","name":"p","version":"1","tools":[`+spec+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	return &m.Tools[0]
}

func TestResult(t *testing.T) {
	text := tool(t, `{"name":"t","description":"d"}`)
	js := tool(t, `{"name":"t","description":"d","result":"json","output_schema":{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}}`)
	mcpKind := tool(t, `{"name":"t","description":"d","result":"mcp"}`)
	mcpSchema := tool(t, `{"name":"t","description":"d","result":"mcp","output_schema":{"type":"object","required":["n"]}}`)

	res, err := mcpserver.Result(text, []byte("héllo"))
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "héllo" || res.StructuredContent != nil {
		t.Errorf("text: %+v, %v", res, err)
	}
	res, err = mcpserver.Result(js, []byte(`{"n":3}`))
	if err != nil || string(res.StructuredContent.(json.RawMessage)) != `{"n":3}` || res.Content[0].(*mcp.TextContent).Text != `{"n":3}` {
		t.Errorf("json: %+v, %v", res, err)
	}
	res, err = mcpserver.Result(mcpKind, []byte(`{"content":[{"type":"text","text":"a"},{"type":"image","data":"AAE=","mimeType":"image/png"}],"structuredContent":{"k":1}}`))
	if err != nil || len(res.Content) != 2 || res.IsError {
		t.Errorf("mcp: %+v, %v", res, err)
	}
	res, err = mcpserver.Result(mcpKind, []byte(`{"content":[{"type":"text","text":"nope"}],"isError":true}`))
	if err != nil || !res.IsError {
		t.Errorf("mcp with isError: %+v, %v", res, err)
	}

	for _, tc := range []struct {
		name string
		tool *abi.Tool
		out  string
		want string
	}{
		{"text not UTF-8", text, "\xff\xfe", "not UTF-8"},
		{"json empty (e.g. a lying output_set length)", js, "", "returned no output"},
		{"json array", js, `[1]`, "not a JSON object"},
		{"json off schema", js, `{"n":"three"}`, "does not match the tool's output schema"},
		{"mcp not an object", mcpKind, `"x"`, "MCP result object"},
		{"mcp without content", mcpKind, `{"structuredContent":{}}`, `no "content" list`},
		{"mcp off schema", mcpSchema, `{"content":[],"structuredContent":{"m":1}}`, "does not match the tool's output schema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := mcpserver.Result(tc.tool, []byte(tc.out)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}
