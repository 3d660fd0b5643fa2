package jsapi

import (
	"testing"
	"time"
)

func TestCmdLimiter(t *testing.T) {
	var l cmdLimiter
	now := int64(time.Second)
	for i := range 3 {
		if !l.allow(now, 2, 3) {
			t.Fatalf("call %d of a full bucket of 3 refused", i)
		}
	}
	if l.allow(now, 2, 3) {
		t.Fatal("a fourth call at once allowed")
	}
	now += int64(500 * time.Millisecond) // one token back at 2/s
	if !l.allow(now, 2, 3) || l.allow(now, 2, 3) {
		t.Fatal("after 0.5 s at 2/s: want exactly one call allowed")
	}
	now += int64(time.Hour)
	for i := range 3 {
		if !l.allow(now, 2, 3) {
			t.Fatalf("after an hour: call %d refused (the bucket holds 3)", i)
		}
	}
	if l.allow(now, 2, 3) {
		t.Fatal("the bucket refilled past its burst")
	}
}
