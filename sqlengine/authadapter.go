package sqlengine

import (
	"context"
	"time"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
)

// storeTables adapts an auth.Store to authBackend (validation is done by
// the engine before any write).
type storeTables struct{ st auth.Store }

func (a storeTables) SetHash(ctx context.Context, dev, user int64, hash string) error {
	return a.st.SetHash(ctx, dev, user, hash)
}

func (a storeTables) Hashes(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return a.st.Hashes(ctx, dev, ids)
}

func (a storeTables) DeleteHash(ctx context.Context, dev, user int64) (int64, error) {
	return a.st.DeleteHash(ctx, dev, user)
}

func (a storeTables) SetUserData(ctx context.Context, dev, user int64, data string) error {
	return a.st.SetUserData(ctx, dev, user, data)
}

func (a storeTables) UsersData(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return a.st.UserData(ctx, dev, ids)
}

func (a storeTables) DeleteUserData(ctx context.Context, dev, user int64) (int64, error) {
	return a.st.DeleteUserData(ctx, dev, user)
}

func (a storeTables) Revoke(ctx context.Context, dev int64, token string) error {
	return a.st.RevokeToken(ctx, dev, token, time.Now().Unix())
}

func (a storeTables) Unrevoke(ctx context.Context, dev int64, token string) (int64, error) {
	return a.st.UnrevokeToken(ctx, dev, token)
}

func (a storeTables) RevokedTokens(ctx context.Context, dev int64, tokens []string) ([]auth.RevokedToken, error) {
	return a.st.RevokedTokens(ctx, dev, tokens)
}

// NewWithAuthStore builds an engine whose users_auth, users_data and
// revoked_tokens tables go straight to an auth.Store (tools and tests
// without an auth service; the engine validates every value itself).
func NewWithAuthStore(cfg Config, hub *pipes.Hub, st auth.Store, fe Frontend) *Engine {
	return newEngine(cfg, hub, storeTables{st}, fe)
}
