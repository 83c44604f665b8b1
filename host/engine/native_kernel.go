package engine

// The native engine's kernel: the memory the Extism ABI calls "kernel
// memory", kept in a Go byte slice per instance instead of in the linear
// memory of an Extism kernel Wasm module.
//
// Guests see the same model as with the Extism kernel: alloc returns a u64
// offset, 0 means "no block", and the bytes of a block are addressed by
// offset arithmetic (load_u64(off+8) is the second word of block off), so
// offsets are addresses in one address space. Here that space is the
// arena: address kernelBase+i is mem[i]. The block table lives beside the
// arena, not in it, so no store a guest makes can corrupt the allocator.
//
// What differs from the Extism kernel (v1.7.1), on purpose:
//   - A load or store must fall inside a live block (its capacity, rounded
//     up to 8 bytes); anything else traps the call. The Extism kernel lets a
//     guest read and write any byte of its memory, block headers included.
//   - output_set and input_set take a range only if it lies inside one live
//     block; the Extism kernel takes any range inside its memory. Both
//     ignore a range they refuse.
//   - The arena is zeroed when a call ends, not when the next one starts, so
//     an idle instance holds nothing of its last call in kernel memory.

const (
	// kernelBase is the address of mem[0]: small integers, and 0 above
	// all, never address a block.
	kernelBase = 64
	// kernelSplit: a free block reused for a request this much smaller is
	// split, and the rest stays free.
	kernelSplit = 128
	// kernelKeep is the largest arena an idle instance keeps; a bigger one
	// is released after the call that grew it.
	kernelKeep = 256 << 10
)

type kblock struct {
	addr uint64 // address of the first byte
	size uint64 // capacity: the request rounded up to 8
	used uint64 // the size alloc was asked for, which length reports
	free bool
}

// contains reports whether [addr, addr+n) lies inside live block b.
func (b *kblock) contains(addr, n uint64) bool {
	return !b.free && addr >= b.addr && addr-b.addr <= b.size && n <= b.size-(addr-b.addr)
}

// kernel is one instance's kernel memory and call state. It is used by one
// goroutine at a time, like the instance that owns it.
type kernel struct {
	mem    []byte // the arena; mem[top:] is always zero
	top    uint64 // bytes of mem handed out to blocks
	limit  uint64 // the arena never grows beyond this
	blocks []kblock
	nfree  int // free blocks in blocks
	hint   int // the block the last access fell in

	inAddr, inLen   uint64
	outAddr, outLen uint64
	errAddr         uint64
}

// reset forgets every block and zeroes what they held, as the Extism
// kernel's reset does.
func (k *kernel) reset() {
	clear(k.mem[:k.top])
	k.top = 0
	k.blocks = k.blocks[:0]
	k.nfree, k.hint = 0, 0
	k.inAddr, k.inLen, k.outAddr, k.outLen, k.errAddr = 0, 0, 0, 0, 0
}

// release resets and drops an arena grown past kernelKeep, so one big call
// does not pin its memory in a pooled instance.
func (k *kernel) release() {
	k.reset()
	if len(k.mem) > kernelKeep {
		k.mem = nil
	}
	if cap(k.blocks) > 1024 {
		k.blocks = nil
	}
}

// locate returns the index of the last block starting at or before addr,
// or -1.
func (k *kernel) locate(addr uint64) int {
	lo, hi := 0, len(k.blocks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if k.blocks[m].addr <= addr {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// span returns the arena index of [addr, addr+n) if it lies inside one live
// block.
func (k *kernel) span(addr, n uint64) (uint64, bool) {
	if h := k.hint; h < len(k.blocks) && k.blocks[h].contains(addr, n) {
		return addr - kernelBase, true
	}
	i := k.locate(addr)
	if i < 0 || !k.blocks[i].contains(addr, n) {
		return 0, false
	}
	k.hint = i
	return addr - kernelBase, true
}

// find returns the index of the live block starting at addr, or -1.
func (k *kernel) find(addr uint64) int {
	if h := k.hint; h < len(k.blocks) && k.blocks[h].addr == addr && !k.blocks[h].free {
		return h
	}
	i := k.locate(addr)
	if i < 0 || k.blocks[i].addr != addr || k.blocks[i].free {
		return -1
	}
	return i
}

// length is the kernel's length: the size of the live block at addr, or 0.
func (k *kernel) length(addr uint64) uint64 {
	if i := k.find(addr); i >= 0 {
		return k.blocks[i].used
	}
	return 0
}

// bytes returns the contents of the live block at addr, or nil. The slice
// aliases the arena: it is valid until the guest runs again.
func (k *kernel) bytes(addr uint64) []byte {
	i := k.find(addr)
	if i < 0 {
		return nil
	}
	b := k.blocks[i]
	lo := b.addr - kernelBase
	return k.mem[lo : lo+b.used : lo+b.used]
}

// alloc returns a new block of n bytes, or 0 if n is 0 or the arena is
// full, as the Extism kernel does. Like that kernel, it takes fresh space
// while the arena has room and reuses a free block only before growing.
func (k *kernel) alloc(n uint64) uint64 {
	if n == 0 || n > k.limit {
		return 0
	}
	size := (n + 7) &^ 7
	if end := k.top + size; end > uint64(len(k.mem)) {
		if k.nfree > 0 {
			if addr := k.reuse(n, size); addr != 0 {
				return addr
			}
		}
		if size > k.limit-k.top {
			return 0
		}
		k.grow(end)
	}
	addr := kernelBase + k.top
	k.blocks = append(k.blocks, kblock{addr: addr, size: size, used: n})
	k.top += size
	k.hint = len(k.blocks) - 1
	return addr
}

// reuse hands out the first free block of at least size bytes, split if
// much bigger, or returns 0.
func (k *kernel) reuse(n, size uint64) uint64 {
	for i := range k.blocks {
		b := &k.blocks[i]
		if !b.free || b.size < size {
			continue
		}
		b.free, b.used = false, n
		k.nfree--
		if rest := b.size - size; rest >= kernelSplit {
			b.size = size
			k.blocks = append(k.blocks, kblock{})
			copy(k.blocks[i+2:], k.blocks[i+1:])
			k.blocks[i+1] = kblock{addr: k.blocks[i].addr + size, size: rest, free: true}
			k.nfree++
		}
		k.hint = i
		return k.blocks[i].addr
	}
	return 0
}

// grow makes the arena at least end bytes long, in 64 KiB pages as Wasm
// memory grows, doubling to keep growth amortized, never past the limit.
// New bytes are zero.
func (k *kernel) grow(end uint64) {
	const page = 64 << 10
	n := max(2*uint64(len(k.mem)), (end+page-1)&^(page-1))
	n = min(n, k.limit)
	mem := make([]byte, n)
	copy(mem, k.mem[:k.top])
	k.mem = mem
}

// free marks the live block at addr free; anything else is ignored.
// Freeing the input block empties the input, as in the Extism kernel.
func (k *kernel) free(addr uint64) {
	i := k.find(addr)
	if i < 0 {
		return
	}
	k.blocks[i].free = true
	k.nfree++
	if addr == k.inAddr {
		k.inLen = 0
	}
}

// write copies b into a new block and returns its address; 0 for an empty
// b, or if the arena is full (then ok is false).
func (k *kernel) write(b []byte) (addr uint64, ok bool) {
	if len(b) == 0 {
		return 0, true
	}
	addr = k.alloc(uint64(len(b)))
	if addr == 0 {
		return 0, false
	}
	copy(k.mem[addr-kernelBase:], b)
	return addr, true
}

// setRange validates [addr, addr+n) for output_set and input_set: an empty
// range is always accepted, a non-empty one only inside one live block.
func (k *kernel) setRange(addr, n uint64) bool {
	if n == 0 {
		return true
	}
	_, ok := k.span(addr, n)
	return ok
}

// output returns the call's output bytes (aliasing the arena).
func (k *kernel) output() []byte {
	if k.outLen == 0 {
		return nil
	}
	lo := k.outAddr - kernelBase
	return k.mem[lo : lo+k.outLen]
}
