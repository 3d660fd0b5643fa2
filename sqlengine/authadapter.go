package sqlengine

import (
	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
)

// New builds the engine over the hub and the auth service (users_auth,
// users_data and revoked_tokens). fe may be nil and set later with
// SetFrontend (mysqlproto.New does).
func New(cfg Config, hub *pipes.Hub, authSvc *auth.Service, fe Frontend) *Engine {
	return newEngine(cfg, hub, authSvc, fe)
}

var _ authBackend = (*auth.Service)(nil)
