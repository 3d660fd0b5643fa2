package pipes

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of names and values, from SPEC 2.3 and 3.4.
const (
	MinPipeName   = 2
	MaxPipeName   = 64
	MaxEventName  = 64
	MaxMarker     = 64
	MaxUserID     = 1<<53 - 1 // JavaScript-safe integers
	MaxLogLength  = 1000
	DefaultMaxMsg = 64 << 10
)

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ValidPipeName reports whether name is 2..64 characters of [A-Za-z0-9_-].
func ValidPipeName(name string) bool {
	if len(name) < MinPipeName || len(name) > MaxPipeName {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return false
		}
	}
	return true
}

// ValidEventName reports whether name is 0..64 characters of [A-Za-z0-9_-].
func ValidEventName(name string) bool {
	if len(name) > MaxEventName {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return false
		}
	}
	return true
}

// ValidMarker reports whether m is 1..64 characters of [A-Za-z0-9_.-].
func ValidMarker(m string) bool {
	if len(m) < 1 || len(m) > MaxMarker {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !isNameByte(m[i]) && m[i] != '.' {
			return false
		}
	}
	return true
}

// ValidUserID reports whether id is a user id: 1..2^53-1.
func ValidUserID(id int64) bool { return id >= 1 && id <= MaxUserID }

// ValidateMessage checks a message text: valid UTF-8 and at most maxBytes
// bytes (maxBytes <= 0 means DefaultMaxMsg).
func ValidateMessage(data string, maxBytes int) error {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxMsg
	}
	if len(data) > maxBytes {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(data), maxBytes)
	}
	if !utf8.ValidString(data) {
		return ErrInvalidMessage
	}
	return nil
}

// ValidatePublish checks what a CometQL publish carries.
func ValidatePublish(pipe, event, data string, maxBytes int) error {
	if !ValidPipeName(pipe) {
		return fmt.Errorf("%w: %q", ErrInvalidPipe, clip(pipe))
	}
	if !ValidEventName(event) {
		return fmt.Errorf("%w: %q", ErrInvalidEvent, clip(event))
	}
	return ValidateMessage(data, maxBytes)
}

// IsTrackPipe reports whether pipe is a track_* pipe (membership events).
func IsTrackPipe(pipe string) bool { return strings.HasPrefix(pipe, "track_") }

// IsWebPipe reports whether browsers may publish to pipe without being
// authorized (web_*).
func IsWebPipe(pipe string) bool { return strings.HasPrefix(pipe, "web_") }

// IsWebAuthPipe reports whether pipe is a webauth_* pipe: authorized
// browsers may publish.
func IsWebAuthPipe(pipe string) bool { return strings.HasPrefix(pipe, "webauth_") }

// IsPrivatePipe reports whether pipe needs an authorized connection to
// subscribe (private_*).
func IsPrivatePipe(pipe string) bool { return strings.HasPrefix(pipe, "private_") }

// IsServerPipe reports whether pipe is reserved for server replies (sys,
// _answer*), which browsers cannot subscribe to.
func IsServerPipe(pipe string) bool {
	return pipe == "sys" || strings.HasPrefix(pipe, "_answer")
}

// CanSubscribe says whether a browser connection may subscribe to (or read
// the history of) a pipe.
func CanSubscribe(pipe string, authorized bool) error {
	if !ValidPipeName(pipe) {
		return fmt.Errorf("%w: %q", ErrInvalidPipe, clip(pipe))
	}
	if IsServerPipe(pipe) {
		return fmt.Errorf("%w: pipe %q is reserved for server replies", ErrForbidden, pipe)
	}
	if IsPrivatePipe(pipe) && !authorized {
		return fmt.Errorf("%w: pipe %q needs an authorized connection", ErrForbidden, pipe)
	}
	return nil
}

// CanWebPublish says whether a browser connection may publish to a pipe with
// web_pipe2: web_* always, webauth_* when authorized.
func CanWebPublish(pipe string, authorized bool) error {
	if !ValidPipeName(pipe) {
		return fmt.Errorf("%w: %q", ErrInvalidPipe, clip(pipe))
	}
	switch {
	case IsWebPipe(pipe):
		return nil
	case IsWebAuthPipe(pipe):
		if authorized {
			return nil
		}
		return fmt.Errorf("%w: pipe %q accepts messages from authorized users only", ErrForbidden, pipe)
	}
	return fmt.Errorf("%w: browsers may publish only to web_* and webauth_* pipes, not %q", ErrForbidden, pipe)
}

// CanCount says whether browsers may count a pipe's subscribers
// (web_* and track_* only).
func CanCount(pipe string) error {
	if !ValidPipeName(pipe) {
		return fmt.Errorf("%w: %q", ErrInvalidPipe, clip(pipe))
	}
	if IsWebPipe(pipe) || IsTrackPipe(pipe) {
		return nil
	}
	return fmt.Errorf("%w: only web_* and track_* pipes can be counted, not %q", ErrForbidden, pipe)
}

// clip shortens a value for an error message.
func clip(s string) string {
	const n = 70
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.ToValidUTF8(s[:n], "\uFFFD") + "..."
}
