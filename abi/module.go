package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Func is a function import or export of a module, with its signature in
// Wasm text notation, e.g. "(i64) -> (i64)".
type Func struct {
	Module string `json:"module,omitempty"` // imports only
	Name   string `json:"name"`
	Type   string `json:"type"`
}

// Interface is what a module asks of its host and offers to it: its
// function imports and exports. It is read from the binary without
// compiling or running it.
type Interface struct {
	Imports []Func `json:"imports"`
	Exports []Func `json:"exports"`
}

// Export returns the exported function called name, if any.
func (in *Interface) Export(name string) (Func, bool) {
	for _, f := range in.Exports {
		if f.Name == name {
			return f, true
		}
	}
	return Func{}, false
}

// ExportNames lists the exported functions, for error messages.
func (in *Interface) ExportNames() []string {
	names := make([]string, len(in.Exports))
	for i, f := range in.Exports {
		names[i] = f.Name
	}
	return names
}

// ToolExportType is the signature an export must have to serve as a tool:
// no parameters and an i32 return code (0 for success), as Extism expects.
const ToolExportType = "() -> (i32)"

// ReadInterface decodes the type, import, function and export sections of
// a Wasm binary module.
func ReadInterface(wasm []byte) (*Interface, error) {
	secs, err := sections(wasm)
	if err != nil {
		return nil, err
	}
	var (
		types     []string
		funcTypes []uint32 // type index of every function, imports first
		in        Interface
	)
	typeOf := func(idx uint32) (string, error) {
		if int(idx) >= len(types) {
			return "", fmt.Errorf("type index %d out of range", idx)
		}
		return types[idx], nil
	}
	for _, s := range secs {
		r := &reader{b: s.body()}
		switch s.raw[0] {
		case 1: // type
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				if r.byte() != 0x60 {
					r.fail("unsupported type form")
					break
				}
				params, results := r.valtypes(), r.valtypes()
				types = append(types, "("+params+") -> ("+results+")")
			}
		case 2: // import
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				mod, name := r.name(), r.name()
				switch kind := r.byte(); kind {
				case 0:
					idx := r.u32()
					typ, err := typeOf(idx)
					if err != nil {
						return nil, err
					}
					funcTypes = append(funcTypes, idx)
					in.Imports = append(in.Imports, Func{Module: mod, Name: name, Type: typ})
				case 1:
					r.byte()
					r.limits()
				case 2:
					r.limits()
				case 3:
					r.byte()
					r.byte()
				default:
					r.fail("unknown import kind")
				}
			}
		case 3: // function
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				funcTypes = append(funcTypes, r.u32())
			}
		case 7: // export
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				name, kind, idx := r.name(), r.byte(), r.u32()
				if kind != 0 || r.err != nil {
					continue
				}
				if int(idx) >= len(funcTypes) {
					return nil, fmt.Errorf("export %q names function %d, which does not exist", name, idx)
				}
				typ, err := typeOf(funcTypes[idx])
				if err != nil {
					return nil, err
				}
				in.Exports = append(in.Exports, Func{Name: name, Type: typ})
			}
		}
		if r.err != nil {
			return nil, fmt.Errorf("malformed section %d: %w", s.raw[0], r.err)
		}
	}
	return &in, nil
}

// body returns a section's contents after its id and size.
func (s section) body() []byte {
	_, n := binary.Uvarint(s.raw[1:])
	return s.raw[1+n:]
}

// reader decodes the primitive encodings of the Wasm binary format and
// remembers the first error, so decoding loops stay short.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = errors.New(msg)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) u32() uint32 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n > 5 || v > 1<<32-1 {
		r.fail("bad integer")
		return 0
	}
	r.b = r.b[n:]
	return uint32(v)
}

func (r *reader) name() string {
	n := r.u32()
	if uint64(n) > uint64(len(r.b)) {
		r.fail("name runs past the section")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}

var valtypeNames = map[byte]string{0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64", 0x7b: "v128", 0x70: "funcref", 0x6f: "externref"}

func (r *reader) valtypes() string {
	n := r.u32()
	names := make([]string, 0, n)
	for ; n > 0 && r.err == nil; n-- {
		name, ok := valtypeNames[r.byte()]
		if !ok {
			r.fail("unsupported value type")
		}
		names = append(names, name)
	}
	return strings.Join(names, ", ")
}
