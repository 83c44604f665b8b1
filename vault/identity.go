package vault

import "context"

// Identity is who a tool call acts for: the person (Subject) whose grants it
// may use, and the agents acting for them, for the audit trail.
type Identity struct {
	Subject string
	// Agent is the agent acting: the tool's manifest agent if it names one,
	// else the MCP client.
	Agent string
	// ParentAgent is the agent that invoked Agent, when there is one.
	ParentAgent string
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries, if any.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.Subject != ""
}
