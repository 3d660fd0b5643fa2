package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/cometql/cometql/pipes"
)

// Enqueue appends a private message to user q.UserID's offline queue and
// returns how many messages it dropped. It assigns q.Index (strictly
// increasing per user, never reused, even after the queue is taken or
// cleared) and, when q.Time is zero, q.Time = now; q is updated only when
// Enqueue returns nil.
//
// In the same transaction it drops the user's expired messages (queued
// before now - Config.QueueTTL; none when QueueTTL is negative) and then the
// oldest beyond max (max <= 0: no limit). The new message counts like the
// others: it is dropped (and counted) only when its own Time is already
// expired. A user id below 1 fails with pipes.ErrInvalidUser.
func (s *Store) Enqueue(ctx context.Context, dev int64, q *pipes.QueuedMessage, max int) (int, error) {
	if q.UserID <= 0 {
		return 0, fmt.Errorf("store: enqueue for user %d: %w", q.UserID, pipes.ErrInvalidUser)
	}
	now := s.cfg.Now().Unix()
	msg := *q
	if msg.Time == 0 {
		msg.Time = now
	}
	var idx, dropped int64
	err := s.write(ctx, "enqueue", func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(bg, `INSERT INTO queue_seq (dev_id, user_id, last_idx) VALUES (?, ?, 1)
			ON CONFLICT (dev_id, user_id) DO UPDATE SET last_idx = last_idx + 1
			RETURNING last_idx`, dev, msg.UserID).Scan(&idx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(bg, `INSERT INTO queue (dev_id, user_id, idx, event, data, time)
			VALUES (?, ?, ?, ?, ?, ?)`, dev, msg.UserID, idx, msg.Event, msg.Data, msg.Time); err != nil {
			return err
		}
		dropped = 0
		if s.cfg.QueueTTL > 0 {
			cutoff := now - int64(s.cfg.QueueTTL.Seconds())
			n, err := changed(tx, "DELETE FROM queue WHERE dev_id = ? AND user_id = ? AND time < ?",
				dev, msg.UserID, cutoff)
			if err != nil {
				return err
			}
			dropped += n
		}
		if max > 0 {
			n, err := changed(tx, `DELETE FROM queue WHERE rowid IN (
				SELECT rowid FROM queue WHERE dev_id = ? AND user_id = ? ORDER BY idx DESC LIMIT -1 OFFSET ?)`,
				dev, msg.UserID, max)
			if err != nil {
				return err
			}
			dropped += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	q.Index = idx
	q.Time = msg.Time
	return int(dropped), nil
}

// Queue lists a user's queued messages (user 0: every user's of the tenant),
// oldest first (by time, then user, then index), leaving out those queued
// before notBefore (unix seconds).
func (s *Store) Queue(ctx context.Context, dev, user int64, notBefore int64) ([]pipes.QueuedMessage, error) {
	q := `SELECT user_id, idx, event, data, time FROM queue WHERE dev_id = ? AND user_id = ? AND time >= ? ORDER BY idx`
	args := []any{dev, user, notBefore}
	if user == 0 {
		q = `SELECT user_id, idx, event, data, time FROM queue WHERE dev_id = ? AND time >= ? ORDER BY time, user_id, idx`
		args = []any{dev, notBefore}
	}
	var out []pipes.QueuedMessage
	err := s.query(ctx, "queue", q, args, func(r *sql.Rows) error {
		var m pipes.QueuedMessage
		if err := r.Scan(&m.UserID, &m.Index, &m.Event, &m.Data, &m.Time); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// AckQueue removes a user's queued messages with an index up to upTo: they
// reached one of the user's connections.
func (s *Store) AckQueue(ctx context.Context, dev, user, upTo int64) (int64, error) {
	return s.exec(ctx, "ack queue", "DELETE FROM queue WHERE dev_id = ? AND user_id = ? AND idx <= ?", dev, user, upTo)
}

// ClearQueue removes a user's queue (user 0: every user's queue of the
// tenant, as Queue lists them) and returns how many messages it held.
func (s *Store) ClearQueue(ctx context.Context, dev, user int64) (int64, error) {
	if user == 0 {
		return s.exec(ctx, "clear queue", "DELETE FROM queue WHERE dev_id = ?", dev)
	}
	return s.exec(ctx, "clear queue", "DELETE FROM queue WHERE dev_id = ? AND user_id = ?", dev, user)
}

// exec runs one statement as a write and returns the rows it changed.
func (s *Store) exec(ctx context.Context, op, q string, args ...any) (int64, error) {
	var n int64
	err := s.write(ctx, op, func(tx *sql.Tx) (err error) {
		n, err = changed(tx, q, args...)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// changed runs a statement in tx and returns how many rows it changed.
func changed(tx *sql.Tx, q string, args ...any) (int64, error) {
	res, err := tx.ExecContext(bg, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
