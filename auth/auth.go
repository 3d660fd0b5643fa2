// Package auth decides who is who: the CometQL password of each tenant, the
// browser keys of users_auth, HS256 JWTs and their revocation, and the
// per-user data that browsers may read (users_data).
package auth

import (
	"context"
	"errors"
)

// Store persists users_auth, users_data and revoked_tokens. Writes return
// only once committed. Every method is safe for concurrent use.
type Store interface {
	// SetHash registers or replaces a user's browser key.
	SetHash(ctx context.Context, dev, user int64, hash string) error
	// Hashes returns the stored keys of ids (every user's when ids is nil).
	Hashes(ctx context.Context, dev int64, ids []int64) (map[int64]string, error)
	// DeleteHash removes a user's key; n is 1 when one was removed.
	DeleteHash(ctx context.Context, dev, user int64) (n int64, err error)

	// SetUserData upserts a user's data.
	SetUserData(ctx context.Context, dev, user int64, data string) error
	// UserData returns the data of ids (every user's when ids is nil).
	UserData(ctx context.Context, dev int64, ids []int64) (map[int64]string, error)
	// DeleteUserData removes a user's data.
	DeleteUserData(ctx context.Context, dev, user int64) (n int64, err error)

	// RevokeToken records a revoked token with the time it was revoked.
	RevokeToken(ctx context.Context, dev int64, token string, t int64) error
	// RevokedTokens lists revoked tokens (all of them when tokens is nil).
	RevokedTokens(ctx context.Context, dev int64, tokens []string) ([]RevokedToken, error)
	// UnrevokeToken removes a token from the revocation list.
	UnrevokeToken(ctx context.Context, dev int64, token string) (n int64, err error)
}

// RevokedToken is a revoked_tokens row.
type RevokedToken struct {
	Token string
	Time  int64
}

// Sentinel errors.
var (
	ErrInvalidHash = errors.New("auth: invalid hash")
	ErrInvalidUser = errors.New("auth: invalid user id")
	ErrInvalidData = errors.New("auth: invalid data")
)
