// Package alter is the guest side of alterhost's ABI alter/v1 for Go plugins
// built with the standard toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o NAME.wasm .
//
// Each tool is a function exported with //go:wasmexport that returns what
// [Handle] or [HandleJSON] returns:
//
//	//go:wasmexport greet
//	func greet() int32 {
//		return alter.HandleJSON(func(in struct{ Name string }) (string, error) {
//			return "hello " + in.Name, nil
//		})
//	}
//
// The host passes the tool's arguments as the call's input (a JSON object)
// and reads the call's output as the manifest's "result" kind says. A tool
// reaches the network only through [Do], which asks the host to make the
// request: the host checks allowed_hosts, adds the credentials and enforces
// the limits, so a plugin never holds a secret.
//
// The package imports only the standard library, so a plugin built with it
// carries nothing of the host. Everything that talks to the host needs
// GOOS=wasip1; the wire types build everywhere, so they can be tested on the
// build machine.
package alter
