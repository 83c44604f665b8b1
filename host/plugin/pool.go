package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/host/metrics"
)

// pool bounds how many instances of one module run at once and keeps the
// healthy ones for reuse, so a warm call neither compiles nor instantiates.
// An instance serves one call at a time: Extism instances share mutable
// state, and two callers on one would see each other's output.
type pool struct {
	module   engine.Module
	slots    chan struct{}        // one token per running call
	idle     chan engine.Instance // healthy instances waiting for work
	wait     time.Duration
	stopped  chan struct{}
	stopOnce sync.Once
	// instantiations counts instances made after the pool was warmed.
	instantiations atomic.Int64
	// metrics is the plugin's series, or nil.
	metrics *metrics.Plugin
}

func newPool(m engine.Module, size int, wait time.Duration) *pool {
	return &pool{
		module:  m,
		slots:   make(chan struct{}, size),
		idle:    make(chan engine.Instance, size),
		wait:    wait,
		stopped: make(chan struct{}),
	}
}

// get takes a slot, waiting at most the pool's queue timeout, then an idle
// instance or, failing that, a new one.
func (p *pool) get(ctx context.Context) (engine.Instance, error) {
	start := time.Now()
	timer := time.NewTimer(p.wait)
	defer timer.Stop()
	select {
	case p.slots <- struct{}{}:
		p.metrics.Waited(time.Since(start))
	case <-timer.C:
		p.metrics.Waited(time.Since(start))
		return nil, fmt.Errorf("all %d instances of this plugin stayed busy for %s; try again", cap(p.slots), p.wait)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stopped:
		return nil, errRetired
	}
	// A slot may have been free as the pool stopped; a stopped pool's
	// module is about to close, so no call may start on it.
	select {
	case <-p.stopped:
		<-p.slots
		return nil, errRetired
	default:
	}
	select {
	case inst := <-p.idle:
		p.metrics.AddIdle(-1)
		p.metrics.AddInUse(1)
		return inst, nil
	default:
	}
	p.instantiations.Add(1)
	start = time.Now()
	inst, err := p.module.Instantiate(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	p.metrics.Instantiated(time.Since(start), true)
	p.metrics.AddInUse(1)
	return inst, nil
}

// put returns a slot. A healthy instance is kept for the next call; any
// other is closed, as its state can no longer be trusted. acquired says the
// caller holds a slot from get (false when warming the pool).
func (p *pool) put(ctx context.Context, inst engine.Instance, healthy, acquired bool) {
	if acquired {
		p.metrics.AddInUse(-1)
	}
	if !healthy {
		p.metrics.Discarded()
	}
	select {
	case <-p.stopped:
		healthy = false
	default:
	}
	if healthy {
		select {
		case p.idle <- inst:
			p.metrics.AddIdle(1)
		default:
			inst.Close(ctx)
		}
	} else {
		inst.Close(context.WithoutCancel(ctx))
	}
	if acquired {
		<-p.slots
	}
}

// errRetired is what a call gets from a pool that stopped: the plugin was
// replaced or is shutting down.
var errRetired = errors.New("this version of the plugin was retired")

// close stops handing out instances, waits for the calls in progress to
// return theirs (or for ctx to end), and closes every instance.
func (p *pool) close(ctx context.Context) {
	p.stopOnce.Do(func() { close(p.stopped) })
	// Holding every slot means no call is running.
	for range cap(p.slots) {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			p.closeIdle(ctx)
			return
		}
	}
	p.closeIdle(ctx)
}

func (p *pool) closeIdle(ctx context.Context) {
	for {
		select {
		case inst := <-p.idle:
			p.metrics.AddIdle(-1)
			inst.Close(ctx)
		default:
			return
		}
	}
}

// inspect reads the memories of the idle instances, holding each out of
// the pool meanwhile.
func (p *pool) inspect() ([]map[string][]byte, error) {
	var taken []engine.Instance
	defer func() {
		for _, inst := range taken {
			p.idle <- inst
		}
	}()
	var out []map[string][]byte
	for {
		select {
		case inst := <-p.idle:
			taken = append(taken, inst)
			in, ok := inst.(engine.Inspector)
			if !ok {
				return nil, fmt.Errorf("this engine cannot show instance memory")
			}
			m, err := in.Memories()
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		default:
			return out, nil
		}
	}
}
