package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// grantsChannel is where migration 0004's trigger announces grant changes.
const grantsChannel = "alterhost_grants"

// WatchGrants implements store.GrantWatcher with LISTEN on one pooled
// connection. A lost connection is retried with backoff, and changed("",
// "") tells the caller that changes made meanwhile were not heard.
func (s *Store) WatchGrants(ctx context.Context, changed func(subject, provider string)) error {
	backoff := 100 * time.Millisecond
	for first := true; ; first = false {
		err := s.listen(ctx, changed, !first)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if first && err != nil && !isConnectionLoss(err) {
			return fmt.Errorf("postgres: watch grants: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// listen holds one LISTEN until its connection fails or ctx ends. After a
// reconnect (resumed), whatever changed while nobody listened is unknown.
func (s *Store) listen(ctx context.Context, changed func(subject, provider string), resumed bool) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries LISTEN state; it must not go back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+grantsChannel); err != nil {
		return err
	}
	if resumed {
		changed("", "")
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var sp [2]string
		if json.Unmarshal([]byte(n.Payload), &sp) != nil {
			changed("", "") // not ours to read: forget everything, to be safe
			continue
		}
		changed(sp[0], sp[1])
	}
}

// isConnectionLoss tells a broken connection, worth retrying, from a
// refusal such as a missing permission.
func isConnectionLoss(err error) bool {
	var pgErr interface{ SQLState() string }
	return !errors.As(err, &pgErr)
}
