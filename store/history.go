package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/cometql/cometql/pipes"
)

// History trimming is lazy, to keep appends cheap: a pipe may hold up to
// slack(keep) rows beyond its newest keep, deleted in bulk when the slack is
// used up, and every read shows only the newest keep (pipe_seq.keep). An
// operation that could make a slack row visible again (a larger keep, a
// deleted message) first trims the pipe exactly.

// slack is how many rows beyond keep a pipe may hold before a bulk trim.
func slack(keep int64) int64 { return keep / 4 }

// AppendHistory stores m and trims the pipe's history to its newest keep
// messages (keep <= 0 keeps none: only the sequence is recorded), in one
// transaction, and records m.Seq as the pipe's last sequence when it is the
// highest so far.
//
// Appends of one pipe may commit out of sequence order (the caller may
// reserve sequences and append concurrently): History is ordered by Seq
// and trimming removes the lowest. A (pipe, Seq) or an ID already stored
// in the tenant fails with a constraint error. m is not modified.
func (s *Store) AppendHistory(ctx context.Context, m *pipes.Message, keep int) error {
	msg := *m
	newKeep := int64(max(keep, 0))
	return s.write(ctx, "append history", func(tx *sql.Tx) error {
		st, err := s.pipes.get(tx, msg.DevID, msg.Pipe)
		if err != nil {
			return err
		}
		if !st.found {
			st.keep = newKeep
		}
		if newKeep > st.keep {
			// rows kept only as slack under the old keep must not
			// reappear under the new one
			if err := st.trim(tx, msg.DevID, msg.Pipe, 0); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(bg, `INSERT INTO history (dev_id, pipe, seq, id, time, event, data, user_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			msg.DevID, msg.Pipe, msg.Seq, msg.ID, msg.Time, msg.Event, msg.Data, msg.UserID); err != nil {
			return err
		}
		st.stored++
		st.keep = newKeep
		if err := st.trim(tx, msg.DevID, msg.Pipe, slack(newKeep)); err != nil {
			return err
		}
		st.lastSeq = max(st.lastSeq, msg.Seq)
		// Written to pipe_seq once per pipe just before the batch commits.
		s.pipes.set(msg.DevID, msg.Pipe, st)
		return nil
	})
}

// bg is the context of statements run by the writer goroutine: a batch is
// never cancelled by one of its callers (and go-sqlite3 starts no watcher
// goroutine for it).
var bg = context.Background()

// pipeState is a pipe_seq row as the writer sees it inside a transaction.
type pipeState struct {
	found                 bool
	lastSeq, stored, keep int64
}

func readPipeState(tx *sql.Tx, dev int64, pipe string) (pipeState, error) {
	var st pipeState
	err := tx.QueryRowContext(bg, "SELECT last_seq, stored, keep FROM pipe_seq WHERE dev_id = ? AND pipe = ?",
		dev, pipe).Scan(&st.lastSeq, &st.stored, &st.keep)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return pipeState{}, nil
	case err != nil:
		return pipeState{}, err
	}
	st.found = true
	return st, nil
}

// trim deletes the pipe's oldest rows beyond keep when there are more than
// keep+allowance, updating st.stored (the caller writes it back).
func (st *pipeState) trim(tx *sql.Tx, dev int64, pipe string, allowance int64) error {
	if st.stored <= st.keep+allowance {
		return nil
	}
	n, err := changed(tx, `DELETE FROM history WHERE dev_id = ?1 AND pipe = ?2 AND seq <= (
		SELECT seq FROM history WHERE dev_id = ?1 AND pipe = ?2 ORDER BY seq LIMIT 1 OFFSET ?3)`,
		dev, pipe, st.stored-st.keep-1)
	if err != nil {
		return err
	}
	st.stored -= n
	return nil
}

// writeBack stores st.stored and st.keep for an existing pipe_seq row.
func (st *pipeState) writeBack(tx *sql.Tx, dev int64, pipe string) error {
	if !st.found {
		return nil
	}
	_, err := tx.ExecContext(bg, "UPDATE pipe_seq SET stored = ?, keep = ? WHERE dev_id = ? AND pipe = ?",
		st.stored, st.keep, dev, pipe)
	return err
}

// History returns a pipe's kept messages with Seq > since, oldest first.
// Their Kind is KindPipe.
func (s *Store) History(ctx context.Context, dev int64, pipe string, since int64) ([]pipes.Message, error) {
	var out []pipes.Message
	// The lower bound is the keep-th newest seq when the pipe holds more
	// (slack rows awaiting a bulk trim), else none.
	err := s.query(ctx, "history", `SELECT seq, id, time, event, data, user_id FROM history
		WHERE dev_id = ?1 AND pipe = ?2 AND seq > ?3 AND seq >= COALESCE((
			SELECT seq FROM history WHERE dev_id = ?1 AND pipe = ?2 ORDER BY seq DESC
			LIMIT COALESCE((SELECT stored > keep FROM pipe_seq WHERE dev_id = ?1 AND pipe = ?2), 0)
			OFFSET COALESCE((SELECT keep - 1 FROM pipe_seq WHERE dev_id = ?1 AND pipe = ?2), 0)
		), -9223372036854775808)
		ORDER BY seq`, []any{dev, pipe, since},
		func(r *sql.Rows) error {
			m := pipes.Message{Kind: pipes.KindPipe, DevID: dev, Pipe: pipe}
			if err := r.Scan(&m.Seq, &m.ID, &m.Time, &m.Event, &m.Data, &m.UserID); err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	return out, err
}

// LastSeq is the highest sequence number ever stored for the pipe, including
// messages since trimmed or cleared; 0 when none.
func (s *Store) LastSeq(ctx context.Context, dev int64, pipe string) (int64, error) {
	var last int64
	err := s.query(ctx, "last seq", "SELECT last_seq FROM pipe_seq WHERE dev_id = ? AND pipe = ?",
		[]any{dev, pipe}, func(r *sql.Rows) error { return r.Scan(&last) })
	return last, err
}

// ClearHistory removes a pipe's stored messages and returns how many were
// kept; the last sequence is kept.
func (s *Store) ClearHistory(ctx context.Context, dev int64, pipe string) (int64, error) {
	var n int64
	err := s.write(ctx, "clear history", func(tx *sql.Tx) error {
		if err := s.pipes.forget(tx, dev, pipe); err != nil {
			return err
		}
		var err error
		n, err = clearHistory(tx, dev, pipe)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// clearHistory deletes every row of a pipe and returns how many of them
// were visible (slack rows are not counted).
func clearHistory(tx *sql.Tx, dev int64, pipe string) (int64, error) {
	st, err := readPipeState(tx, dev, pipe)
	if err != nil {
		return 0, err
	}
	n, err := changed(tx, "DELETE FROM history WHERE dev_id = ? AND pipe = ?", dev, pipe)
	if err != nil {
		return 0, err
	}
	if st.found {
		n = min(n, st.keep)
	}
	st.stored = 0
	return n, st.writeBack(tx, dev, pipe)
}

// DeleteMessage removes one kept message by id and returns how many were
// removed (0 or 1).
func (s *Store) DeleteMessage(ctx context.Context, dev int64, id string) (int64, error) {
	var n int64
	err := s.write(ctx, "delete message", func(tx *sql.Tx) error {
		n = 0
		var pipe string
		err := tx.QueryRowContext(bg, "SELECT pipe FROM history WHERE dev_id = ? AND id = ?", dev, id).Scan(&pipe)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.pipes.forget(tx, dev, pipe); err != nil {
			return err
		}
		// Trim exactly first: the message may be a slack row (already
		// trimmed for readers), and removing a kept one must not bring a
		// slack row back.
		st, err := readPipeState(tx, dev, pipe)
		if err != nil {
			return err
		}
		if err := st.trim(tx, dev, pipe, 0); err != nil {
			return err
		}
		if n, err = changed(tx, "DELETE FROM history WHERE dev_id = ? AND id = ?", dev, id); err != nil {
			return err
		}
		st.stored -= n
		return st.writeBack(tx, dev, pipe)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// SetLogLength upserts a pipe's history length, trimming the stored history
// to it; 0 removes the setting and the pipe's history (the last sequence is
// kept). A negative length fails with pipes.ErrInvalidLength.
func (s *Store) SetLogLength(ctx context.Context, dev int64, pipe string, length int) error {
	if length < 0 {
		return fmt.Errorf("store: set log length %d: %w", length, pipes.ErrInvalidLength)
	}
	return s.write(ctx, "set log length", func(tx *sql.Tx) error {
		if err := s.pipes.forget(tx, dev, pipe); err != nil {
			return err
		}
		if length == 0 {
			if _, err := tx.ExecContext(bg, "DELETE FROM pipe_settings WHERE dev_id = ? AND pipe = ?", dev, pipe); err != nil {
				return err
			}
			if _, err := clearHistory(tx, dev, pipe); err != nil {
				return err
			}
			_, err := tx.ExecContext(bg, "UPDATE pipe_seq SET keep = 0 WHERE dev_id = ? AND pipe = ?", dev, pipe)
			return err
		}
		if _, err := tx.ExecContext(bg, `INSERT INTO pipe_settings (dev_id, pipe, length) VALUES (?, ?, ?)
			ON CONFLICT (dev_id, pipe) DO UPDATE SET length = excluded.length`, dev, pipe, length); err != nil {
			return err
		}
		st, err := readPipeState(tx, dev, pipe)
		if err != nil || !st.found {
			return err
		}
		// Trim to the smaller of the old and new lengths: a shorter one
		// takes effect now, a longer one must not bring slack rows back.
		st.keep = min(st.keep, int64(length))
		if err := st.trim(tx, dev, pipe, 0); err != nil {
			return err
		}
		st.keep = int64(length)
		return st.writeBack(tx, dev, pipe)
	})
}

// LogSettings lists every tenant's pipes that log, keyed by dev id, each
// tenant's sorted by pipe name.
func (s *Store) LogSettings(ctx context.Context) (map[int64][]pipes.PipeSetting, error) {
	out := make(map[int64][]pipes.PipeSetting)
	err := s.query(ctx, "log settings", "SELECT dev_id, pipe, length FROM pipe_settings ORDER BY dev_id, pipe", nil,
		func(r *sql.Rows) error {
			var dev int64
			var ps pipes.PipeSetting
			if err := r.Scan(&dev, &ps.Pipe, &ps.Length); err != nil {
				return err
			}
			out[dev] = append(out[dev], ps)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// query runs a read on the reader pool, calling scan for each row.
func (s *Store) query(ctx context.Context, op, q string, args []any, scan func(*sql.Rows) error) error {
	if err := s.readable(); err != nil {
		return wrap(op, err)
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return wrap(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return wrap(op, err)
		}
	}
	return wrap(op, rows.Err())
}
