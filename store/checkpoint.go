package store

import "database/sql"

// Checkpoints (copying the WAL back into the database file, with an fsync
// of each) run on a connection of their own in the checkpointer goroutine,
// every checkpointEvery commits, so the writer does not stall on them. The
// writer's own automatic checkpoint stays on as a backstop, at
// backstopCheckpointPages: it only has work when the checkpointer falls
// behind, and it lets the WAL restart from its beginning under sustained
// load (SQLite restarts the WAL at the start of a write transaction once
// everything in it has been checkpointed).
const (
	checkpointEvery         = 32
	backstopCheckpointPages = 8192 // 32 MiB of 4 KiB pages
)

// committed notes one more commit and wakes the checkpointer when a
// checkpoint is due. It never blocks.
func (s *Store) committed() {
	if s.sinceCheckpoint.Add(1) < checkpointEvery {
		return
	}
	select {
	case s.checkpoints <- struct{}{}:
	default: // one is already pending
	}
}

// checkpointer runs a passive checkpoint (never waiting for readers or the
// writer) each time committed asks for one, until checkpoints is closed.
func (s *Store) checkpointer(db *sql.DB) {
	for range s.checkpoints {
		s.sinceCheckpoint.Store(0)
		var busy, frames, done int
		// An error (the database busy, or closing) only delays the
		// checkpoint: the next one, or the writer's backstop, catches up.
		if err := db.QueryRowContext(bg, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err == nil {
			s.stats.checkpoints.Add(1)
		}
	}
}
