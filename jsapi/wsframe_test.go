package jsapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// clientFrame encodes a masked client frame.
func clientFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= finBit
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, maskBit|byte(n))
	case n <= 0xFFFF:
		b = append(b, maskBit|126, byte(n>>8), byte(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	maskBytes(key, 0, b[start:])
	return b
}

func TestAppendFrameHeaderLengths(t *testing.T) {
	for _, n := range []int{0, 1, 123, 124, 125, 126, 127, 65535, 65536, 1 << 20} {
		h := appendFrameHeader(nil, opText, n)
		fh, ok, err := parseFrameHeader(h)
		if err != nil || !ok {
			t.Fatalf("n=%d: parse %x: ok=%v err=%v", n, h, ok, err)
		}
		if !fh.fin || fh.opcode != opText || fh.masked || fh.length != int64(n) || fh.headerLen != len(h) {
			t.Fatalf("n=%d: header %x decoded as %+v", n, h, fh)
		}
		want := 2
		if n > 125 {
			want = 4
		}
		if n > 65535 {
			want = 10
		}
		if len(h) != want {
			t.Fatalf("n=%d: header is %d bytes, want %d", n, len(h), want)
		}
	}
}

func TestMaskBytesMatchesBytewise(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, n := range []int{0, 1, 3, 7, 8, 9, 15, 16, 17, 100, 1000} {
		for start := 0; start < 4; start++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= key[(start+i)&3]
			}
			pos := maskBytes(key, start, b)
			if !bytes.Equal(b, want) || pos != (start+n)&3 {
				t.Fatalf("n=%d start=%d: got %x pos %d, want %x pos %d", n, start, b, pos, want, (start+n)&3)
			}
		}
	}
}

func TestAssemblerMessages(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	big := bytes.Repeat([]byte("x"), 70000)
	var stream []byte
	stream = append(stream, clientFrame(true, opText, []byte("subscription\nweb_a"), key)...)
	stream = append(stream, clientFrame(false, opText, []byte("frag1-"), key)...)
	stream = append(stream, clientFrame(true, opPing, []byte("pp"), key)...) // control frame inside a fragmented message
	stream = append(stream, clientFrame(false, opContinuation, []byte("frag2-"), key)...)
	stream = append(stream, clientFrame(true, opContinuation, []byte("frag3"), key)...)
	stream = append(stream, clientFrame(true, opBinary, big, key)...)
	stream = append(stream, clientFrame(true, opClose, nil, key)...)

	a := assembler{max: 100000}
	var got []message
	for off := 0; off < len(stream); {
		n, need, m, err := a.next(stream[off:])
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("incomplete at %d (need %d)", off, need)
		}
		off += n
		if m.op != 0 {
			got = append(got, message{m.op, bytes.Clone(m.payload)})
		}
	}
	want := []message{
		{opText, []byte("subscription\nweb_a")},
		{opPing, []byte("pp")},
		{opText, []byte("frag1-frag2-frag3")},
		{opBinary, big},
		{opClose, []byte{}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].op != want[i].op || !bytes.Equal(got[i].payload, want[i].payload) {
			t.Fatalf("message %d: op %d %.40q, want op %d %.40q", i, got[i].op, got[i].payload, want[i].op, want[i].payload)
		}
	}
}

func TestAssemblerIncomplete(t *testing.T) {
	key := [4]byte{9, 8, 7, 6}
	f := clientFrame(true, opText, bytes.Repeat([]byte("a"), 300), key)
	a := assembler{max: 1000}
	for cut := 0; cut < len(f); cut++ {
		n, need, m, err := a.next(bytes.Clone(f[:cut]))
		if err != nil || n != 0 || m.op != 0 {
			t.Fatalf("cut %d: n=%d op=%d err=%v", cut, n, m.op, err)
		}
		if cut >= 8 && need != len(f) { // header (2+2+4 bytes) complete: the frame length is known
			t.Fatalf("cut %d: need %d, want %d", cut, need, len(f))
		}
	}
}

func TestAssemblerErrors(t *testing.T) {
	key := [4]byte{1, 1, 1, 1}
	unmasked := appendFrameHeader(nil, opText, 2)
	unmasked = append(unmasked, 'h', 'i')
	cases := []struct {
		name  string
		bytes []byte
		err   error
	}{
		{"unmasked", unmasked, errUnmasked},
		{"rsv", append([]byte{finBit | 0x40 | opText}, clientFrame(true, opText, nil, key)[1:]...), errReservedBits},
		{"reserved opcode", clientFrame(true, 0x3, nil, key), errBadOpcode},
		{"fragmented ping", clientFrame(false, opPing, nil, key), errControlFrame},
		{"long ping", clientFrame(true, opPing, make([]byte, 126), key), errControlFrame},
		{"lone continuation", clientFrame(true, opContinuation, []byte("x"), key), errBadContinuation},
		{"too large", clientFrame(true, opText, make([]byte, 101), key), errTooLarge},
		{"length msb", []byte{finBit | opText, maskBit | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, errBadLength},
	}
	for _, c := range cases {
		a := assembler{max: 100}
		_, _, _, err := a.next(c.bytes)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
		}
	}

	// A new message inside a fragmented one, and fragments over the limit.
	a := assembler{max: 100}
	if _, _, _, err := a.next(clientFrame(false, opText, make([]byte, 60), key)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.next(clientFrame(true, opText, []byte("x"), key)); !errors.Is(err, errFragmented) {
		t.Fatalf("data frame inside a fragmented message: %v", err)
	}
	if _, _, _, err := a.next(clientFrame(true, opContinuation, make([]byte, 60), key)); !errors.Is(err, errTooLarge) {
		t.Fatalf("fragments over the limit: %v", err)
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the assembler: it must never
// panic, never consume more than it was given, never hand up a message over
// the limit, and must decode what a well-formed encoder produces.
func FuzzDecodeFrame(f *testing.F) {
	key := [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	f.Add(clientFrame(true, opText, []byte("subscription\nweb_chat"), key), uint16(64))
	f.Add(clientFrame(false, opText, []byte("a"), key), uint16(8))
	f.Add(append(clientFrame(false, opText, []byte("ab"), key), clientFrame(true, opContinuation, []byte("cd"), key)...), uint16(100))
	f.Add(clientFrame(true, opPing, []byte("p"), key), uint16(10))
	f.Add(clientFrame(true, opClose, []byte{3, 232}, key), uint16(10))
	f.Add([]byte{0x81, 0xFE, 0x00, 0x7E}, uint16(1000))
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0}, uint16(1000))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		a := assembler{max: int32(limit)}
		buf := bytes.Clone(data)
		for off := 0; off < len(buf); {
			n, need, m, err := a.next(buf[off:])
			if err != nil {
				return
			}
			if n < 0 || n > len(buf)-off {
				t.Fatalf("consumed %d of %d", n, len(buf)-off)
			}
			if n == 0 {
				if need != 0 && need <= len(buf)-off {
					t.Fatalf("need %d but %d available", need, len(buf)-off)
				}
				return
			}
			if len(m.payload) > int(limit) {
				t.Fatalf("message of %d bytes over the limit %d", len(m.payload), limit)
			}
			off += n
		}

		// Round trip: data as the payload of one frame decodes to itself.
		if len(data) <= int(limit) {
			a := assembler{max: int32(limit)}
			n, _, m, err := a.next(clientFrame(true, opBinary, data, key))
			if err != nil || m.op != opBinary || !bytes.Equal(m.payload, data) || n == 0 {
				t.Fatalf("round trip of %d bytes: n=%d op=%d err=%v", len(data), n, m.op, err)
			}
		}
	})
}
