// Package abi is the contract between alterhost and its guests, version
// alter/v1: the plugin manifest, the alter_request wire format and the error
// codes a guest can see. It imports nothing of the project, so a host, a
// build tool or a guest-side test can depend on it alone.
//
// A plugin is one WebAssembly module that follows the Extism ABI. Its
// manifest travels in a custom section named [ManifestSection] or in a
// sidecar file NAME.alter.json beside NAME.wasm; the sidecar wins. Either way
// the manifest is read without running plugin code.
package abi

// Version is the ABI version a manifest must declare in its "abi" field.
const Version = "alter/v1"

// ManifestSection is the name of the Wasm custom section holding the manifest.
const ManifestSection = "alter.manifest"

// SidecarSuffix is appended to a plugin's base name (without ".wasm") to form
// the name of its sidecar manifest.
const SidecarSuffix = ".alter.json"

// HostModule and RequestFunction name the import through which a guest
// reaches the outside world: the only door out of the sandbox.
const (
	HostModule      = "extism:host/user"
	RequestFunction = "alter_request"
)
