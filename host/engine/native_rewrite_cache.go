package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The rewrite cache.
//
// A warm start finds a module's machine code in wazero's cache, keyed by
// the bytes compiled, which here are the instrumented bytes: so the
// rewrite (native_interrupt.go) would still run at every start, to learn
// the key. For a 3.6 MB Go guest it takes 15-40 ms, about as long as
// loading its cached machine code. So the result is kept beside wazero's
// cache, keyed by the SHA-256 of the module as given (a plugin cannot make
// its bytes collide with another's): the instrumented module, or the
// reason the module cannot be instrumented, so a module compiled unchanged
// is not decoded again either.
//
// An entry is "alterhost-rewrite" + a kind byte ('I' instrumented, 'N' not)
// + the CRC-32C of the payload + the payload. One that does not check out
// (torn by a crash, rotted) is ignored and written again. Entries are
// written to a temporary file and renamed into place, so readers never see
// half of one.

// rewriteVersion names the rewrite's output format. Change it whenever
// instrument's output for a module changes (TestRewriteVersion tells),
// so entries made by an older rewrite are not used.
const rewriteVersion = 1

// rewriteCacheName is the rewrite cache's folder inside CacheDir.
var rewriteCacheName = fmt.Sprintf("alterhost-rewrite-v%d", rewriteVersion)

const rewriteMagic = "alterhost-rewrite"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// instrument is instrument(wasm) through the engine's rewrite cache.
func (e *nativeEngine) instrument(wasm []byte) ([]byte, error) {
	if e.rewrites == "" {
		return instrument(wasm)
	}
	sum := sha256.Sum256(wasm)
	path := filepath.Join(e.rewrites, hex.EncodeToString(sum[:]))
	if kind, payload, ok := readRewrite(path); ok {
		if kind == 'I' {
			return payload, nil
		}
		return nil, fmt.Errorf("%w: %s", errNoRewrite, payload)
	}
	out, err := instrument(wasm)
	switch {
	case err == nil:
		e.saveRewrite(path, 'I', out)
	case errors.Is(err, errNoRewrite):
		e.saveRewrite(path, 'N', []byte(err.Error()))
	}
	return out, err
}

// readRewrite returns the entry at path, if there is a sound one.
func readRewrite(path string) (kind byte, payload []byte, ok bool) {
	b, err := os.ReadFile(path)
	n := len(rewriteMagic)
	if err != nil || len(b) < n+5 || string(b[:n]) != rewriteMagic {
		return 0, nil, false
	}
	kind, sum, payload := b[n], binary.LittleEndian.Uint32(b[n+1:n+5]), b[n+5:]
	if kind != 'I' && kind != 'N' || crc32.Checksum(payload, castagnoli) != sum {
		return 0, nil, false
	}
	if kind == 'I' && !bytes.HasPrefix(payload, []byte("\x00asm")) {
		return 0, nil, false
	}
	return kind, payload, true
}

// saveRewrite stores an entry. The cache only saves time, so a failure to
// write it is logged and otherwise ignored.
func (e *nativeEngine) saveRewrite(path string, kind byte, payload []byte) {
	err := func() error {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
		if err != nil {
			return err
		}
		head := append([]byte(rewriteMagic), kind)
		head = binary.LittleEndian.AppendUint32(head, crc32.Checksum(payload, castagnoli))
		_, err = f.Write(head)
		if err == nil {
			_, err = f.Write(payload)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
		}
		return err
	}()
	if err != nil {
		e.logger.Warn("the native engine could not cache an instrumented module", "error", err)
	}
}
