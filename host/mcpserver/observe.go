package mcpserver

import (
	"context"
	"errors"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/alterhost/alterhost/abi"
	"github.com/alterhost/alterhost/host/metrics"
)

// observed wraps a tool's handler to record each call's outcome and
// latency in tm. A nil tm (metrics off) leaves the handler as it is.
func observed(tm *metrics.Tool, h mcp.ToolHandler) mcp.ToolHandler {
	if tm == nil {
		return h
	}
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now()
		res, err := h(ctx, req)
		tm.Call(outcomeOf(res, err), time.Since(start))
		return res, err
	}
}

// outcomeOf classifies a call by what the handler answered: failed() puts
// the failure's kind and alter_request code in the result's _meta, and the
// Connect paths answer with an input request or a URL elicitation error.
// A result the guest itself marked isError is a call that worked, as far
// as the host is concerned: ok.
func outcomeOf(res *mcp.CallToolResult, err error) string {
	if err != nil {
		var rpc *jsonrpc.Error
		if errors.As(err, &rpc) && rpc.Code == mcp.CodeURLElicitationRequired {
			return metrics.OutcomeConnectRequired
		}
		return "internal"
	}
	if res == nil {
		return "internal"
	}
	if len(res.InputRequests) > 0 {
		return metrics.OutcomeConnectRequired
	}
	if !res.IsError {
		return metrics.OutcomeOK
	}
	meta, ok := res.Meta[ErrorMetaKey].(map[string]any)
	if !ok {
		return metrics.OutcomeOK
	}
	if code, _ := meta["code"].(abi.Code); code == abi.CodeGrantNotFound || code == abi.CodeScopeReauthRequired {
		return metrics.OutcomeConnectRequired
	}
	kind, _ := meta["kind"].(string)
	return kind
}
