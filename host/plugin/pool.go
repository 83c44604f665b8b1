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

// Isolation says which calls may run on the same guest instance. A guest
// keeps whatever it likes in its memory between calls (caches, globals,
// the last input in a static buffer), so an instance that served one
// person and then serves another can hand the second what the first left.
type Isolation int

const (
	// IsolatePerson reuses an instance only for calls of the person who
	// used it first: no guest state crosses from one person to another.
	// The default.
	IsolatePerson Isolation = iota
	// IsolatePooled reuses any healthy instance for any call: the fastest
	// mode, for plugins the operator trusts to keep nothing between calls.
	IsolatePooled
	// IsolateCall runs every call on an instance that has run nothing
	// before, and closes it afterwards; spares are made in the background.
	//
	// Under IsolatePerson too, once several people use a plugin, a spare
	// is kept while the pool has room, so a newcomer's first call does not
	// wait for an instantiation.
	IsolateCall
)

// ParseIsolation reads an isolation mode by its name: person, pooled or
// call.
func ParseIsolation(s string) (Isolation, error) {
	for _, i := range []Isolation{IsolatePerson, IsolatePooled, IsolateCall} {
		if i.String() == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown isolation %q: want person, pooled or call", s)
}

// MarshalText and UnmarshalText make an Isolation a flag (flag.TextVar)
// and a config value.
func (i Isolation) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText: see MarshalText.
func (i *Isolation) UnmarshalText(b []byte) (err error) {
	*i, err = ParseIsolation(string(b))
	return err
}

func (i Isolation) String() string {
	switch i {
	case IsolatePerson:
		return "person"
	case IsolatePooled:
		return "pooled"
	case IsolateCall:
		return "call"
	}
	return fmt.Sprintf("isolation(%d)", int(i))
}

// pool bounds how many instances of one module are alive and running, and
// keeps healthy ones for reuse within its isolation, so a warm call
// neither compiles nor instantiates. An instance serves one call at a
// time: Extism instances share mutable state, and two callers on one
// would see each other's output.
type pool struct {
	module    engine.Module
	isolation Isolation
	size      int
	slots     chan struct{} // one token per instance out on a call or being made as a spare
	wait      time.Duration
	stopped   chan struct{}
	stopOnce  sync.Once

	mu sync.Mutex
	// idle holds the healthy instances waiting for work, least recently
	// used first.
	idle []idleInstance
	// busy counts instances out on a call or being made for a spare:
	// with idle, the instances alive, which size bounds.
	busy int
	// spares tracks the goroutines making spares, which close waits for.
	spares sync.WaitGroup

	// instantiations counts instances made after the pool was warmed.
	instantiations atomic.Int64
	// metrics is the plugin's series, or nil.
	metrics *metrics.Plugin
}

// idleInstance is an instance waiting in the pool and whom it served.
type idleInstance struct {
	inst engine.Instance
	// used is false for an instance that has run no call: it holds no
	// one's data and may serve anyone.
	used bool
	// owner is the person whose calls it served (IsolatePerson).
	owner string
}

func newPool(m engine.Module, size int, wait time.Duration, isolation Isolation) *pool {
	return &pool{
		module:    m,
		isolation: isolation,
		size:      size,
		slots:     make(chan struct{}, size),
		wait:      wait,
		stopped:   make(chan struct{}),
	}
}

// get takes a slot, waiting at most the pool's queue timeout, then an idle
// instance that subject may use or, failing that, a new one.
func (p *pool) get(ctx context.Context, subject string) (engine.Instance, error) {
	// A stopped pool turns callers away at once, rather than letting them
	// compete with close for the slots.
	select {
	case <-p.stopped:
		return nil, errRetired
	default:
	}
	start := time.Now()
	timer := time.NewTimer(p.wait)
	defer timer.Stop()
	select {
	case p.slots <- struct{}{}:
		p.metrics.Waited(time.Since(start))
	case <-timer.C:
		p.metrics.Waited(time.Since(start))
		return nil, fmt.Errorf("all %d instances of this plugin stayed busy for %s; try again", p.size, p.wait)
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
	inst, evicted, spare := p.take(subject)
	if evicted != nil {
		p.metrics.Isolated()
		evicted.Close(context.WithoutCancel(ctx))
	}
	if spare {
		p.spare()
	}
	if inst != nil {
		p.metrics.AddInUse(1)
		return inst, nil
	}
	p.instantiations.Add(1)
	start = time.Now()
	inst, err := p.module.Instantiate(ctx)
	if err != nil {
		p.mu.Lock()
		p.busy--
		p.mu.Unlock()
		<-p.slots
		return nil, err
	}
	p.metrics.Instantiated(time.Since(start), true)
	p.metrics.AddInUse(1)
	return inst, nil
}

// take picks the idle instance subject's call may run on and counts it
// busy. With none, it returns nil and counts the instance the caller is
// about to make; if that would exceed the pool's size, it also hands back
// the least recently used idle instance to close first. spare says the
// pool should make a clean instance ready for the next call: always under
// IsolateCall once this call took or makes one, and under IsolatePerson
// when a newcomer found other people's instances (with one person, as in
// owner mode, no spare would ever be used).
func (p *pool) take(subject string) (inst, evict engine.Instance, spare bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy++
	pick, others := -1, false
	for i := len(p.idle) - 1; i >= 0; i-- {
		c := p.idle[i]
		if p.isolation == IsolatePooled || p.isolation == IsolatePerson && c.used && c.owner == subject {
			pick = i // the most recently used: its memory is warmest
			break
		}
		if !c.used && pick < 0 {
			pick = i // a clean one, if nothing better turns up
		}
		others = others || c.used
	}
	fresh := pick < 0 || !p.idle[pick].used
	spare = fresh && (p.isolation == IsolateCall || p.isolation == IsolatePerson && others)
	if pick >= 0 {
		c := p.idle[pick]
		p.idle = append(p.idle[:pick], p.idle[pick+1:]...)
		p.metrics.AddIdle(-1)
		return c.inst, nil, spare
	}
	// Every busy instance holds a slot, so busy <= size and closing the
	// least recently used idle instance makes room.
	if len(p.idle)+p.busy > p.size && len(p.idle) > 0 {
		evict = p.idle[0].inst
		p.idle = p.idle[1:]
		p.metrics.AddIdle(-1)
	}
	return nil, evict, spare
}

// put returns subject's instance and its slot. A healthy instance is kept
// for the next call its isolation allows; any other is closed, as its
// state can no longer be trusted.
func (p *pool) put(ctx context.Context, inst engine.Instance, subject string, healthy bool) {
	p.metrics.AddInUse(-1)
	if !healthy {
		p.metrics.Discarded()
	} else if p.isolation == IsolateCall {
		p.metrics.Isolated()
		healthy = false
	}
	p.mu.Lock()
	p.busy--
	select {
	case <-p.stopped:
		healthy = false
	default:
	}
	if healthy {
		p.idle = append(p.idle, idleInstance{inst: inst, used: true, owner: subject})
		p.metrics.AddIdle(1)
		inst = nil
	}
	p.mu.Unlock()
	if inst != nil {
		inst.Close(context.WithoutCancel(ctx))
	}
	<-p.slots
}

// warm adds an instance that has run nothing, made at load.
func (p *pool) warm(inst engine.Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = append(p.idle, idleInstance{inst: inst})
	p.metrics.AddIdle(1)
}

// spare makes, in the background, an instance that has run nothing, so
// the next call that needs one (IsolateCall, or a newcomer under
// IsolatePerson) need not wait for it; nothing is made when the pool
// holds one already or is full.
func (p *pool) spare() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stopped:
		return
	default:
	}
	if len(p.idle)+p.busy >= p.size {
		return
	}
	for _, c := range p.idle {
		if !c.used {
			return
		}
	}
	// A spare holds a slot while it is made, as a call does, so calls and
	// spares together never make more than size instances.
	select {
	case p.slots <- struct{}{}:
	default:
		return
	}
	p.busy++
	p.spares.Add(1)
	go func() {
		defer p.spares.Done()
		defer func() { <-p.slots }()
		// Not the caller's context: a spare belongs to no one's call.
		ctx := context.Background()
		p.instantiations.Add(1)
		start := time.Now()
		inst, err := p.module.Instantiate(ctx)
		if err == nil {
			p.metrics.Instantiated(time.Since(start), true)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.busy--
		select {
		case <-p.stopped:
			err = errRetired
		default:
		}
		if err != nil {
			if inst != nil {
				inst.Close(ctx)
			}
			return // the next call makes its own and tries again
		}
		p.idle = append(p.idle, idleInstance{inst: inst})
		p.metrics.AddIdle(1)
	}()
}

// errRetired is what a call gets from a pool that stopped: the plugin was
// replaced or is shutting down.
var errRetired = errors.New("this version of the plugin was retired")

// close stops handing out instances, waits for the calls in progress to
// return theirs (or for ctx to end) and for spares being made, and closes
// every instance.
func (p *pool) close(ctx context.Context) {
	p.mu.Lock()
	p.stopOnce.Do(func() { close(p.stopped) })
	p.mu.Unlock()
	// Holding every slot means no call is running. The slots are given
	// back afterwards, so that a second close returns at once; calls that
	// take them are turned away as the pool has stopped.
	held := 0
	defer func() {
		for range held {
			<-p.slots
		}
	}()
	for range p.size {
		select {
		case p.slots <- struct{}{}:
			held++
		case <-ctx.Done():
			p.closeIdle(ctx)
			return
		}
	}
	p.spares.Wait()
	p.closeIdle(ctx)
}

func (p *pool) closeIdle(ctx context.Context) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		p.metrics.AddIdle(-1)
		c.inst.Close(ctx)
	}
}

// inspect reads the memories of the idle instances, holding the pool
// meanwhile.
func (p *pool) inspect() ([]map[string][]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string][]byte
	for _, c := range p.idle {
		in, ok := c.inst.(engine.Inspector)
		if !ok {
			return nil, fmt.Errorf("this engine cannot show instance memory")
		}
		m, err := in.Memories()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
