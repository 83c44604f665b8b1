package vault

import "time"

// SetClock replaces the vault's clock, for tests of time-bound behaviour.
func (v *Vault) SetClock(now func() time.Time) { v.now = now }
