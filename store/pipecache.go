package store

import "database/sql"

// pipeCache keeps pipe_seq rows in the writer goroutine's memory, so that
// an append neither reads its pipe's row nor writes it: the rows an open
// transaction changed are written once per pipe just before it commits
// (flush), not once per append. Only the writer goroutine uses it.
//
//   - committed holds rows as of the last commit;
//   - pending holds the rows the open transaction read or changed, dirty
//     the ones to write before COMMIT;
//   - a rollback forgets pending; a failed COMMIT (outcome unknown) forgets
//     everything; statements that change pipe_seq with SQL of their own
//     flush first and forget the pipe (forget).
type pipeCache struct {
	committed map[pipeID]pipeState
	pending   map[pipeID]pipeState
	dirty     map[pipeID]bool
	forgotten map[pipeID]bool // dropped from committed at the next commit
}

type pipeID struct {
	dev  int64
	pipe string
}

// maxCachedPipes bounds committed; past it the cache starts over.
const maxCachedPipes = 1 << 16

func (c *pipeCache) init() {
	c.committed = make(map[pipeID]pipeState)
	c.pending = make(map[pipeID]pipeState)
	c.dirty = make(map[pipeID]bool)
	c.forgotten = make(map[pipeID]bool)
}

// get returns the pipe's row as the open transaction sees it.
func (c *pipeCache) get(tx *sql.Tx, dev int64, pipe string) (pipeState, error) {
	k := pipeID{dev, pipe}
	if st, ok := c.pending[k]; ok {
		return st, nil
	}
	if st, ok := c.committed[k]; ok && !c.forgotten[k] {
		return st, nil
	}
	st, err := readPipeState(tx, dev, pipe)
	if err != nil {
		return st, err
	}
	c.pending[k] = st
	return st, nil
}

// set records the pipe's new row, written at flush.
func (c *pipeCache) set(dev int64, pipe string, st pipeState) {
	k := pipeID{dev, pipe}
	c.pending[k] = st
	c.dirty[k] = true
}

// flush writes the dirty rows in tx.
func (c *pipeCache) flush(tx *sql.Tx) error {
	for k := range c.dirty {
		st := c.pending[k]
		if _, err := tx.ExecContext(bg, `INSERT INTO pipe_seq (dev_id, pipe, last_seq, stored, keep) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (dev_id, pipe) DO UPDATE SET
				last_seq = max(last_seq, excluded.last_seq), stored = excluded.stored, keep = excluded.keep`,
			k.dev, k.pipe, st.lastSeq, st.stored, st.keep); err != nil {
			return err
		}
		st.found = true
		c.pending[k] = st
		delete(c.dirty, k)
	}
	return nil
}

// forget flushes the dirty rows and drops the pipe's row: the caller is
// about to change it with SQL of its own.
func (c *pipeCache) forget(tx *sql.Tx, dev int64, pipe string) error {
	if err := c.flush(tx); err != nil {
		return err
	}
	k := pipeID{dev, pipe}
	delete(c.pending, k)
	c.forgotten[k] = true
	return nil
}

// committedTx moves what the committed transaction saw into committed.
func (c *pipeCache) committedTx() {
	for k := range c.forgotten {
		delete(c.committed, k)
	}
	if len(c.committed)+len(c.pending) > maxCachedPipes {
		clear(c.committed)
	}
	for k, st := range c.pending {
		if !c.forgotten[k] {
			c.committed[k] = st
		}
	}
	c.rolledBack()
}

// rolledBack forgets what the open transaction did.
func (c *pipeCache) rolledBack() {
	clear(c.pending)
	clear(c.dirty)
	clear(c.forgotten)
}

// unknown forgets everything (a COMMIT whose outcome is not known).
func (c *pipeCache) unknown() {
	clear(c.committed)
	c.rolledBack()
}
