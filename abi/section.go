package abi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// section is one section of a Wasm binary: raw holds the whole section,
// header included; custom is the name of a custom section, else "".
type section struct {
	raw     []byte
	custom  string
	payload []byte
}

// sections splits a Wasm binary module into its sections, reading headers
// only: nothing in the module is decoded or run.
func sections(wasm []byte) ([]section, error) {
	if !bytes.HasPrefix(wasm, wasmHeader) {
		return nil, errors.New("not a WebAssembly binary module (bad magic number or version)")
	}
	var out []section
	rest := wasm[len(wasmHeader):]
	for len(rest) > 0 {
		size, n := binary.Uvarint(rest[1:])
		if n <= 0 || n > 5 || size > uint64(len(rest)-1-n) {
			return nil, fmt.Errorf("malformed section header at byte %d", len(wasm)-len(rest))
		}
		s := section{raw: rest[:1+n+int(size)]}
		if rest[0] == 0 {
			body := s.raw[1+n:]
			nameLen, m := binary.Uvarint(body)
			if m <= 0 || m > 5 || nameLen > uint64(len(body)-m) {
				return nil, fmt.Errorf("malformed custom section name at byte %d", len(wasm)-len(rest))
			}
			s.custom = string(body[m : m+int(nameLen)])
			s.payload = body[m+int(nameLen):]
		}
		out = append(out, s)
		rest = rest[len(s.raw):]
	}
	return out, nil
}

// CustomSection returns the payload of the first custom section called name
// in the Wasm binary module wasm, and whether there was one.
func CustomSection(wasm []byte, name string) ([]byte, bool, error) {
	secs, err := sections(wasm)
	if err != nil {
		return nil, false, err
	}
	for _, s := range secs {
		if s.custom == name {
			return s.payload, true, nil
		}
	}
	return nil, false, nil
}

// AppendCustomSection returns wasm with a custom section called name
// holding payload added at the end. Existing sections of that name are
// dropped first, so embedding a manifest twice leaves one.
func AppendCustomSection(wasm []byte, name string, payload []byte) ([]byte, error) {
	secs, err := sections(wasm)
	if err != nil {
		return nil, err
	}
	out := append([]byte{}, wasmHeader...)
	for _, s := range secs {
		if s.custom != name || s.raw[0] != 0 {
			out = append(out, s.raw...)
		}
	}
	body := binary.AppendUvarint(nil, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out = append(out, 0)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...), nil
}
