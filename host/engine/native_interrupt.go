package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Stopping a looping guest.
//
// wazero stops a guest whose context ends only if the module is compiled
// with WithCloseOnContextDone, and then every loop iteration and every
// function entry leaves the guest for Go to check whether the module was
// closed: about 100 ns each, which made a C tool's JSON parsing 5-7 times
// slower. The native engine instead rewrites the guest before compiling it,
// adding two mutable i32 globals, a fuel counter and an interrupt flag
// (exported, set by the host from another goroutine), and this at every
// function entry and loop header:
//
//	fuel -= 1
//	if fuel == 0 {
//		memory.grow 0     ;; leaves for Go, where the goroutine can be preempted
//		if flag { unreachable }
//		fuel = interruptFuel
//	}
//
// The common path is a load, a store and a branch. The periodic trip to Go
// matters as much as the flag: Go cannot preempt a goroutine inside
// machine code wazero generated, so without it a spinning guest would stall
// the garbage collector's stop-the-world, and with it every other
// goroutine, the timer that would set the flag included. wazero reloads
// globals after a call (memory.grow counts), so the flag set meanwhile is
// seen. A guest stopped this way traps with "unreachable"; the engine knows
// it set the flag and reports a timeout or a cancellation.
//
// The rewrite decodes every instruction. A module with one it does not
// know (GC, say), or without a memory to grow by 0, is compiled unchanged
// with WithCloseOnContextDone instead: slower, never wrong.

// interruptFuel is how many loop iterations and calls a guest runs between
// trips to Go: at a few ns each, tens of microseconds.
const interruptFuel = 10000

// interruptExport is the name the flag is exported under.
const interruptExport = "alterhost.interrupt"

// errNoRewrite is why a module keeps wazero's own termination checks.
var errNoRewrite = errors.New("cannot instrument")

// instrument returns wasm with the interrupt flag and its checks added.
func instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, fmt.Errorf("%w: not a core module", errNoRewrite)
	}
	type section struct {
		id   byte
		body []byte
	}
	var sections []section
	r := reader{b: wasm, i: 8}
	for r.i < len(r.b) {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, r.err
		}
		sections = append(sections, section{id, body})
	}
	// The new globals' indexes follow every imported and defined global.
	var globals uint32
	memories := false
	for _, s := range sections {
		switch s.id {
		case 2: // imports
			sr := reader{b: s.body}
			for n := sr.u32(); n > 0 && sr.err == nil; n-- {
				sr.name()
				sr.name()
				switch kind := sr.byte(); kind {
				case 0x00: // func
					sr.u32()
				case 0x01: // table
					sr.valtype()
					sr.limits()
				case 0x02: // memory
					sr.limits()
					memories = true
				case 0x03: // global
					sr.valtype()
					sr.byte()
					globals++
				case 0x04: // tag
					sr.byte()
					sr.u32()
				default:
					return nil, fmt.Errorf("%w: import kind %d", errNoRewrite, kind)
				}
			}
			if sr.err != nil {
				return nil, sr.err
			}
		case 5:
			sr := reader{b: s.body}
			memories = memories || sr.u32() > 0
		case 6:
			sr := reader{b: s.body}
			globals += sr.u32()
		case 7:
			sr := reader{b: s.body}
			for n := sr.u32(); n > 0 && sr.err == nil; n-- {
				if sr.name() == interruptExport {
					return nil, fmt.Errorf("%w: the module exports %s", errNoRewrite, interruptExport)
				}
				sr.byte()
				sr.u32()
			}
			if sr.err != nil {
				return nil, sr.err
			}
		}
	}
	if !memories {
		return nil, fmt.Errorf("%w: no memory", errNoRewrite)
	}
	fuel, flag := uleb(uint64(globals)), uleb(uint64(globals+1))
	var check []byte
	add := func(b ...byte) { check = append(check, b...) }
	add(0x23)
	add(fuel...)                // global.get fuel
	add(0x41, 0x01, 0x6B, 0x24) // i32.const 1, i32.sub, global.set
	add(fuel...)
	add(0x23)
	add(fuel...)
	add(0x45, 0x04, 0x40)             // i32.eqz, if
	add(0x41, 0x00, 0x40, 0x00, 0x1A) // i32.const 0, memory.grow 0, drop
	add(0x23)
	add(flag...)
	add(0x04, 0x40, 0x00, 0x0B) // if unreachable end
	add(0x41)
	add(sleb(interruptFuel)...)
	add(0x24)
	add(fuel...)
	add(0x0B) // end

	// Two globals, mutable i32: the fuel, then the flag, which is exported.
	newGlobals := append([]byte{0x7F, 0x01, 0x41}, sleb(interruptFuel)...)
	newGlobals = append(newGlobals, 0x0B, 0x7F, 0x01, 0x41, 0x00, 0x0B)
	newExport := append(append(uleb(uint64(len(interruptExport))), interruptExport...), 0x03)
	newExport = append(newExport, flag...)

	out := append([]byte(nil), wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = append(out, uleb(uint64(len(body)))...)
		out = append(out, body...)
	}
	// Sections come in a fixed order; the global section goes before the
	// first section that must follow it (export, start, elements, data
	// count, code, data), and the export section likewise.
	order := func(id byte) int {
		switch id {
		case 13: // tag: between memory and global
			return 55
		case 12: // data count: before code
			return 95
		case 0:
			return -1
		}
		return int(id) * 10
	}
	haveGlobals, haveExports := false, false
	for _, s := range sections {
		if s.id == 6 {
			haveGlobals = true
		}
		if s.id == 7 {
			haveExports = true
		}
	}
	globalsDone, exportsDone := false, false
	for _, s := range sections {
		if s.id != 0 {
			if !haveGlobals && !globalsDone && order(s.id) > order(6) {
				emit(6, append([]byte{2}, newGlobals...))
				globalsDone = true
			}
			if !haveExports && !exportsDone && order(s.id) > order(7) {
				emit(7, append([]byte{1}, newExport...))
				exportsDone = true
			}
		}
		switch s.id {
		case 0:
			// DWARF offsets into the code section would be wrong now.
			sr := reader{b: s.body}
			if strings.HasPrefix(sr.name(), ".debug_") {
				continue
			}
			emit(0, s.body)
		case 6:
			emit(6, appendToVec(s.body, 2, newGlobals))
			globalsDone = true
		case 7:
			emit(7, appendToVec(s.body, 1, newExport))
			exportsDone = true
		case 10:
			code, err := instrumentCode(s.body, check)
			if err != nil {
				return nil, err
			}
			emit(10, code)
		default:
			emit(s.id, s.body)
		}
	}
	if !globalsDone {
		emit(6, append([]byte{2}, newGlobals...))
	}
	if !exportsDone {
		emit(7, append([]byte{1}, newExport...))
	}
	return out, nil
}

// appendToVec adds k encoded items to a section that is a vector.
func appendToVec(body []byte, k uint64, items []byte) []byte {
	r := reader{b: body}
	n := r.u32()
	out := uleb(uint64(n) + k)
	out = append(out, body[r.i:]...)
	return append(out, items...)
}

// instrumentCode rewrites the code section: check at each function's entry
// and at each loop header.
func instrumentCode(body, check []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	out := uleb(uint64(n))
	var fn []byte
	for ; n > 0; n-- {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		fr := reader{b: code}
		for locals := fr.u32(); locals > 0 && fr.err == nil; locals-- {
			fr.u32()
			fr.valtype()
		}
		if fr.err != nil {
			return nil, fr.err
		}
		fn = append(fn[:0], code[:fr.i]...)
		fn = append(fn, check...)
		start := fr.i
		for fr.i < len(code) {
			op := fr.byte()
			if op == 0x03 { // loop
				fr.blocktype()
				fn = append(fn, code[start:fr.i]...)
				fn = append(fn, check...)
				start = fr.i
				continue
			}
			fr.skip(op)
			if fr.err != nil {
				return nil, fr.err
			}
		}
		fn = append(fn, code[start:]...)
		out = append(out, uleb(uint64(len(fn)))...)
		out = append(out, fn...)
	}
	return out, r.err
}

// reader decodes the Wasm binary format, remembering the first error.
type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{errNoRewrite}, args...)...)
	}
	r.i = len(r.b)
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b)-r.i {
		r.fail("unexpected end")
		return nil
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b
}

// leb skips an LEB128 number of at most maxBytes bytes and returns its low
// 64 bits unsigned.
func (r *reader) leb(maxBytes int) uint64 {
	var v uint64
	for k := 0; k < maxBytes; k++ {
		c := r.byte()
		if k < 10 {
			v |= uint64(c&0x7F) << (7 * k)
		}
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail("LEB128 too long")
	return 0
}

func (r *reader) u32() uint32 { return uint32(r.leb(5)) }

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *reader) limits() {
	flags := r.byte()
	r.leb(10)
	if flags&1 != 0 {
		r.leb(10)
	}
}

// valtype skips a value type, including a reference type with a heap type.
func (r *reader) valtype() {
	switch c := r.byte(); c {
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.leb(5)
	default:
		if c < 0x60 && c != 0x40 {
			r.fail("value type %#x", c)
		}
	}
}

// blocktype skips a block type: empty, a value type or a type index.
func (r *reader) blocktype() {
	if r.i >= len(r.b) {
		r.fail("unexpected end")
		return
	}
	switch c := r.b[r.i]; {
	case c == 0x40, c >= 0x6F && c <= 0x7F, c == 0x69:
		r.i++
	case c == 0x63 || c == 0x64:
		r.i++
		r.leb(5)
	default:
		r.leb(5) // s33 type index
	}
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(10)
}

// skip skips the immediates of the instruction whose opcode op was read.
func (r *reader) skip(op byte) {
	switch {
	case op == 0x00, op == 0x01, op == 0x05, op == 0x0A, op == 0x0B, op == 0x0F, op == 0x19,
		op == 0x1A, op == 0x1B, op >= 0x45 && op <= 0xC4, op == 0xD1, op == 0xD3, op == 0xD4:
	case op == 0x02, op == 0x04, op == 0x06: // block, if, try
		r.blocktype()
	case op == 0x07, op == 0x08, op == 0x09, op == 0x0C, op == 0x0D, op == 0x10, op == 0x12, op == 0x14,
		op == 0x15, op == 0x18, op >= 0x20 && op <= 0x26, op == 0xD2, op == 0xD5, op == 0xD6:
		r.u32()
	case op == 0x0E: // br_table
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.u32()
		}
		r.u32()
	case op == 0x11, op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1C: // select t*
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.valtype()
		}
	case op == 0x1F: // try_table
		r.blocktype()
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			if kind := r.byte(); kind <= 1 {
				r.u32()
			}
			r.u32()
		}
	case op >= 0x28 && op <= 0x3E:
		r.memarg()
	case op == 0x3F, op == 0x40:
		r.u32()
	case op == 0x41:
		r.leb(5)
	case op == 0x42:
		r.leb(10)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xD0: // ref.null ht
		r.leb(5)
	case op == 0xFC:
		switch sub := r.u32(); {
		case sub <= 7:
		case sub == 8, sub == 10, sub == 12, sub == 14:
			r.u32()
			r.u32()
		case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
			r.u32()
		default:
			r.fail("opcode 0xFC %d", sub)
		}
	case op == 0xFD:
		switch sub := r.u32(); {
		case sub <= 11, sub == 92, sub == 93:
			r.memarg()
		case sub == 12, sub == 13:
			r.bytes(16)
		case sub >= 21 && sub <= 34:
			r.byte()
		case sub >= 84 && sub <= 91:
			r.memarg()
			r.byte()
		case sub <= 0x113:
		default:
			r.fail("opcode 0xFD %d", sub)
		}
	case op == 0xFE:
		switch sub := r.u32(); {
		case sub == 0x03:
			r.byte()
		case sub <= 0x02, sub >= 0x10 && sub <= 0x4E:
			r.memarg()
		default:
			r.fail("opcode 0xFE %d", sub)
		}
	default:
		r.fail("opcode %#x", op)
	}
}

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
