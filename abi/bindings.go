package abi

import "embed"

// Bindings holds the sources of the guest bindings (go/, c/, and the other
// languages' folders as they exist), so alterhost can copy one into a new
// plugin: a scaffolded plugin then builds on its own, anywhere.
//
//go:embed go/*.go c/alter.h rust/alter.rs assemblyscript/assembly/*.ts
var Bindings embed.FS
