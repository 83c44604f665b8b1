//go:build !race

package engine_test

// raceEnabled is true under -race; see race_test.go.
const raceEnabled = false
