// Package version holds the cometql version, set at build time with
// -ldflags "-X github.com/cometql/cometql/internal/version.Version=...".
package version

// Version is the cometql version ("dev" in builds without ldflags).
var Version = "0.1.0-dev"

// Server is the server name with version, as serverInfo frames and
// @@version_comment show it: "cometql <version>".
func Server() string { return "cometql " + Version }

// MySQLVersion is the version string announced on the CometQL port: MySQL-
// shaped so drivers enable their normal feature set.
func MySQLVersion() string { return "8.0.36-cometql-" + Version }
