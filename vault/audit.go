package vault

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

// Auditor writes audit records in batches, off the call path: Record only
// queues. A full queue makes Record wait rather than drop a record.
type Auditor struct {
	store  store.Store
	logger *slog.Logger
	queue  chan store.AuditRecord
	done   chan struct{}
	once   sync.Once
	// flushEvery bounds how long a record waits in the queue.
	flushEvery time.Duration
	// observer, if set (Observe), hears of full queues and writes.
	observer atomic.Pointer[AuditObserver]
}

// auditBatch is the most records written in one transaction.
const auditBatch = 512

// NewAuditor starts an Auditor writing to st. Close it to flush.
func NewAuditor(st store.Store, logger *slog.Logger) *Auditor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Auditor{store: st, logger: logger, queue: make(chan store.AuditRecord, 8*auditBatch),
		done: make(chan struct{}), flushEvery: 100 * time.Millisecond}
	go a.run()
	return a
}

// Record queues r for writing.
func (a *Auditor) Record(r store.AuditRecord) {
	select {
	case a.queue <- r:
	default:
		// The store is behind: wait, but let it be seen.
		if o := a.auditObserver(); o != nil {
			o.AuditQueueFull()
		}
		a.queue <- r
	}
}

func (a *Auditor) run() {
	defer close(a.done)
	batch := make([]store.AuditRecord, 0, auditBatch)
	tick := time.NewTicker(a.flushEvery)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		err := a.store.AppendAudit(context.Background(), batch)
		if o := a.auditObserver(); o != nil {
			o.AuditWritten(len(batch), err)
		}
		if err != nil {
			a.logger.Error("audit records lost: the store refused them", "records", len(batch), "error", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case r, ok := <-a.queue:
			if !ok {
				flush()
				return
			}
			batch = append(batch, r)
			if len(batch) == auditBatch {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// Close writes what is queued and stops. Record must not be called after.
func (a *Auditor) Close() {
	a.once.Do(func() { close(a.queue) })
	<-a.done
}
