package mysqlproto_test

import (
	"log/slog"
	"testing"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/mysqlproto"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/sqlengine"
	"github.com/cometql/cometql/store"
)

func buildServer(tb testing.TB, cfg mysqlproto.Config, hub *pipes.Hub, st *store.Store, log *slog.Logger) (*mysqlproto.Server, *sqlengine.Engine) {
	tb.Helper()
	authSvc := auth.New(auth.Config{Password: rootPassword, TenantPasswords: map[int64]string{3: tenantPassword}}, st)
	eng := sqlengine.New(sqlengine.Config{}, hub, authSvc, nil)
	srv, err := mysqlproto.New(cfg, eng, authSvc, log)
	if err != nil {
		tb.Fatal(err)
	}
	return srv, eng
}
