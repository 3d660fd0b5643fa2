package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/cometql/cometql/internal/redisopt"
)

// RedisConfig configures a RedisStore. A zero field takes the default its
// comment names.
type RedisConfig struct {
	// URL is a Redis URL, redis://[user:password@]host:port/db (rediss://
	// for TLS). It takes precedence over Addr.
	URL string
	// Addr is host:port when URL is empty (default 127.0.0.1:6379).
	Addr string
	// Prefix starts every key (default "cometql"); use the cluster
	// engine's prefix.
	Prefix string
	// OpTimeout bounds each Redis operation (default 5s).
	OpTimeout time.Duration
	// DialTimeout bounds connecting to Redis (default 2s).
	DialTimeout time.Duration
}

// ErrRedis wraps the failures of a RedisStore.
var ErrRedis = errors.New("auth: redis")

// RedisStore is the Store of a cluster: users_auth, users_data and
// revoked_tokens in Redis hashes, one of each per tenant
// (<prefix>:d<dev>:auth, :udata, :revoked), so that every node serves the
// same data. A write returns once Redis has it (durable as Redis's own
// persistence is configured). Every method is safe for concurrent use.
type RedisStore struct {
	cfg    RedisConfig
	client rueidis.Client
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore builds a store; it does not wait for Redis to be reachable.
func NewRedisStore(cfg RedisConfig) (*RedisStore, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:6379"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "cometql"
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 5 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	opt, err := redisopt.Options(cfg.URL, cfg.Addr, cfg.DialTimeout, cfg.OpTimeout, "")
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %v", ErrRedis, err)
	}
	client, err := rueidis.NewClient(opt)
	if client == nil {
		return nil, fmt.Errorf("%w: client: %v", ErrRedis, err)
	}
	return &RedisStore{cfg: cfg, client: client}, nil
}

// Close closes the connections.
func (s *RedisStore) Close() { s.client.Close() }

func (s *RedisStore) key(dev int64, table string) string {
	return s.cfg.Prefix + ":d" + strconv.FormatInt(dev, 10) + ":" + table
}

func (s *RedisStore) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// do runs one command. Every command this store sends may run twice with
// the same result (reads, HSET, HDEL, SET NX), so one that failed on a
// broken connection (the first command after Redis came back meets the
// connection that broke) is sent once more on the fresh one. Only a
// deletion's count can differ: 0 when the first attempt had deleted.
func (s *RedisStore) do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	res := s.client.Do(ctx, cmd.Pin())
	if redisopt.IsConnError(res.Error()) && ctx.Err() == nil {
		res = s.client.Do(ctx, cmd)
	}
	return res
}

func wrapRedis(op string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrRedis, op, err)
}

// SharedSecret returns the cluster-wide value of a named secret (such as the
// generated CometQL password): the value stored in Redis, or candidate when
// none was, which it stores. created reports that candidate was stored.
func (s *RedisStore) SharedSecret(ctx context.Context, name, candidate string) (value string, created bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.cfg.Prefix + ":secret:" + name
	set, err := s.do(ctx, s.client.B().Set().Key(key).Value(candidate).Nx().Build()).AsBool()
	if err != nil && !rueidis.IsRedisNil(err) {
		return "", false, wrapRedis("shared secret", err)
	}
	if set {
		return candidate, true, nil
	}
	v, err := s.do(ctx, s.client.B().Get().Key(key).Build()).ToString()
	if err != nil {
		return "", false, wrapRedis("shared secret", err)
	}
	return v, false, nil
}

func (s *RedisStore) set(ctx context.Context, op, key, field, value string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.do(ctx, s.client.B().Hset().Key(key).FieldValue().FieldValue(field, value).Build()).Error(); err != nil {
		return wrapRedis(op, err)
	}
	return nil
}

func (s *RedisStore) del(ctx context.Context, op, key, field string) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.do(ctx, s.client.B().Hdel().Key(key).Field(field).Build()).AsInt64()
	if err != nil {
		return 0, wrapRedis(op, err)
	}
	return n, nil
}

// byID reads a per-user hash: the fields of ids, or all of them when ids is
// nil. Users without a value are absent from the map.
func (s *RedisStore) byID(ctx context.Context, op, key string, ids []int64) (map[int64]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	out := make(map[int64]string)
	if ids == nil {
		all, err := s.do(ctx, s.client.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			return nil, wrapRedis(op, err)
		}
		for f, v := range all {
			if id, err := strconv.ParseInt(f, 10, 64); err == nil {
				out[id] = v
			}
		}
		return out, nil
	}
	if len(ids) == 0 {
		return out, nil
	}
	fields := make([]string, len(ids))
	for i, id := range ids {
		fields[i] = strconv.FormatInt(id, 10)
	}
	vals, err := s.do(ctx, s.client.B().Hmget().Key(key).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, wrapRedis(op, err)
	}
	for i, v := range vals {
		if i >= len(ids) || v.IsNil() {
			continue
		}
		if str, err := v.ToString(); err == nil {
			out[ids[i]] = str
		}
	}
	return out, nil
}

// SetHash implements Store.
func (s *RedisStore) SetHash(ctx context.Context, dev, user int64, hash string) error {
	return s.set(ctx, "set hash", s.key(dev, "auth"), strconv.FormatInt(user, 10), hash)
}

// Hashes implements Store.
func (s *RedisStore) Hashes(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return s.byID(ctx, "hashes", s.key(dev, "auth"), ids)
}

// DeleteHash implements Store.
func (s *RedisStore) DeleteHash(ctx context.Context, dev, user int64) (int64, error) {
	return s.del(ctx, "delete hash", s.key(dev, "auth"), strconv.FormatInt(user, 10))
}

// SetUserData implements Store.
func (s *RedisStore) SetUserData(ctx context.Context, dev, user int64, data string) error {
	return s.set(ctx, "set user data", s.key(dev, "udata"), strconv.FormatInt(user, 10), data)
}

// UserData implements Store.
func (s *RedisStore) UserData(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return s.byID(ctx, "user data", s.key(dev, "udata"), ids)
}

// DeleteUserData implements Store.
func (s *RedisStore) DeleteUserData(ctx context.Context, dev, user int64) (int64, error) {
	return s.del(ctx, "delete user data", s.key(dev, "udata"), strconv.FormatInt(user, 10))
}

// RevokeToken implements Store (a token revoked again gets the new time).
func (s *RedisStore) RevokeToken(ctx context.Context, dev int64, token string, t int64) error {
	return s.set(ctx, "revoke token", s.key(dev, "revoked"), token, strconv.FormatInt(t, 10))
}

// RevokedTokens implements Store: the tenant's revoked tokens among tokens
// (all of them when tokens is nil), ordered by time then token.
func (s *RedisStore) RevokedTokens(ctx context.Context, dev int64, tokens []string) ([]RevokedToken, error) {
	key := s.key(dev, "revoked")
	var out []RevokedToken
	if tokens == nil {
		ctx, cancel := s.ctx(ctx)
		defer cancel()
		all, err := s.do(ctx, s.client.B().Hgetall().Key(key).Build()).AsIntMap()
		if err != nil {
			return nil, wrapRedis("revoked tokens", err)
		}
		for tok, t := range all {
			out = append(out, RevokedToken{Token: tok, Time: t})
		}
	} else if len(tokens) > 0 {
		ctx, cancel := s.ctx(ctx)
		defer cancel()
		vals, err := s.do(ctx, s.client.B().Hmget().Key(key).Field(tokens...).Build()).ToArray()
		if err != nil {
			return nil, wrapRedis("revoked tokens", err)
		}
		seen := make(map[string]bool, len(tokens))
		for i, v := range vals {
			if i >= len(tokens) || v.IsNil() || seen[tokens[i]] {
				continue
			}
			seen[tokens[i]] = true
			if t, err := v.AsInt64(); err == nil {
				out = append(out, RevokedToken{Token: tokens[i], Time: t})
			}
		}
	}
	slices.SortFunc(out, func(a, b RevokedToken) int {
		if a.Time != b.Time {
			if a.Time < b.Time {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Token, b.Token)
	})
	return out, nil
}

// UnrevokeToken implements Store.
func (s *RedisStore) UnrevokeToken(ctx context.Context, dev int64, token string) (int64, error) {
	return s.del(ctx, "unrevoke token", s.key(dev, "revoked"), token)
}
