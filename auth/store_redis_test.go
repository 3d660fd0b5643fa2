package auth_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/internal/redistest"
	"github.com/cometql/cometql/store"
)

// The same tests run against every auth.Store: SQLite (single node) and
// Redis (cluster), the Redis one with a key prefix of its own per test.

type storeBackend struct {
	name string
	open func(t *testing.T) auth.Store
}

func storeBackends() []storeBackend {
	return []storeBackend{
		{"sqlite", func(t *testing.T) auth.Store {
			st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{"redis", func(t *testing.T) auth.Store {
			return newRedisStore(t, redistest.Prefix(t))
		}},
	}
}

func newRedisStore(t *testing.T, prefix string) *auth.RedisStore {
	t.Helper()
	srv := redistest.Shared(t)
	st, err := auth.NewRedisStore(auth.RedisConfig{URL: srv.URL(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func TestStoreConformance(t *testing.T) {
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			t.Run("Hashes", func(t *testing.T) { testStoreHashes(t, b.open(t)) })
			t.Run("UserData", func(t *testing.T) { testStoreUserData(t, b.open(t)) })
			t.Run("RevokedTokens", func(t *testing.T) { testStoreRevoked(t, b.open(t)) })
			t.Run("Service", func(t *testing.T) { testStoreService(t, b.open(t)) })
		})
	}
}

func testStoreHashes(t *testing.T, st auth.Store) {
	ctx := context.Background()
	must(t, st.SetHash(ctx, 0, 1, "h1"))
	must(t, st.SetHash(ctx, 0, 2, "h2"))
	must(t, st.SetHash(ctx, 0, 2, "h2b")) // replaced
	must(t, st.SetHash(ctx, 5, 1, "other tenant"))
	got, err := st.Hashes(ctx, 0, []int64{1, 2, 3})
	if err != nil || fmt.Sprint(got) != "map[1:h1 2:h2b]" {
		t.Fatalf("hashes = %v, %v", got, err)
	}
	if got, _ := st.Hashes(ctx, 0, nil); len(got) != 2 {
		t.Fatalf("all hashes = %v", got)
	}
	if got, _ := st.Hashes(ctx, 0, []int64{}); len(got) != 0 {
		t.Fatalf("no ids = %v", got)
	}
	if got, _ := st.Hashes(ctx, 5, nil); fmt.Sprint(got) != "map[1:other tenant]" {
		t.Fatalf("tenant 5 = %v", got)
	}
	if n, err := st.DeleteHash(ctx, 0, 1); err != nil || n != 1 {
		t.Fatalf("delete = %d, %v", n, err)
	}
	if n, _ := st.DeleteHash(ctx, 0, 1); n != 0 {
		t.Fatalf("second delete = %d", n)
	}
	if got, _ := st.Hashes(ctx, 0, []int64{1}); len(got) != 0 {
		t.Fatalf("deleted hash = %v", got)
	}
}

func testStoreUserData(t *testing.T, st auth.Store) {
	ctx := context.Background()
	must(t, st.SetUserData(ctx, 0, 7, `{"name":"it's"}`))
	must(t, st.SetUserData(ctx, 0, 8, ""))
	got, err := st.UserData(ctx, 0, []int64{7, 8, 9})
	if err != nil || len(got) != 2 || got[7] != `{"name":"it's"}` || got[8] != "" {
		t.Fatalf("data = %v, %v", got, err)
	}
	if got, _ := st.UserData(ctx, 1, nil); len(got) != 0 {
		t.Fatalf("tenant 1 = %v", got)
	}
	if n, _ := st.DeleteUserData(ctx, 0, 7); n != 1 {
		t.Fatalf("delete = %d", n)
	}
	if got, _ := st.UserData(ctx, 0, nil); fmt.Sprint(got) != "map[8:]" {
		t.Fatalf("after delete = %v", got)
	}
}

func testStoreRevoked(t *testing.T, st auth.Store) {
	ctx := context.Background()
	must(t, st.RevokeToken(ctx, 0, "b", 20))
	must(t, st.RevokeToken(ctx, 0, "a", 20))
	must(t, st.RevokeToken(ctx, 0, "c", 10))
	must(t, st.RevokeToken(ctx, 1, "z", 5))
	all, err := st.RevokedTokens(ctx, 0, nil)
	if err != nil || fmt.Sprint(all) != "[{c 10} {a 20} {b 20}]" {
		t.Fatalf("revoked = %v, %v", all, err)
	}
	some, _ := st.RevokedTokens(ctx, 0, []string{"b", "x", "c"})
	if fmt.Sprint(some) != "[{c 10} {b 20}]" {
		t.Fatalf("some = %v", some)
	}
	must(t, st.RevokeToken(ctx, 0, "c", 30))
	if one, _ := st.RevokedTokens(ctx, 0, []string{"c"}); fmt.Sprint(one) != "[{c 30}]" {
		t.Fatalf("re-revoked = %v", one)
	}
	if n, _ := st.UnrevokeToken(ctx, 0, "c"); n != 1 {
		t.Fatalf("unrevoke = %d", n)
	}
	if none, _ := st.RevokedTokens(ctx, 0, []string{"c", "z"}); len(none) != 0 {
		t.Fatalf("after unrevoke = %v", none)
	}
}

// The Service works the same over either store.
func testStoreService(t *testing.T, st auth.Store) {
	ctx := context.Background()
	svc := auth.New(auth.Config{Password: "pw"}, st)
	if err := svc.SetHash(ctx, 0, 4, "key4"); err != nil {
		t.Fatal(err)
	}
	if id, err := svc.Authenticate(ctx, 0, 4, "key4"); err != nil || id.UserID != 4 {
		t.Fatalf("hash login = %+v, %v", id, err)
	}
	tok, err := svc.MakeToken(0, 4, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := svc.Authenticate(ctx, 0, 4, tok); id.UserID != 4 || id.Token != tok {
		t.Fatalf("token login = %+v", id)
	}
	if err := svc.Revoke(ctx, 0, tok); err != nil {
		t.Fatal(err)
	}
	if id, _ := svc.Authenticate(ctx, 0, 4, tok); id.UserID != 0 {
		t.Fatalf("revoked token login = %+v", id)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Nodes agree on a shared secret: the first candidate stored wins.
func TestRedisSharedSecret(t *testing.T) {
	prefix := redistest.Prefix(t)
	a, b := newRedisStore(t, prefix), newRedisStore(t, prefix)
	ctx := context.Background()
	v, created, err := a.SharedSecret(ctx, "password", "first")
	if err != nil || v != "first" || !created {
		t.Fatalf("a = %q %v %v", v, created, err)
	}
	v, created, err = b.SharedSecret(ctx, "password", "second")
	if err != nil || v != "first" || created {
		t.Fatalf("b = %q %v %v", v, created, err)
	}
}

// A store whose Redis is unreachable fails with ErrRedis, not a panic or a
// hang.
func TestRedisStoreUnreachable(t *testing.T) {
	st, err := auth.NewRedisStore(auth.RedisConfig{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Hashes(context.Background(), 0, nil); err == nil {
		t.Fatal("no error")
	}
	if err := st.SetHash(context.Background(), 0, 1, "x"); err == nil {
		t.Fatal("no error")
	}
}

// Redis restarts under a store that had connected: the first writes after
// it is back succeed (the one that meets the broken connection is sent
// again on a fresh one) instead of failing a backend's INSERT.
func TestRedisStoreAfterRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	st, err := auth.NewRedisStore(auth.RedisConfig{URL: srv.URL(), Prefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	must(t, st.SetHash(ctx, 0, 1, "before"))
	srv.Stop()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		must(t, st.SetHash(ctx, 0, int64(10+i), fmt.Sprint("after", i)))
	}
	must(t, st.RevokeToken(ctx, 0, "tok", 5))
	got, err := st.Hashes(ctx, 0, []int64{10, 11, 12})
	must(t, err)
	if len(got) != 3 || got[10] != "after0" || got[12] != "after2" {
		t.Fatalf("hashes after the restart = %v", got)
	}
}
