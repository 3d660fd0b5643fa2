package jsapi

import (
	"encoding/binary"
	"errors"
)

// A small RFC 6455 frame codec. The server writes unmasked frames with FIN
// set and never a Close frame (SPEC 3.3 rule 1); it reads masked client
// frames, control frames interleaved with fragmented messages, and
// continuation frames. No extension is negotiated, so RSV bits must be 0.

// Opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

const (
	finBit            = 0x80
	maskBit           = 0x80
	maxControlPayload = 125
	// maxServerHeader is the longest header of an unmasked frame.
	maxServerHeader = 10
)

// Protocol violations: the connection is closed (with a TCP close).
var (
	errReservedBits    = errors.New("jsapi: websocket frame with RSV bits set")
	errBadOpcode       = errors.New("jsapi: websocket frame with a reserved opcode")
	errUnmasked        = errors.New("jsapi: unmasked websocket frame from a client")
	errControlFrame    = errors.New("jsapi: fragmented or oversized websocket control frame")
	errBadContinuation = errors.New("jsapi: websocket continuation frame outside a fragmented message")
	errFragmented      = errors.New("jsapi: new websocket message inside a fragmented one")
	errTooLarge        = errors.New("jsapi: websocket message too large")
	errBadLength       = errors.New("jsapi: websocket frame length with the most significant bit set")
)

// appendFrameHeader appends the header of an unmasked, final server frame
// carrying n bytes of payload.
func appendFrameHeader(b []byte, opcode byte, n int) []byte {
	switch {
	case n <= 125:
		return append(b, finBit|opcode, byte(n))
	case n <= 0xFFFF:
		return append(b, finBit|opcode, 126, byte(n>>8), byte(n))
	default:
		return append(b, finBit|opcode, 127,
			byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// frameHeader is a decoded frame header.
type frameHeader struct {
	fin       bool
	opcode    byte
	masked    bool
	mask      [4]byte
	length    int64
	headerLen int
}

// parseFrameHeader decodes the frame header at the start of b. ok is false
// (with a nil error) when b does not hold the whole header yet.
func parseFrameHeader(b []byte) (h frameHeader, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return h, false, errReservedBits
	}
	h.fin = b0&finBit != 0
	h.opcode = b0 & 0x0F
	h.masked = b1&maskBit != 0
	switch h.opcode {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, false, errBadOpcode
	}
	n := 2
	switch l := b1 & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return h, false, errBadLength
		}
		h.length = int64(v)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.opcode >= opClose && (!h.fin || h.length > maxControlPayload) {
		return h, false, errControlFrame
	}
	if h.masked {
		if len(b) < n+4 {
			return h, false, nil
		}
		copy(h.mask[:], b[n:n+4])
		n += 4
	}
	h.headerLen = n
	return h, true, nil
}

// maskBytes XORs b with the masking key, starting at key offset pos (0..3),
// and returns the key offset after b.
func maskBytes(key [4]byte, pos int, b []byte) int {
	pos &= 3
	i := 0
	// Byte by byte until the key is aligned, then 8 bytes at a time.
	for ; i < len(b) && pos != 0; i++ {
		b[i] ^= key[pos]
		pos = (pos + 1) & 3
	}
	if len(b)-i >= 8 {
		k4 := binary.LittleEndian.Uint32(key[:])
		k8 := uint64(k4) | uint64(k4)<<32
		for ; len(b)-i >= 8; i += 8 {
			v := binary.LittleEndian.Uint64(b[i:])
			binary.LittleEndian.PutUint64(b[i:], v^k8)
		}
	}
	for ; i < len(b); i++ {
		b[i] ^= key[pos]
		pos = (pos + 1) & 3
	}
	return pos
}

// message is what the assembler hands up: a complete data message (text or
// binary, fragments joined) or a control frame.
type message struct {
	op      byte // 0: nothing yet
	payload []byte
}

// assembler turns a client's byte stream into messages. It checks every
// rule of RFC 6455 a server must check, and caps messages at max bytes. Its
// zero value (with max set) is ready; it holds memory only while a
// fragmented message is in progress.
type assembler struct {
	fragOp byte // opcode of the fragmented message in progress; 0 when none
	max    int32
	frag   []byte // its payload so far
}

// next decodes the frame at the start of b, unmasking it in place. It
// returns the bytes consumed (0 when b holds no complete frame; then need
// is the buffer length the frame needs, or 0 when the header itself is
// incomplete) and the message the frame completes, if any. A payload of a
// single-frame message aliases b.
func (a *assembler) next(b []byte) (n, need int, m message, err error) {
	h, ok, err := parseFrameHeader(b)
	if err != nil || !ok {
		return 0, 0, m, err
	}
	if !h.masked {
		return 0, 0, m, errUnmasked
	}
	if h.length > int64(a.max) {
		return 0, 0, m, errTooLarge
	}
	total := h.headerLen + int(h.length)
	if len(b) < total {
		return 0, total, m, nil
	}
	payload := b[h.headerLen:total]
	maskBytes(h.mask, 0, payload)

	switch h.opcode {
	case opClose, opPing, opPong:
		return total, 0, message{op: h.opcode, payload: payload}, nil
	case opContinuation:
		if a.fragOp == 0 {
			return 0, 0, m, errBadContinuation
		}
		if len(a.frag)+len(payload) > int(a.max) {
			return 0, 0, m, errTooLarge
		}
		a.frag = append(a.frag, payload...)
		if !h.fin {
			return total, 0, m, nil
		}
		m = message{op: a.fragOp, payload: a.frag}
		a.fragOp, a.frag = 0, nil
		return total, 0, m, nil
	default: // text, binary
		if a.fragOp != 0 {
			return 0, 0, m, errFragmented
		}
		if h.fin {
			return total, 0, message{op: h.opcode, payload: payload}, nil
		}
		a.fragOp = h.opcode
		a.frag = append(make([]byte, 0, max(len(payload)*2, 512)), payload...)
		return total, 0, m, nil
	}
}
