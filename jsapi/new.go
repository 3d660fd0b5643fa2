package jsapi

import (
	"context"
	"log/slog"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
)

// New builds the browser front end over a hub. Browsers authenticate with
// authSvc (users_auth hashes and JWTs, SPEC 3.2); with a nil authSvc every
// browser is anonymous. The server runs its housekeeping (and, on Linux,
// its epoll loops) from New on: call Shutdown to stop them, also when Serve
// was never called.
func New(cfg Config, hub *pipes.Hub, authSvc *auth.Service, log *slog.Logger) (*Server, error) {
	var fn authFunc
	if authSvc != nil {
		fn = func(ctx context.Context, dev, user int64, key string) (int64, string, error) {
			id, err := authSvc.Authenticate(ctx, dev, user, key)
			return id.UserID, id.Token, err
		}
	}
	return newServer(cfg, hub, fn, log)
}
