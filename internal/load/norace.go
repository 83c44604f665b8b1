//go:build !race

package load

// Race is true when the race detector is on (see race.go).
const Race = false
