package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/store"
)

// now is the fixed clock of these tests.
var now = time.Unix(1_700_000_000, 0)

const (
	globalPassword = "s3cret pass"
	tenantPassword = "tenant-3-pass"
)

// newService builds a Service over a real store in a temporary directory:
// global password globalPassword, dev 3 with tenantPassword, clock now.
func newService(t testing.TB) (*auth.Service, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir(), Sync: store.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := auth.New(auth.Config{
		Password:        globalPassword,
		TenantPasswords: map[int64]string{3: tenantPassword, 4: ""},
		Now:             func() time.Time { return now },
	}, st)
	return svc, st
}

// rawToken signs header and payload (JSON text, taken as given) with
// HMAC-SHA256 or another hash, so tests can make tokens the jwt package
// would not.
func rawToken(header, payload string, h func() hash.Hash, secret string) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	if h == nil {
		return signing + "."
	}
	mac := hmac.New(h, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

const hs256 = `{"alg":"HS256","typ":"JWT"}`

func payload(userID any, exp any) string {
	m := map[string]any{}
	if userID != nil {
		m["user_id"] = userID
	}
	if exp != nil {
		m["exp"] = exp
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t)
	for _, h := range []struct {
		dev, user int64
		hash      string
	}{{0, 7, "goodHash=+/_9"}, {3, 7, "dev3Hash"}, {0, 8, "otherHash"}} {
		if err := svc.SetHash(ctx, h.dev, h.user, h.hash); err != nil {
			t.Fatal(err)
		}
	}
	secret0 := globalPassword + "0"
	secret3 := tenantPassword + "3"
	exp := now.Add(time.Hour).Unix()
	good, err := svc.MakeToken(0, 7, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	good3, err := svc.MakeToken(3, 7, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := svc.MakeToken(0, 7, now.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Revoke(ctx, 0, revoked); err != nil {
		t.Fatal(err)
	}
	// the same signature spelled with different trailing base64 bits
	// decodes to the same bytes unless decoding is strict
	sig := good[strings.LastIndex(good, ".")+1:]
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
	nonCanonical := good[:len(good)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last^1])

	tests := []struct {
		name      string
		dev, user int64
		key       string
		want      int64
		wantToken bool
	}{
		{"good hash", 0, 7, "goodHash=+/_9", 7, false},
		{"good hash of another tenant", 3, 7, "dev3Hash", 7, false},
		{"wrong hash", 0, 7, "wrongHash", 0, false},
		{"hash prefix", 0, 7, "goodHash", 0, false},
		{"another user's hash", 0, 7, "otherHash", 0, false},
		{"hash for a different user id", 0, 8, "goodHash=+/_9", 0, false},
		{"hash of dev 3 in dev 0", 0, 7, "dev3Hash", 0, false},
		{"user without hash", 0, 9, "goodHash=+/_9", 0, false},
		{"user 0", 0, 0, "goodHash=+/_9", 0, false},
		{"negative user", 0, -7, "goodHash=+/_9", 0, false},
		{"user above 2^53-1", 0, 1 << 53, "goodHash=+/_9", 0, false},
		{"empty key", 0, 7, "", 0, false},
		{"invalid hash characters", 0, 7, "bad hash!", 0, false},
		{"hash too long", 0, 7, strings.Repeat("a", 33), 0, false},

		{"jwt good", 0, 7, good, 7, true},
		{"jwt good in a tenant with its own password", 3, 7, good3, 7, true},
		{"jwt signed by hand for dev 3", 3, 7, rawToken(hs256, payload(7, exp), sha256.New, secret3), 7, true},
		{"jwt of dev 3 in dev 0", 0, 7, good3, 0, false},
		{"jwt of dev 0 in dev 3", 3, 7, good, 0, false},
		{"jwt user mismatch", 0, 8, good, 0, false},
		{"jwt revoked", 0, 7, revoked, 0, false},
		{"jwt revoked, respelled with a line break", 0, 7, revoked[:len(revoked)-5] + "\n" + revoked[len(revoked)-5:], 0, false},
		{"jwt with a line break", 0, 7, good[:len(good)-5] + "\r\n" + good[len(good)-5:], 0, false},
		{"jwt expired", 0, 7, rawToken(hs256, payload(7, now.Add(-time.Hour).Unix()), sha256.New, secret0), 0, false},
		{"jwt expired within leeway", 0, 7, rawToken(hs256, payload(7, now.Add(-3*time.Second).Unix()), sha256.New, secret0), 7, true},
		{"jwt expired beyond leeway", 0, 7, rawToken(hs256, payload(7, now.Add(-6*time.Second).Unix()), sha256.New, secret0), 0, false},
		{"jwt wrong secret", 0, 7, rawToken(hs256, payload(7, exp), sha256.New, "wrong0"), 0, false},
		{"jwt secret without dev id", 0, 7, rawToken(hs256, payload(7, exp), sha256.New, globalPassword), 0, false},
		{"jwt global secret in a tenant with its own", 3, 7, rawToken(hs256, payload(7, exp), sha256.New, globalPassword+"3"), 0, false},
		{"jwt tenant with empty password uses the global one", 4, 7, rawToken(hs256, payload(7, exp), sha256.New, globalPassword+"4"), 7, true},
		{"jwt alg none", 0, 7, rawToken(`{"alg":"none","typ":"JWT"}`, payload(7, exp), nil, ""), 0, false},
		{"jwt alg None", 0, 7, rawToken(`{"alg":"None","typ":"JWT"}`, payload(7, exp), nil, ""), 0, false},
		{"jwt alg HS512", 0, 7, rawToken(`{"alg":"HS512","typ":"JWT"}`, payload(7, exp), sha512.New, secret0), 0, false},
		{"jwt alg HS384", 0, 7, rawToken(`{"alg":"HS384","typ":"JWT"}`, payload(7, exp), sha512.New384, secret0), 0, false},
		{"jwt header claims HS512, signed HS256", 0, 7, rawToken(`{"alg":"HS512","typ":"JWT"}`, payload(7, exp), sha256.New, secret0), 0, false},
		{"jwt alg RS256", 0, 7, rawToken(`{"alg":"RS256","typ":"JWT"}`, payload(7, exp), sha256.New, secret0), 0, false},
		{"jwt user_id string", 0, 7, rawToken(hs256, payload("7", exp), sha256.New, secret0), 0, false},
		{"jwt user_id 7.0", 0, 7, rawToken(hs256, `{"user_id":7.0,"exp":`+jsonInt(exp)+`}`, sha256.New, secret0), 7, true},
		{"jwt user_id 7.5", 0, 7, rawToken(hs256, `{"user_id":7.5,"exp":`+jsonInt(exp)+`}`, sha256.New, secret0), 0, false},
		{"jwt user_id missing", 0, 7, rawToken(hs256, payload(nil, exp), sha256.New, secret0), 0, false},
		{"jwt user_id 0", 0, 7, rawToken(hs256, payload(0, exp), sha256.New, secret0), 0, false},
		{"jwt exp missing", 0, 7, rawToken(hs256, payload(7, nil), sha256.New, secret0), 0, false},
		{"jwt exp string", 0, 7, rawToken(hs256, payload(7, jsonInt(exp)), sha256.New, secret0), 0, false},
		{"jwt nbf in the future", 0, 7, rawToken(hs256, `{"user_id":7,"exp":`+jsonInt(exp)+`,"nbf":`+jsonInt(exp-60)+`}`, sha256.New, secret0), 0, false},
		{"jwt non-canonical signature", 0, 7, nonCanonical, 0, false},
		{"jwt padded", 0, 7, good + "=", 0, false},
		{"jwt truncated signature", 0, 7, good[:len(good)-2], 0, false},
		{"jwt payload not json", 0, 7, rawToken(hs256, "user_id=7", sha256.New, secret0), 0, false},
		{"three dots of garbage", 0, 7, "a.b.c", 0, false},
		{"jwt too long", 0, 7, rawToken(hs256, `{"user_id":7,"exp":`+jsonInt(exp)+`,"x":"`+strings.Repeat("x", auth.MaxTokenLen)+`"}`, sha256.New, secret0), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := svc.Authenticate(ctx, tt.dev, tt.user, tt.key)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id.UserID != tt.want {
				t.Errorf("UserID = %d, want %d", id.UserID, tt.want)
			}
			if tt.wantToken && id.Token != tt.key || !tt.wantToken && id.Token != "" {
				t.Errorf("Token = %q, want it set: %v", id.Token, tt.wantToken)
			}
		})
	}

	// Unrevoking and deleting take effect at once.
	if n, err := svc.Unrevoke(ctx, 0, revoked); err != nil || n != 1 {
		t.Fatalf("Unrevoke = %d, %v", n, err)
	}
	if id, err := svc.Authenticate(ctx, 0, 7, revoked); err != nil || id.UserID != 7 {
		t.Errorf("after Unrevoke: %+v, %v", id, err)
	}
	if n, err := svc.DeleteHash(ctx, 0, 7); err != nil || n != 1 {
		t.Fatalf("DeleteHash = %d, %v", n, err)
	}
	if id, err := svc.Authenticate(ctx, 0, 7, "goodHash=+/_9"); err != nil || id.UserID != 0 {
		t.Errorf("after DeleteHash: %+v, %v", id, err)
	}
	if err := svc.Revoke(ctx, 0, good); err != nil {
		t.Fatal(err)
	}
	if id, err := svc.Authenticate(ctx, 0, 7, good); err != nil || id.UserID != 0 {
		t.Errorf("after Revoke: %+v, %v", id, err)
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestAuthenticateStoreErrors(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	if err := svc.SetHash(ctx, 0, 7, "h"); err != nil {
		t.Fatal(err)
	}
	token, err := svc.MakeToken(0, 7, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, key := range []string{"h", token} {
		id, err := svc.Authenticate(ctx, 0, 7, key)
		if !errors.Is(err, store.ErrClosed) || !errors.Is(err, pipes.ErrStore) || id.UserID != 0 {
			t.Errorf("Authenticate(%.10s...) on a closed store = %+v, %v; want a store error", key, id, err)
		}
	}
	// what needs no store still answers
	if id, err := svc.Authenticate(ctx, 0, 7, "not a hash"); err != nil || id.UserID != 0 {
		t.Errorf("invalid key on a closed store = %+v, %v", id, err)
	}
}

func TestPasswords(t *testing.T) {
	svc, _ := newService(t)
	tests := []struct {
		dev      int64
		want     string
		wrong    []string
		describe string
	}{
		{0, globalPassword, []string{"", "s3cret", globalPassword + " ", tenantPassword}, "global"},
		{3, tenantPassword, []string{"", globalPassword, tenantPassword + "x"}, "tenant's own"},
		{4, globalPassword, []string{"", tenantPassword}, "tenant with an empty one: global"},
		{5, globalPassword, []string{tenantPassword}, "unknown tenant: global"},
	}
	for _, tt := range tests {
		if got := svc.Password(tt.dev); got != tt.want {
			t.Errorf("%s: Password(%d) = %q, want %q", tt.describe, tt.dev, got, tt.want)
		}
		if !svc.CheckPassword(tt.dev, tt.want) {
			t.Errorf("%s: CheckPassword(%d, right) = false", tt.describe, tt.dev)
		}
		for _, w := range tt.wrong {
			if svc.CheckPassword(tt.dev, w) {
				t.Errorf("%s: CheckPassword(%d, %q) = true", tt.describe, tt.dev, w)
			}
		}
	}
	empty := auth.New(auth.Config{}, nil)
	if !empty.CheckPassword(0, "") || empty.CheckPassword(0, "x") {
		t.Error("an empty password must match only the empty password")
	}
}

func TestMakeToken(t *testing.T) {
	svc, _ := newService(t)
	exp := now.Add(time.Minute)
	tok, err := svc.MakeToken(3, 42, exp)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(tenantPassword + "3"), nil },
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil || parsed.Method != jwt.SigningMethodHS256 {
		t.Fatalf("parse: %v, method %v", err, parsed.Method)
	}
	if claims["user_id"] != float64(42) || claims["exp"] != float64(exp.Unix()) || len(claims) != 2 {
		t.Errorf("claims = %v", claims)
	}
	if _, err := svc.MakeToken(0, 0, exp); !errors.Is(err, auth.ErrInvalidUser) {
		t.Errorf("user 0: %v, want ErrInvalidUser", err)
	}
	noPassword := auth.New(auth.Config{}, nil)
	if _, err := noPassword.MakeToken(0, 1, exp); !errors.Is(err, auth.ErrNoPassword) {
		t.Errorf("no password: %v, want ErrNoPassword", err)
	}
}

func TestNoPasswordNoJWT(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir(), Sync: store.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := auth.New(auth.Config{Now: func() time.Time { return now }}, st)
	// signed with the dev id alone, the secret an empty password would give
	tok := rawToken(hs256, payload(7, now.Add(time.Hour).Unix()), sha256.New, "0")
	if id, err := svc.Authenticate(context.Background(), 0, 7, tok); err != nil || id.UserID != 0 {
		t.Errorf("JWT without a password = %+v, %v; want anonymous", id, err)
	}
}

func TestLeeway(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), Sync: store.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok := rawToken(hs256, payload(7, now.Add(-30*time.Second).Unix()), sha256.New, "p0")
	tests := []struct {
		leeway time.Duration
		want   int64
	}{{0, 0}, {-1, 0}, {time.Minute, 7}}
	for _, tt := range tests {
		svc := auth.New(auth.Config{Password: "p", JWTLeeway: tt.leeway, Now: func() time.Time { return now }}, st)
		if id, err := svc.Authenticate(ctx, 0, 7, tok); err != nil || id.UserID != tt.want {
			t.Errorf("leeway %v: %+v, %v; want user %d", tt.leeway, id, err, tt.want)
		}
	}
}

func TestValidation(t *testing.T) {
	hashes := []struct {
		h    string
		want bool
	}{
		{"a", true}, {"0123456789abcdefABCDEF=+/_xyzXYZ", true}, {strings.Repeat("z", 32), true},
		{"", false}, {strings.Repeat("z", 33), false}, {"a b", false}, {"a-b", false}, {"a.b", false},
		{"хеш", false}, {"a\x00", false}, {"a'b", false},
	}
	for _, tt := range hashes {
		if got := auth.ValidHash(tt.h); got != tt.want {
			t.Errorf("ValidHash(%q) = %v", tt.h, got)
		}
	}
	users := []struct {
		id   int64
		want bool
	}{{1, true}, {1<<53 - 1, true}, {0, false}, {-1, false}, {1 << 53, false}, {1<<63 - 1, false}}
	for _, tt := range users {
		if got := auth.ValidUserID(tt.id); got != tt.want {
			t.Errorf("ValidUserID(%d) = %v", tt.id, got)
		}
	}
	tokens := []struct {
		tok  string
		want bool
	}{{"x", true}, {"a.b.c", true}, {"Привет", true}, {strings.Repeat("t", auth.MaxTokenLen), true},
		{"", false}, {strings.Repeat("t", auth.MaxTokenLen+1), false}, {"\xff", false}}
	for _, tt := range tokens {
		if got := auth.ValidToken(tt.tok); got != tt.want {
			t.Errorf("ValidToken(%.20q) = %v", tt.tok, got)
		}
	}
}

func TestTableWrappers(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)

	// invalid values never reach the store
	invalid := []struct {
		name string
		call func() error
		want error
	}{
		{"SetHash user 0", func() error { return svc.SetHash(ctx, 0, 0, "h") }, auth.ErrInvalidUser},
		{"SetHash user 2^53", func() error { return svc.SetHash(ctx, 0, 1<<53, "h") }, auth.ErrInvalidUser},
		{"SetHash bad hash", func() error { return svc.SetHash(ctx, 0, 1, "bad hash") }, auth.ErrInvalidHash},
		{"SetHash empty hash", func() error { return svc.SetHash(ctx, 0, 1, "") }, auth.ErrInvalidHash},
		{"DeleteHash user -1", func() error { _, err := svc.DeleteHash(ctx, 0, -1); return err }, auth.ErrInvalidUser},
		{"SetUserData user 0", func() error { return svc.SetUserData(ctx, 0, 0, "d") }, auth.ErrInvalidUser},
		{"SetUserData invalid UTF-8", func() error { return svc.SetUserData(ctx, 0, 1, "a\xffb") }, auth.ErrInvalidData},
		{"DeleteUserData user 0", func() error { _, err := svc.DeleteUserData(ctx, 0, 0); return err }, auth.ErrInvalidUser},
		{"Revoke empty", func() error { return svc.Revoke(ctx, 0, "") }, auth.ErrInvalidToken},
		{"Revoke invalid UTF-8", func() error { return svc.Revoke(ctx, 0, "\xff") }, auth.ErrInvalidToken},
		{"Unrevoke empty", func() error { _, err := svc.Unrevoke(ctx, 0, ""); return err }, auth.ErrInvalidToken},
	}
	for _, tt := range invalid {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if h, _ := st.Hashes(ctx, 0, nil); len(h) != 0 {
		t.Errorf("invalid hashes reached the store: %v", h)
	}
	if d, _ := st.UserData(ctx, 0, nil); len(d) != 0 {
		t.Errorf("invalid data reached the store: %v", d)
	}

	// valid values round-trip
	if err := svc.SetHash(ctx, 0, 1, "h1"); err != nil {
		t.Fatal(err)
	}
	if h, err := svc.Hashes(ctx, 0, []int64{1, 2}); err != nil || len(h) != 1 || h[1] != "h1" {
		t.Errorf("Hashes = %v, %v", h, err)
	}
	data := "Привет 👋 it's {\"json\":true}\n"
	if err := svc.SetUserData(ctx, 0, 1, data); err != nil {
		t.Fatal(err)
	}
	if d, err := svc.UserData(ctx, 0, nil); err != nil || d[1] != data {
		t.Errorf("UserData = %v, %v", d, err)
	}
	if n, err := svc.DeleteUserData(ctx, 0, 1); err != nil || n != 1 {
		t.Errorf("DeleteUserData = %d, %v", n, err)
	}
	if err := svc.Revoke(ctx, 3, "tok"); err != nil {
		t.Fatal(err)
	}
	if r, err := svc.RevokedTokens(ctx, 3, nil); err != nil || len(r) != 1 || r[0] != (auth.RevokedToken{Token: "tok", Time: now.Unix()}) {
		t.Errorf("RevokedTokens = %v, %v", r, err)
	}
	if r, err := svc.RevokedTokens(ctx, 0, nil); err != nil || len(r) != 0 {
		t.Errorf("dev 0 sees dev 3's revoked tokens: %v, %v", r, err)
	}
}
