package server

import (
	"encoding/json"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// authServerMeta is the RFC 8414 document: the SDK's type, with two fields
// shadowed (encoding/json prefers the shallower field). jwks_uri: this
// server signs nothing, and the SDK's type would publish "", which some
// clients' schemas reject as not a URL. client_id_metadata_document_supported:
// the SDK's type omits false, and clients should read a definite answer.
type authServerMeta struct {
	oauthex.AuthServerMeta
	JWKSURI                           string `json:"jwks_uri,omitempty"`
	ClientIDMetadataDocumentSupported bool   `json:"client_id_metadata_document_supported"`
}

func (s *Server) authServerMeta() authServerMeta {
	return authServerMeta{AuthServerMeta: oauthex.AuthServerMeta{
		Issuer:                                     s.issuer,
		AuthorizationEndpoint:                      s.endpoint("/authorize"),
		TokenEndpoint:                              s.endpoint("/token"),
		RegistrationEndpoint:                       s.endpoint("/register"),
		RevocationEndpoint:                         s.endpoint("/revoke"),
		ScopesSupported:                            s.opts.Scopes,
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token"},
		TokenEndpointAuthMethodsSupported:          []string{"none", "client_secret_basic", "client_secret_post"},
		RevocationEndpointAuthMethodsSupported:     []string{"none", "client_secret_basic", "client_secret_post"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseIssParameterSupported: true,
	}, ClientIDMetadataDocumentSupported: true}
}

func (s *Server) authServerMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeJSON(w, http.StatusMethodNotAllowed, oauthError{Error: "invalid_request", Description: "use GET"})
		return
	}
	writeJSON(w, http.StatusOK, s.authServerMeta())
}

// protectedResource serves the RFC 9728 document at the root and at the
// path of the MCP endpoint. Both name the MCP endpoint as the resource:
// alterhost protects nothing else, and a client that finds the root
// document must send that resource, not the bare origin, or authorize
// refuses it.
func (s *Server) protectedResource(w http.ResponseWriter, r *http.Request) {
	auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource:               s.opts.Resource,
		AuthorizationServers:   []string{s.issuer},
		ScopesSupported:        s.opts.Scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "alterhost",
	}).ServeHTTP(w, r)
}

// cors lets browser-based clients (the MCP Inspector, web apps) read the
// metadata and call registration, token and revocation. Any origin may:
// these endpoints take no cookies, so a foreign page gains nothing it
// could not get by calling them from a server. The authorize and sign-in
// pages get none of this; they are navigations, not fetches.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			// MCP-Protocol-Version: the TypeScript SDK sends it with discovery.
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// oauthError is the error body of RFC 6749 §5.2, RFC 7591 §3.2.2 and RFC
// 7009 §2.2.1.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
