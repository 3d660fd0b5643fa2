package auth_test

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fixed inputs of FuzzAuthenticateJWT; its seed corpus in
// testdata/fuzz/FuzzAuthenticateJWT holds tokens made from them.
const fuzzHash = "fuzzHash7"

var (
	fuzzExp        = time.Unix(4102444800, 0) // 2100-01-01
	fuzzRevokedExp = fuzzExp.Add(time.Second)
)

// FuzzAuthenticateJWT feeds arbitrary keys and user ids to Authenticate.
// Nothing may crash or fail, and nothing but the registered hash and the one
// valid, unrevoked token may authorize, and only as user 7.
func FuzzAuthenticateJWT(f *testing.F) {
	ctx := context.Background()
	svc, _ := newService(f)
	if err := svc.SetHash(ctx, 0, 7, fuzzHash); err != nil {
		f.Fatal(err)
	}
	good, err := svc.MakeToken(0, 7, fuzzExp)
	if err != nil {
		f.Fatal(err)
	}
	revoked, err := svc.MakeToken(0, 7, fuzzRevokedExp)
	if err != nil {
		f.Fatal(err)
	}
	if err := svc.Revoke(ctx, 0, revoked); err != nil {
		f.Fatal(err)
	}
	secret := globalPassword + "0"
	f.Add(good, int64(7))
	f.Add(good, int64(8))
	f.Add(revoked, int64(7))
	f.Add(fuzzHash, int64(7))
	f.Add(rawToken(`{"alg":"none"}`, payload(7, fuzzExp.Unix()), nil, ""), int64(7))
	f.Add(rawToken(`{"alg":"HS512"}`, payload(7, fuzzExp.Unix()), sha512.New, secret), int64(7))
	f.Add(rawToken(hs256, payload(7, now.Add(-time.Hour).Unix()), sha256.New, secret), int64(7))
	f.Add(rawToken(hs256, payload("7", fuzzExp.Unix()), sha256.New, secret), int64(7))
	f.Add("a.b.c", int64(1))
	f.Fuzz(func(t *testing.T, key string, user int64) {
		id, err := svc.Authenticate(ctx, 0, user, key)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		switch {
		case id.UserID == 0:
			if id.Token != "" {
				t.Fatalf("anonymous with a token: %+v", id)
			}
		case id.UserID != 7 || user != 7:
			t.Fatalf("authorized as %d for user %d", id.UserID, user)
		case key == fuzzHash && id.Token == "":
		case key == good && id.Token == good:
		default:
			t.Fatalf("authorized %+v by key %q", id, key)
		}
	})
}

// TestFuzzCorpusGoodToken checks that the committed seed corpus still
// holds the valid token (so the fuzz target exercises the authorized path).
func TestFuzzCorpusGoodToken(t *testing.T) {
	svc, _ := newService(t)
	good, err := svc.MakeToken(0, 7, fuzzExp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzAuthenticateJWT", "good_token"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "string(" + strconv.Quote(good) + ")"; !strings.Contains(string(b), want) {
		t.Errorf("seed good_token does not hold the valid token %s; regenerate the corpus", want)
	}
}
