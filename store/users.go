package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/cometql/cometql/auth"
)

// SetUserTime records users_time for a user (0 = online now, else the unix
// time the user was last seen).
func (s *Store) SetUserTime(ctx context.Context, dev, user int64, t int64) error {
	_, err := s.exec(ctx, "set user time", `INSERT INTO users_time (dev_id, user_id, time) VALUES (?, ?, ?)
		ON CONFLICT (dev_id, user_id) DO UPDATE SET time = excluded.time`, dev, user, t)
	return err
}

// UserTimes returns the recorded users_time of those ids that have one
// (every known user of the tenant when ids is nil).
func (s *Store) UserTimes(ctx context.Context, dev int64, ids []int64) (map[int64]int64, error) {
	out := make(map[int64]int64)
	err := s.queryIDs(ctx, "user times", "SELECT user_id, time FROM users_time", dev, ids, func(r *sql.Rows) error {
		var id, t int64
		if err := r.Scan(&id, &t); err != nil {
			return err
		}
		out[id] = t
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ResetOnline sets every users_time of 0 (users online at the last shutdown
// or crash), in every tenant, to t.
func (s *Store) ResetOnline(ctx context.Context, t int64) error {
	_, err := s.exec(ctx, "reset online", "UPDATE users_time SET time = ? WHERE time = 0", t)
	return err
}

// SetHash registers or replaces a user's browser key (users_auth).
func (s *Store) SetHash(ctx context.Context, dev, user int64, hash string) error {
	_, err := s.exec(ctx, "set hash", `INSERT INTO users_auth (dev_id, user_id, hash) VALUES (?, ?, ?)
		ON CONFLICT (dev_id, user_id) DO UPDATE SET hash = excluded.hash`, dev, user, hash)
	return err
}

// Hashes returns the stored keys of ids (every user's of the tenant when ids
// is nil); ids without a key are absent from the map.
func (s *Store) Hashes(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return s.textByID(ctx, "hashes", "SELECT user_id, hash FROM users_auth", dev, ids)
}

// DeleteHash removes a user's key; n is 1 when one was removed.
func (s *Store) DeleteHash(ctx context.Context, dev, user int64) (int64, error) {
	return s.exec(ctx, "delete hash", "DELETE FROM users_auth WHERE dev_id = ? AND user_id = ?", dev, user)
}

// SetUserData upserts a user's data (users_data).
func (s *Store) SetUserData(ctx context.Context, dev, user int64, data string) error {
	_, err := s.exec(ctx, "set user data", `INSERT INTO users_data (dev_id, user_id, data) VALUES (?, ?, ?)
		ON CONFLICT (dev_id, user_id) DO UPDATE SET data = excluded.data`, dev, user, data)
	return err
}

// UserData returns the data of ids (every user's of the tenant when ids is
// nil); ids without data are absent from the map.
func (s *Store) UserData(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return s.textByID(ctx, "user data", "SELECT user_id, data FROM users_data", dev, ids)
}

// DeleteUserData removes a user's data; n is 1 when there was some.
func (s *Store) DeleteUserData(ctx context.Context, dev, user int64) (int64, error) {
	return s.exec(ctx, "delete user data", "DELETE FROM users_data WHERE dev_id = ? AND user_id = ?", dev, user)
}

// RevokeToken records a revoked token with the time it was revoked (a token
// revoked again gets the new time).
func (s *Store) RevokeToken(ctx context.Context, dev int64, token string, t int64) error {
	_, err := s.exec(ctx, "revoke token", `INSERT INTO revoked_tokens (dev_id, token, time) VALUES (?, ?, ?)
		ON CONFLICT (dev_id, token) DO UPDATE SET time = excluded.time`, dev, token, t)
	return err
}

// RevokedTokens lists the tenant's revoked tokens among tokens (all of them
// when tokens is nil), ordered by time then token.
func (s *Store) RevokedTokens(ctx context.Context, dev int64, tokens []string) ([]auth.RevokedToken, error) {
	var out []auth.RevokedToken
	scan := func(r *sql.Rows) error {
		var rt auth.RevokedToken
		if err := r.Scan(&rt.Token, &rt.Time); err != nil {
			return err
		}
		out = append(out, rt)
		return nil
	}
	var err error
	switch {
	case tokens == nil:
		err = s.query(ctx, "revoked tokens",
			"SELECT token, time FROM revoked_tokens WHERE dev_id = ? ORDER BY time, token", []any{dev}, scan)
	case len(tokens) == 0:
	case len(tokens) == 1:
		err = s.query(ctx, "revoked tokens",
			"SELECT token, time FROM revoked_tokens WHERE dev_id = ? AND token = ?", []any{dev, tokens[0]}, scan)
	default:
		list, jerr := json.Marshal(tokens)
		if jerr != nil {
			return nil, wrap("revoked tokens", jerr)
		}
		err = s.query(ctx, "revoked tokens", `SELECT token, time FROM revoked_tokens
			WHERE dev_id = ? AND token IN (SELECT value FROM json_each(?)) ORDER BY time, token`,
			[]any{dev, string(list)}, scan)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UnrevokeToken removes a token from the revocation list; n is 1 when it
// was there.
func (s *Store) UnrevokeToken(ctx context.Context, dev int64, token string) (int64, error) {
	return s.exec(ctx, "unrevoke token", "DELETE FROM revoked_tokens WHERE dev_id = ? AND token = ?", dev, token)
}

// textByID reads (user_id, text) rows of a per-user table.
func (s *Store) textByID(ctx context.Context, op, sel string, dev int64, ids []int64) (map[int64]string, error) {
	out := make(map[int64]string)
	err := s.queryIDs(ctx, op, sel, dev, ids, func(r *sql.Rows) error {
		var id int64
		var v string
		if err := r.Scan(&id, &v); err != nil {
			return err
		}
		out[id] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// queryIDs runs sel (a SELECT without WHERE on a table keyed by dev_id and
// user_id) for the tenant, limited to ids unless ids is nil. Any number of
// ids takes one statement: they travel as one JSON array.
func (s *Store) queryIDs(ctx context.Context, op, sel string, dev int64, ids []int64, scan func(*sql.Rows) error) error {
	switch {
	case ids == nil:
		return s.query(ctx, op, sel+" WHERE dev_id = ?", []any{dev}, scan)
	case len(ids) == 0:
		return nil
	case len(ids) == 1:
		return s.query(ctx, op, sel+" WHERE dev_id = ? AND user_id = ?", []any{dev, ids[0]}, scan)
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	b.WriteByte(']')
	return s.query(ctx, op, sel+" WHERE dev_id = ? AND user_id IN (SELECT value FROM json_each(?))",
		[]any{dev, b.String()}, scan)
}
