//go:build race

package engine_test

// raceEnabled is true under -race, where compiling a Go guest to machine
// code takes ten times as long; tests then compile fewer of them.
const raceEnabled = true
