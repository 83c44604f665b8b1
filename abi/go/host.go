//go:build wasip1

package alter

//go:wasmimport extism:host/env config_get
func kernelConfigGet(key uint64) uint64

//go:wasmimport extism:host/env log_debug
func kernelLogDebug(msg uint64)

//go:wasmimport extism:host/env log_info
func kernelLogInfo(msg uint64)

//go:wasmimport extism:host/env log_warn
func kernelLogWarn(msg uint64)

//go:wasmimport extism:host/env log_error
func kernelLogError(msg uint64)

// Setting returns the value of the plugin setting key: the operator's
// NAME.config.json, else the default the manifest's "config" declares.
// ok is false for a setting with neither. Settings are never secrets;
// credentials stay with the host.
func Setting(key string) (value string, ok bool) {
	if key == "" {
		return "", false
	}
	k := writeBlock([]byte(key))
	off := kernelConfigGet(k)
	kernelFree(k)
	if off == 0 {
		return "", false
	}
	v := readBlock(off)
	kernelFree(off)
	return string(v), true
}

// Level is the severity of a log line.
type Level int

// The levels the host's log knows, lowest first.
const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)

// Log writes msg to the host's log at level, tagged with the plugin. The
// host drops lines below its own level, so debug lines cost little.
func Log(level Level, msg string) {
	if msg == "" {
		return
	}
	// The host frees the block.
	off := writeBlock([]byte(msg))
	switch level {
	case LevelDebug:
		kernelLogDebug(off)
	case LevelInfo:
		kernelLogInfo(off)
	case LevelWarn:
		kernelLogWarn(off)
	default:
		kernelLogError(off)
	}
}
