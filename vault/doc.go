// Package vault will hold everything secret that alterhost stores: upstream
// grants sealed at rest, their refresh, credentialed requests and the audit
// log. Today it holds the egress guard, in package egress, through which
// every alter_request leaves the host.
package vault
