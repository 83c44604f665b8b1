package plugin

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/engine"
)

// countingModule is an engine.Module whose instances record whom they
// served, and which counts the instances alive and the most ever alive.
type countingModule struct {
	delay     time.Duration // of each Instantiate, so spares overlap calls
	live, max atomic.Int64
}

type countingInstance struct {
	m      *countingModule
	mu     sync.Mutex
	people map[string]bool
	closed bool
}

func (m *countingModule) Instantiate(context.Context) (engine.Instance, error) {
	time.Sleep(m.delay)
	n := m.live.Add(1)
	for {
		if old := m.max.Load(); n <= old || m.max.CompareAndSwap(old, n) {
			break
		}
	}
	return &countingInstance{m: m, people: map[string]bool{}}, nil
}

func (m *countingModule) Close(context.Context) error { return nil }

// Call takes the person as its export name.
func (i *countingInstance) Call(_ context.Context, person string, _ []byte) ([]byte, error) {
	i.mu.Lock()
	i.people[person] = true
	n := len(i.people)
	i.mu.Unlock()
	time.Sleep(200 * time.Microsecond)
	return []byte(fmt.Sprint(n)), nil
}

func (i *countingInstance) Close(context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.closed {
		i.closed = true
		i.m.live.Add(-1)
	}
	return nil
}

// TestPoolBound runs more people than instances through pools of each
// isolation, with slow instantiations so that spares are being made while
// calls evict: the instances alive never exceed the pool's size, no
// instance serves two people unless pooled, and close leaves none alive.
func TestPoolBound(t *testing.T) {
	for _, iso := range []Isolation{IsolatePerson, IsolateCall, IsolatePooled} {
		t.Run(iso.String(), func(t *testing.T) {
			const size = 3
			m := &countingModule{delay: 2 * time.Millisecond}
			p := newPool(m, size, 10*time.Second, iso)
			inst, _ := m.Instantiate(context.Background())
			p.warm(inst)
			var wg sync.WaitGroup
			for c := range 6 {
				wg.Go(func() {
					for r := range 40 {
						person := fmt.Sprint("person", (c+r)%5)
						inst, err := p.get(context.Background(), person)
						if err != nil {
							t.Error(err)
							return
						}
						out, _ := inst.Call(context.Background(), person, nil)
						if iso != IsolatePooled && string(out) != "1" {
							t.Errorf("an instance served %s people; want 1", out)
						}
						p.put(context.Background(), inst, person, true)
					}
				})
			}
			wg.Wait()
			if n := m.max.Load(); n > size {
				t.Errorf("%d instances alive at once; the pool's size is %d", n, size)
			}
			p.close(context.Background())
			if n := m.live.Load(); n != 0 {
				t.Errorf("%d instances alive after close", n)
			}
			p.close(context.Background()) // a second close returns
			if _, err := p.get(context.Background(), "late"); err != errRetired {
				t.Errorf("get after close: %v; want errRetired", err)
			}
		})
	}
}
