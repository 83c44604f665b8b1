package vault

import "time"

// SetClock replaces the vault's clock, for tests of time-bound behaviour.
func (v *Vault) SetClock(now func() time.Time) { v.now = now }

// SetRevokeLimits replaces how many revocations of replaced grants may be
// in flight (n, from now on) and how long each may take.
func (v *Vault) SetRevokeLimits(n int, timeout time.Duration) {
	v.revoking, v.revokeTimeout = make(chan struct{}, n), timeout
}
