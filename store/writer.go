package store

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The write path:
//
//   - one writer goroutine runs every request as soon as it arrives inside
//     the open transaction and commits it with many requests (group
//     commit). COMMIT writes the WAL frames without fsync
//     (synchronous=NORMAL), so once it returns the batch survives the death
//     of the process.
//   - With SyncNormal the writer then answers the batch's callers.
//   - With SyncFull a sync worker fsyncs the WAL for the batch and only
//     then answers its callers, so an acknowledged write also survives a
//     power loss or an OS crash. The writer goes on running requests while
//     the disk works; it commits when a sync worker is free (up to
//     maxSyncs fsyncs are in flight at once), so the requests that arrive
//     during an fsync form the next batch.
//
// A committed batch is visible to readers before its fsync completes: with
// SyncFull a reader may see a write that its writer has not yet been told
// about (and that a power loss in between would undo).

// maxSyncs is how many fsyncs of the WAL may be in flight at once. One:
// measured here, two concurrent fsyncs each took twice as long (the disk
// serializes them) and only made batches smaller.
const maxSyncs = 1

// request is one caller's write. fn runs in the writer goroutine inside a
// transaction shared with other callers' writes.
type request struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	done chan error // buffered: the writer never blocks answering
}

// Stats counts the store's write work since Open.
type Stats struct {
	// Commits is the number of transactions committed.
	Commits uint64
	// Writes is the number of writes committed (Writes/Commits is the
	// average group-commit batch).
	Writes uint64
	// Failed is the number of writes that returned an error.
	Failed uint64
	// CommitTime is the time the writer spent in committed transactions,
	// from BEGIN to the end of COMMIT.
	CommitTime time.Duration
	// Syncs is the number of WAL fsyncs done for acknowledgements
	// (SyncFull); each covers one or more commits.
	Syncs uint64
	// SyncTime is the time spent in those fsyncs.
	SyncTime time.Duration
	// Checkpoints is the number of background WAL checkpoints run.
	Checkpoints uint64
}

type writerStats struct {
	commits, writes, failed, nanos atomic.Uint64
	syncs, syncNanos, checkpoints  atomic.Uint64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:     s.stats.commits.Load(),
		Writes:      s.stats.writes.Load(),
		Failed:      s.stats.failed.Load(),
		CommitTime:  time.Duration(s.stats.nanos.Load()),
		Syncs:       s.stats.syncs.Load(),
		SyncTime:    time.Duration(s.stats.syncNanos.Load()),
		Checkpoints: s.stats.checkpoints.Load(),
	}
}

// write runs fn in the writer goroutine and returns once the transaction
// holding it is durable (committed, and with SyncFull fsynced), or fn failed
// (then nothing of fn commits; the other writes of the batch do), or ctx
// ended. When ctx ends after the write was queued, write returns ctx's error
// and the write may still commit.
//
// fn may run more than once (when another write of its batch fails, the
// batch is rolled back and runs again): it must have no effect outside the
// transaction and must reset its results on every run. It keeps its
// results in variables of its own, which the caller reads only when write
// returns nil, and must not read memory the caller may change after an
// early return (copy inputs before calling write).
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{ctx: ctx, fn: fn, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return wrap(op, errClosed())
	}
	select {
	case s.reqs <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return wrap(op, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the one goroutine that writes. It runs each request as soon as
// it arrives, inside the open transaction, and commits when the batch is
// full or when committing now pays off: with SyncNormal when no request is
// waiting, with SyncFull when a sync worker is free (while all are waiting
// for the disk, the writer keeps adding requests to the open transaction).
// It returns when Close has closed reqs and everything queued has been
// committed or answered.
func (s *Store) writer() {
	b := &batch{s: s}
	yielded := false
	for {
		if len(b.reqs) == 0 {
			r, ok := <-s.reqs
			if !ok {
				return
			}
			b.add(r)
			continue
		}
		if len(b.reqs) >= s.cfg.MaxBatch {
			b.commit()
			continue
		}
		if s.cfg.Sync == SyncNormal {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					b.commit()
					return
				}
				b.add(r)
			default:
				if !yielded {
					// Callers answered by the last commit are runnable but
					// may not have submitted their next write yet: let them
					// run, so they join this batch. With nothing else
					// runnable this returns at once.
					runtime.Gosched()
					yielded = true
					continue
				}
				yielded = false
				b.commit()
			}
			continue
		}
		if !b.holding {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					b.commit()
					return
				}
				b.add(r)
				continue
			case s.syncSlots <- struct{}{}: // a sync worker is free
				b.holding = true
			}
		}
		// Take what is already queued before committing: it would
		// otherwise wait a whole fsync for the next commit.
	drain:
		for len(b.reqs) < s.cfg.MaxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				b.add(r)
			default:
				break drain
			}
		}
		b.commit()
	}
}

// batch is the writer's open transaction and the requests run in it.
type batch struct {
	s        *Store
	tx       *sql.Tx
	reqs     []*request // run in tx, not yet committed
	start    time.Time
	failures int
	// holding says the writer holds a slot of syncSlots (SyncFull): the
	// next commit hands it to a sync worker, which frees it after its
	// fsync.
	holding bool
}

// maxRetries is how many failed writes a batch absorbs by running the
// others again in a new transaction; after that they commit one by one.
const maxRetries = 3

// add runs r in the open transaction, opening one when there is none.
func (b *batch) add(r *request) {
	if err := r.ctx.Err(); err != nil {
		b.s.answer(r, err)
		return
	}
	if b.tx == nil {
		tx, err := b.s.wdb.BeginTx(bg, nil)
		if err != nil {
			b.s.answer(r, err)
			return
		}
		b.tx, b.start = tx, time.Now()
	}
	if err := r.fn(b.tx); err != nil {
		b.fail(r, err)
		return
	}
	b.reqs = append(b.reqs, r)
}

// fail answers r, whose function failed, and rebuilds the transaction
// without it: the transaction is rolled back (nothing of r can commit) and
// the requests run before r run again. Request functions are repeatable
// (see write). After maxRetries failures the others commit alone.
func (b *batch) fail(r *request, err error) {
	_ = b.tx.Rollback() // fails harmlessly when SQLite already rolled back
	b.tx = nil
	b.s.pipes.rolledBack()
	b.s.answer(r, err)
	b.failures++
	redo := b.reqs
	b.reqs = nil
	for _, q := range redo {
		if b.failures >= maxRetries {
			b.commitAlone(q)
			continue
		}
		b.add(q)
	}
}

// commitAlone runs r in a transaction of its own and commits it. The open
// transaction is empty when it is called (fail has just rolled it back).
func (b *batch) commitAlone(r *request) {
	failures := b.failures
	b.failures = maxRetries // r failing rebuilds nothing
	b.add(r)
	b.commit()
	b.failures = failures
}

// commit commits the open transaction and hands its requests on to be
// answered once durable. With SyncFull a commit needs a slot of syncSlots:
// it uses the one the writer holds, else it waits for one. Without an open
// transaction it does nothing (a held slot stays held).
func (b *batch) commit() {
	if b.tx == nil {
		return
	}
	full := b.s.cfg.Sync == SyncFull
	if full && !b.holding {
		b.s.syncSlots <- struct{}{}
	}
	b.holding = false
	err := b.s.pipes.flush(b.tx)
	if err != nil {
		_ = b.tx.Rollback()
		b.s.pipes.rolledBack()
	} else if err = b.tx.Commit(); err == nil {
		b.s.pipes.committedTx()
	} else {
		b.s.pipes.unknown()
	}
	reqs := b.reqs
	b.tx, b.reqs, b.failures = nil, nil, 0
	if err != nil {
		if full {
			<-b.s.syncSlots // no fsync for this batch
		}
		// The outcome of a failed COMMIT is not certain (a write error may
		// leave a commit record in the WAL): report it, never run the
		// writes twice.
		b.s.answerAll(reqs, err)
		return
	}
	b.s.stats.commits.Add(1)
	b.s.stats.writes.Add(uint64(len(reqs)))
	b.s.stats.nanos.Add(uint64(time.Since(b.start)))
	b.s.committed()
	b.s.durable(reqs)
}

func (s *Store) answer(r *request, err error) {
	if err != nil {
		s.stats.failed.Add(1)
	}
	r.done <- err
}

func (s *Store) answerAll(reqs []*request, err error) {
	for _, r := range reqs {
		s.answer(r, err)
	}
}

// durable answers committed requests once their commit is durable: at once
// with SyncNormal, after a sync worker's fsync with SyncFull (the writer
// holds a slot of syncSlots for them).
func (s *Store) durable(reqs []*request) {
	if s.cfg.Sync == SyncNormal {
		s.answerAll(reqs, nil)
		return
	}
	s.syncq <- reqs
}

// run runs the writer, the sync workers and the checkpointer, and closes
// done once every request has been answered and they have all stopped.
func (s *Store) run() {
	var wg sync.WaitGroup
	for range maxSyncs {
		wg.Go(s.syncWorker)
	}
	wg.Go(func() { s.checkpointer(s.cdb) })
	s.writer()
	close(s.syncq)
	close(s.checkpoints)
	wg.Wait()
	close(s.done)
}

// syncWorker fsyncs the WAL for each batch the writer committed, answers
// the batch's callers and frees the writer's slot.
func (s *Store) syncWorker() {
	for reqs := range s.syncq {
		s.answerAll(reqs, s.syncWAL())
		// Let the callers just answered submit their next writes before
		// the writer may commit again, so that they join the next fsync
		// instead of waiting for the one after it.
		runtime.Gosched()
		<-s.syncSlots
	}
}

// syncWAL makes every committed transaction durable: it fsyncs the WAL
// file (frames written by COMMIT and not yet checkpointed live there; a
// checkpoint syncs the database file before the WAL may be reused, and a
// missing WAL has been checkpointed entirely).
func (s *Store) syncWAL() error {
	start := time.Now()
	f, err := os.OpenFile(s.path+"-wal", os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	s.stats.syncs.Add(1)
	s.stats.syncNanos.Add(uint64(time.Since(start)))
	return err
}
