package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// More sentinel errors.
var (
	// ErrInvalidToken means a token is empty, too long or not valid UTF-8.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrNoPassword means the tenant has no password, so no token can be
	// signed for it.
	ErrNoPassword = errors.New("auth: no password configured")
)

const (
	// MaxUserID is the highest valid user id, 2^53-1 (the largest integer
	// JavaScript represents exactly).
	MaxUserID = 1<<53 - 1
	// MaxHashLen is the longest valid users_auth hash.
	MaxHashLen = 32
	// MaxTokenLen is the longest token Authenticate considers and Revoke
	// accepts, in bytes.
	MaxTokenLen = 8192
	// DefaultJWTLeeway is the clock skew allowed on a JWT's exp by default.
	DefaultJWTLeeway = 5 * time.Second
)

// Config configures a Service. It is read once by New.
type Config struct {
	// Password is the CometQL password of every tenant without one of its
	// own, and the base of their JWT secrets.
	Password string
	// TenantPasswords maps dev ids to their own password (an empty one
	// means the global Password).
	TenantPasswords map[int64]string
	// JWTLeeway is the clock skew allowed on a JWT's exp (and nbf). Zero
	// means DefaultJWTLeeway; negative means none.
	JWTLeeway time.Duration
	// Now returns the current time (JWT expiry, revocation times); nil
	// means time.Now.
	Now func() time.Time
}

// Identity is who a browser connection is.
type Identity struct {
	// UserID is the authorized user; 0 means anonymous.
	UserID int64
	// Token is the JWT that authorized the connection ("" when it was a
	// users_auth hash, or anonymous), so that revoking it can disconnect
	// the connection.
	Token string
}

// Service decides who is who: tenant passwords, users_auth hashes and
// HS256 JWTs, and it validates what goes into the users_auth, users_data and
// revoked_tokens tables. It never logs hashes, tokens or passwords. It keeps
// no cache: a deleted hash or a revoked token stops authenticating at once.
// Every method is safe for concurrent use.
type Service struct {
	global  string
	tenants map[int64]string
	leeway  time.Duration
	now     func() time.Time
	st      Store
}

// New builds a Service over a store.
func New(cfg Config, st Store) *Service {
	s := &Service{
		global:  cfg.Password,
		tenants: make(map[int64]string, len(cfg.TenantPasswords)),
		leeway:  cfg.JWTLeeway,
		now:     cfg.Now,
		st:      st,
	}
	for dev, pw := range cfg.TenantPasswords {
		if pw != "" {
			s.tenants[dev] = pw
		}
	}
	switch {
	case s.leeway == 0:
		s.leeway = DefaultJWTLeeway
	case s.leeway < 0:
		s.leeway = 0
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Password returns the tenant's CometQL password: its own when configured,
// else the global one.
func (s *Service) Password(dev int64) string {
	if pw, ok := s.tenants[dev]; ok {
		return pw
	}
	return s.global
}

// CheckPassword reports whether password is the tenant's password. The
// comparison takes the same time whatever the inputs (lengths included).
func (s *Service) CheckPassword(dev int64, password string) bool {
	return equalSecret(password, s.Password(dev))
}

// equalSecret compares two secrets in constant time: it compares their
// SHA-256 digests, so neither the content nor the length leaks.
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// Authenticate decides who a browser connection claiming to be user (the
// myid URL parameter) with key (the sesion parameter) is, in tenant dev
// (SPEC 3.2). The connection is user when user is a valid user id and
// either key equals the user's users_auth hash, or key is an HS256 JWT
// signed with the tenant's password followed by the decimal dev id, whose
// payload has a numeric user_id equal to user and a numeric exp not in the
// past (allowing the configured leeway), and which is not revoked; then
// Identity.Token is key. Anything else is anonymous (UserID 0) with a nil
// error. An error means the store failed; the caller decides (the
// connection may stay anonymous).
func (s *Service) Authenticate(ctx context.Context, dev, user int64, key string) (Identity, error) {
	if !ValidUserID(user) || key == "" || len(key) > MaxTokenLen {
		return Identity{}, nil
	}
	if strings.Count(key, ".") == 2 {
		return s.authenticateJWT(ctx, dev, user, key)
	}
	if !ValidHash(key) {
		return Identity{}, nil
	}
	hashes, err := s.st.Hashes(ctx, dev, []int64{user})
	if err != nil {
		return Identity{}, fmt.Errorf("auth: read users_auth: %w", err)
	}
	if h, ok := hashes[user]; ok && equalSecret(key, h) {
		return Identity{UserID: user}, nil
	}
	return Identity{}, nil
}

func (s *Service) authenticateJWT(ctx context.Context, dev, user int64, key string) (Identity, error) {
	secret, ok := s.secret(dev)
	if !ok || !jwtCharset(key) {
		return Identity{}, nil
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(s.leeway),
		jwt.WithTimeFunc(s.now),
		jwt.WithJSONNumber(),
		// Canonical base64 only: a revoked token must not come back with a
		// different spelling of the same signature.
		jwt.WithStrictDecoding(),
	)
	claims := jwt.MapClaims{}
	tok, err := parser.ParseWithClaims(key, claims, func(t *jwt.Token) (any, error) {
		if t.Method != jwt.SigningMethodHS256 {
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		return secret, nil
	})
	if err != nil || !tok.Valid {
		return Identity{}, nil
	}
	if id, ok := claimUserID(claims["user_id"]); !ok || id != user {
		return Identity{}, nil
	}
	revoked, err := s.st.RevokedTokens(ctx, dev, []string{key})
	if err != nil {
		return Identity{}, fmt.Errorf("auth: read revoked_tokens: %w", err)
	}
	if len(revoked) > 0 {
		return Identity{}, nil
	}
	return Identity{UserID: user, Token: key}, nil
}

// jwtCharset reports whether key holds only what a compact JWT is made of
// (base64url and dots). Go's base64 decoding skips CR and LF even in strict
// mode, so without this check a revoked token with a line break inserted
// would verify again under a spelling revoked_tokens does not hold.
func jwtCharset(key string) bool {
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// secret is the tenant's JWT signing key: its password followed by the
// decimal dev id. There is none without a password (a key made of the dev
// id alone would be public).
func (s *Service) secret(dev int64) ([]byte, bool) {
	pw := s.Password(dev)
	if pw == "" {
		return nil, false
	}
	return []byte(pw + strconv.FormatInt(dev, 10)), true
}

// claimUserID reads a numeric user_id claim (decoded as json.Number); an
// integral float such as 5.0 counts, strings do not.
func claimUserID(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if id, err := n.Int64(); err == nil {
		return id, ValidUserID(id)
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || f < 1 || f > MaxUserID {
		return 0, false
	}
	return int64(f), true
}

// MakeToken returns an HS256 JWT that Authenticate accepts for user in
// tenant dev until exp: payload {"exp":<unix seconds>,"user_id":<user>},
// signed with the tenant's password followed by the decimal dev id.
func (s *Service) MakeToken(dev, user int64, exp time.Time) (string, error) {
	if !ValidUserID(user) {
		return "", fmt.Errorf("auth: make token for user %d: %w", user, ErrInvalidUser)
	}
	secret, ok := s.secret(dev)
	if !ok {
		return "", fmt.Errorf("auth: make token for dev %d: %w", dev, ErrNoPassword)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"user_id": user, "exp": exp.Unix()})
	return tok.SignedString(secret)
}

// ValidHash reports whether h is a valid users_auth hash: 1 to 32
// characters of [0-9A-Za-z=+/_].
func ValidHash(h string) bool {
	if len(h) == 0 || len(h) > MaxHashLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z',
			c == '=', c == '+', c == '/', c == '_':
		default:
			return false
		}
	}
	return true
}

// ValidUserID reports whether id is a valid user id: 1 to 2^53-1.
func ValidUserID(id int64) bool { return id >= 1 && id <= MaxUserID }

// ValidToken reports whether t may be stored in revoked_tokens: 1 to
// MaxTokenLen bytes of valid UTF-8.
func ValidToken(t string) bool {
	return t != "" && len(t) <= MaxTokenLen && utf8.ValidString(t)
}

// SetHash registers or replaces a user's browser key. It fails with
// ErrInvalidUser or ErrInvalidHash before touching the store.
func (s *Service) SetHash(ctx context.Context, dev, user int64, hash string) error {
	if !ValidUserID(user) {
		return fmt.Errorf("auth: set hash of user %d: %w", user, ErrInvalidUser)
	}
	if !ValidHash(hash) {
		// the hash itself is never put in an error message
		return fmt.Errorf("auth: set hash of user %d: %w", user, ErrInvalidHash)
	}
	return s.st.SetHash(ctx, dev, user, hash)
}

// Hashes returns the stored keys of ids (every user's when ids is nil).
func (s *Service) Hashes(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return s.st.Hashes(ctx, dev, ids)
}

// DeleteHash removes a user's key; n is 1 when one was removed. From then
// on the key no longer authenticates; disconnecting the user's live
// connections is the caller's part.
func (s *Service) DeleteHash(ctx context.Context, dev, user int64) (int64, error) {
	if !ValidUserID(user) {
		return 0, fmt.Errorf("auth: delete hash of user %d: %w", user, ErrInvalidUser)
	}
	return s.st.DeleteHash(ctx, dev, user)
}

// SetUserData upserts a user's data. It fails with ErrInvalidUser, or
// ErrInvalidData when data is not valid UTF-8, before touching the store.
func (s *Service) SetUserData(ctx context.Context, dev, user int64, data string) error {
	if !ValidUserID(user) {
		return fmt.Errorf("auth: set data of user %d: %w", user, ErrInvalidUser)
	}
	if !utf8.ValidString(data) {
		return fmt.Errorf("auth: set data of user %d: not valid UTF-8: %w", user, ErrInvalidData)
	}
	return s.st.SetUserData(ctx, dev, user, data)
}

// UserData returns the data of ids (every user's when ids is nil).
func (s *Service) UserData(ctx context.Context, dev int64, ids []int64) (map[int64]string, error) {
	return s.st.UserData(ctx, dev, ids)
}

// DeleteUserData removes a user's data; n is 1 when there was some.
func (s *Service) DeleteUserData(ctx context.Context, dev, user int64) (int64, error) {
	if !ValidUserID(user) {
		return 0, fmt.Errorf("auth: delete data of user %d: %w", user, ErrInvalidUser)
	}
	return s.st.DeleteUserData(ctx, dev, user)
}

// Revoke records token as revoked now: from then on it no longer
// authenticates (disconnecting the connections it authorized is the
// caller's part). It fails with ErrInvalidToken before touching the store.
func (s *Service) Revoke(ctx context.Context, dev int64, token string) error {
	if !ValidToken(token) {
		return fmt.Errorf("auth: revoke: %w", ErrInvalidToken)
	}
	return s.st.RevokeToken(ctx, dev, token, s.now().Unix())
}

// Unrevoke removes token from the revocation list; n is 1 when it was
// there.
func (s *Service) Unrevoke(ctx context.Context, dev int64, token string) (int64, error) {
	if !ValidToken(token) {
		return 0, fmt.Errorf("auth: unrevoke: %w", ErrInvalidToken)
	}
	return s.st.UnrevokeToken(ctx, dev, token)
}

// RevokedTokens lists revoked tokens among tokens (all of them when tokens
// is nil).
func (s *Service) RevokedTokens(ctx context.Context, dev int64, tokens []string) ([]RevokedToken, error) {
	return s.st.RevokedTokens(ctx, dev, tokens)
}
