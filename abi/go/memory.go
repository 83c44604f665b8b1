//go:build wasip1

package alter

import "encoding/binary"

// The Extism kernel keeps the input, the output, errors and alter_request
// messages in its own memory, apart from Go's; offsets below point there.
// Blocks are copied 8 bytes per call and the tail byte by byte, because each
// call crosses into the host.

//go:wasmimport extism:host/env input_length
func kernelInputLength() uint64

//go:wasmimport extism:host/env input_load_u8
func kernelInputLoadU8(offset uint64) uint32

//go:wasmimport extism:host/env input_load_u64
func kernelInputLoadU64(offset uint64) uint64

//go:wasmimport extism:host/env alloc
func kernelAlloc(n uint64) uint64

//go:wasmimport extism:host/env free
func kernelFree(offset uint64)

//go:wasmimport extism:host/env length
func kernelLength(offset uint64) uint64

//go:wasmimport extism:host/env load_u8
func kernelLoadU8(offset uint64) uint32

//go:wasmimport extism:host/env load_u64
func kernelLoadU64(offset uint64) uint64

//go:wasmimport extism:host/env store_u8
func kernelStoreU8(offset uint64, v uint32)

//go:wasmimport extism:host/env store_u64
func kernelStoreU64(offset uint64, v uint64)

//go:wasmimport extism:host/env output_set
func kernelOutputSet(offset, length uint64)

//go:wasmimport extism:host/env error_set
func kernelErrorSet(offset uint64)

// readInput copies the call's input into Go memory. Input offsets count from
// the start of the input.
func readInput() []byte {
	b := make([]byte, kernelInputLength())
	n := uint64(len(b))
	i := uint64(0)
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], kernelInputLoadU64(i))
	}
	for ; i < n; i++ {
		b[i] = byte(kernelInputLoadU8(i))
	}
	return b
}

// readBlock copies the kernel block at off into Go memory. Offset 0 is the
// kernel's "no block".
func readBlock(off uint64) []byte {
	if off == 0 {
		return nil
	}
	b := make([]byte, kernelLength(off))
	n := uint64(len(b))
	i := uint64(0)
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], kernelLoadU64(off+i))
	}
	for ; i < n; i++ {
		b[i] = byte(kernelLoadU8(off + i))
	}
	return b
}

// writeBlock copies b into a new kernel block and returns its offset, or 0
// for an empty b: the kernel has no empty blocks.
func writeBlock(b []byte) uint64 {
	n := uint64(len(b))
	if n == 0 {
		return 0
	}
	off := kernelAlloc(n)
	i := uint64(0)
	for ; i+8 <= n; i += 8 {
		kernelStoreU64(off+i, binary.LittleEndian.Uint64(b[i:]))
	}
	for ; i < n; i++ {
		kernelStoreU8(off+i, uint32(b[i]))
	}
	return off
}
