package jsapi

import (
	"context"
	"testing"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/store"
)

const testPassword = "test-password"

// testAuth is the real auth service over the store, as New wires it, and
// the users_data directory the hub reads.
func testAuth(t testing.TB, st *store.Store) (*auth.Service, pipes.UserDirectory) {
	return auth.New(auth.Config{Password: testPassword}, st), storeUsers{st}
}

type storeUsers struct{ st *store.Store }

func (u storeUsers) UserData(ctx context.Context, dev, user int64) (string, error) {
	m, err := u.st.UserData(ctx, dev, []int64{user})
	return m[user], err
}
