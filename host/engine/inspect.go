package engine

import (
	"errors"
	"reflect"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
)

// Inspector is implemented by instances whose memories can be read, so
// security tests can prove what never entered them (a credential, say).
type Inspector interface {
	// Memories returns copies of the instance's linear memories by name:
	// "guest" for the plugin's own, "kernel" for the Extism kernel's.
	Memories() (map[string][]byte, error)
}

// Memories implements Inspector. The Extism SDK exposes the kernel's memory
// but not the guest's, so the guest module is read from the SDK's private
// field; the SDK version is pinned by go.sum, and a rename fails here
// loudly rather than letting a scan pass on nothing.
func (i *extismInstance) Memories() (map[string][]byte, error) {
	f := reflect.ValueOf(i.p).Elem().FieldByName("mainModule")
	if !f.IsValid() || f.Type() != reflect.TypeFor[api.Module]() {
		return nil, errors.New("engine: this Extism SDK version hides the guest module differently; update host/engine/inspect.go")
	}
	guest, _ := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(api.Module)
	out := map[string][]byte{"kernel": snapshot(i.p.Memory())}
	if guest == nil || guest.Memory() == nil {
		return nil, errors.New("engine: the guest has no memory to read")
	}
	out["guest"] = snapshot(guest.Memory())
	return out, nil
}

func snapshot(m api.Memory) []byte {
	b, _ := m.Read(0, m.Size())
	return append([]byte(nil), b...)
}

var _ Inspector = (*extismInstance)(nil)
