package abi

import _ "embed"

// ManifestSchema is the JSON Schema (draft 2020-12) of the manifest, for
// editors and build tools. [ParseManifest] checks everything it says and
// more (schemas that compile, names that do not collide).
//
//go:embed manifest.schema.json
var ManifestSchema []byte
