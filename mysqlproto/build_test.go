package mysqlproto_test

import (
	"log/slog"
	"testing"

	"github.com/cometql/cometql/mysqlproto"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/sqlengine"
	"github.com/cometql/cometql/store"
)

type passwords map[int64]string

func (p passwords) Password(dev int64) string {
	if pw, ok := p[dev]; ok {
		return pw
	}
	return p[0]
}

func buildServer(tb testing.TB, cfg mysqlproto.Config, hub *pipes.Hub, st *store.Store, log *slog.Logger) (*mysqlproto.Server, *sqlengine.Engine) {
	tb.Helper()
	eng := sqlengine.NewWithAuthStore(sqlengine.Config{MaxAllowedPacket: 16777214}, hub, st, nil)
	srv, err := mysqlproto.NewWithPasswords(cfg, eng, passwords{0: rootPassword, 3: tenantPassword}, log)
	if err != nil {
		tb.Fatal(err)
	}
	return srv, eng
}
