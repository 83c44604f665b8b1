//go:build wasip1

// Command sandbox is an example alterhost plugin in Go for the built-in
// sandbox provider (alterhost --dev). It calls the sandbox API as the
// signed-in person; the host adds the person's access token to each
// request, so the plugin never sees it.
//
// Build: scripts/build-plugins.sh (see README.md).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	alter "github.com/alterhost/alterhost/abi/go"
)

// main is never called: the host calls the exported tools.
func main() {}

// api is the sandbox API's base URL, on a virtual host the host serves
// in-process.
const api = "https://sandbox.alterhost.test/api/"

// call makes one request to the sandbox API and returns its answer, which
// must be a JSON object, compacted.
func call(method, path string, body []byte) ([]byte, error) {
	req := alter.Request{Method: method, URL: api + path, Headers: map[string]string{"Accept": "application/json"}}
	if body != nil {
		req.Body = body
		req.Headers["Content-Type"] = "application/json"
	}
	resp, err := alter.Do(req)
	if err != nil {
		// Returned as is: a grant_not_found or scope_reauth_required error
		// carries the connect URL the host shows the person.
		return nil, err
	}
	if resp.Status/100 != 2 {
		return nil, apiError(resp)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, resp.Body); err != nil || !bytes.HasPrefix(out.Bytes(), []byte("{")) {
		return nil, fmt.Errorf("the sandbox API answered %d with something that is not a JSON object", resp.Status)
	}
	return out.Bytes(), nil
}

// apiError describes a refused API call from its status and OAuth error.
func apiError(resp *alter.Response) error {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(resp.Body, &e)
	msg := fmt.Sprintf("the sandbox API answered %d", resp.Status)
	if e.Error != "" {
		msg += ": " + e.Error
	}
	if e.Description != "" {
		msg += " (" + e.Description + ")"
	}
	if h := resp.Headers["www-authenticate"]; h != "" {
		msg += "; WWW-Authenticate: " + h
	}
	return errors.New(msg)
}

//go:wasmexport whoami
func whoami() int32 {
	return alter.Handle(func([]byte) ([]byte, error) { return call("GET", "whoami", nil) })
}

//go:wasmexport list_notes
func listNotes() int32 {
	return alter.Handle(func([]byte) ([]byte, error) { return call("GET", "notes", nil) })
}

type addNoteArgs struct {
	Text string `json:"text"`
}

//go:wasmexport add_note
func addNote() int32 {
	return alter.Handle(func(in []byte) ([]byte, error) {
		var args addNoteArgs
		if err := json.Unmarshal(in, &args); err != nil {
			return nil, fmt.Errorf("invalid arguments: %w", err)
		}
		body, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		return call("POST", "notes", body)
	})
}
