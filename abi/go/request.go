//go:build wasip1

package alter

// hostAlterRequest takes a kernel block holding the request JSON, which the
// host frees, and returns a new block holding the reply JSON, which the
// guest must free.
//
//go:wasmimport extism:host/user alter_request
func hostAlterRequest(request uint64) uint64

// Do asks the host to make req and returns the upstream's response, with
// any HTTP status. Its error is always an [*Error]: the request was refused
// or could not be completed.
func Do(req Request) (*Response, error) {
	off := hostAlterRequest(writeBlock(appendRequest(nil, &req)))
	if off == 0 {
		return nil, &Error{Code: CodeInternal, Message: "alter_request returned no reply"}
	}
	reply := readBlock(off)
	kernelFree(off)
	return parseReply(reply)
}

// Get is Do with a GET request for url.
func Get(url string) (*Response, error) { return Do(Request{Method: "GET", URL: url}) }
