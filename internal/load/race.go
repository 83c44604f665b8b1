//go:build race

package load

// Race is true when the race detector is on: the process then runs several
// times slower, and a soak scales its rate down so it measures the system
// under test rather than the instrumented client.
const Race = true
