// Package oauth will be alterhost's Authorization Server for MCP clients:
// metadata, client registration, sign-in and consent, tokens, revocation,
// and the upstream Connect flows. Until it exists, alterhost serves HTTP
// only with --no-auth, on loopback.
package oauth
