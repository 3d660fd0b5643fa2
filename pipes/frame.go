package pipes

import (
	"strconv"
	"unicode/utf8"
)

// Frames are the JSON objects browsers receive, in the key order and shape
// CppComet's client expects (SPEC 3.3). Every frame is built once and the
// same bytes are queued to every recipient, so frames are immutable.
//
// The encoder escapes every apostrophe as \u0027 (the original client
// rewrites backslash-apostrophe before parsing), U+2028/U+2029 (so frames
// can be embedded in JSONP), and replaces invalid UTF-8 with U+FFFD.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '\'' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default: // other controls and '
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendKey(b []byte, key string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// appendUUID adds the message id as the "uuid" key: CppComet's client drops
// a frame whose uuid it has seen in the last minutes, which is what makes a
// page connected to several nodes (node: [...]) receive each message once.
func appendUUID(b []byte, id string) []byte {
	if id == "" {
		return b
	}
	b = append(b, `,"uuid":`...)
	return appendString(b, id)
}

// messageFrame encodes a published message for its subscribers.
func messageFrame(m *Message) []byte {
	switch m.Kind {
	case KindPresence:
		b := make([]byte, 0, 96+len(m.Pipe))
		b = append(b, `{"data":`...)
		b = appendString(b, m.Data)
		b = append(b, `,"event":`...)
		b = appendString(b, m.Event)
		b = append(b, `,"pipe":`...)
		b = appendString(b, m.Pipe)
		b = append(b, `,"message_send_time":`...)
		b = appendInt(b, m.Time)
		b = appendUUID(b, m.ID)
		return append(b, '}')
	case KindTrack:
		b := make([]byte, 0, 128+len(m.Pipe))
		b = append(b, `{"data":{"user_id":`...)
		b = appendInt(b, m.Member.UserID)
		b = append(b, `,"uuid":`...)
		b = appendString(b, m.Member.UUID)
		b = append(b, `},"event":`...)
		b = appendString(b, m.Event)
		b = append(b, `,"message_send_time":`...)
		b = appendInt(b, m.Time)
		b = append(b, `,"pipe":`...)
		b = appendString(b, m.Pipe)
		b = appendUUID(b, m.ID)
		return append(b, '}')
	}
	return appendMessage(make([]byte, 0, 128+len(m.Data)+len(m.Pipe)+len(m.Event)), m, false)
}

// historyFrame encodes a stored message replayed by pipe_log.
func historyFrame(m *Message) []byte {
	return appendMessage(make([]byte, 0, 140+len(m.Data)+len(m.Pipe)+len(m.Event)), m, true)
}

func appendMessage(b []byte, m *Message, history bool) []byte {
	b = append(b, `{"data":`...)
	b = appendString(b, m.Data)
	b = append(b, `,"event":`...)
	b = appendString(b, m.Event)
	b = append(b, `,"message_send_time":`...)
	b = appendInt(b, m.Time)
	b = append(b, `,"pipe":`...)
	b = appendString(b, m.Pipe)
	b = append(b, `,"user_id":`...)
	b = appendInt(b, m.UserID)
	if m.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, m.ID)
		if !history {
			// Not on a replay: CppComet's client drops a frame whose uuid
			// it saw in the last minutes, so a page asking for the
			// history of messages it already received would get nothing.
			b = appendUUID(b, m.ID)
		}
	}
	if m.Seq > 0 {
		b = append(b, `,"seq":`...)
		b = appendInt(b, m.Seq)
	}
	if history {
		b = append(b, `,"history":true`...)
	}
	return append(b, '}')
}

// privateFrame encodes a private message on the msg pipe; id (when not
// empty) becomes the uuid key.
func privateFrame(id, event, data string, t int64, fromQueue bool) []byte {
	b := make([]byte, 0, 96+len(data)+len(event))
	b = append(b, `{"data":`...)
	b = appendString(b, data)
	b = append(b, `,"event":`...)
	b = appendString(b, event)
	b = append(b, `,"message_send_time":`...)
	b = appendInt(b, t)
	b = append(b, `,"pipe":"msg"`...)
	b = appendUUID(b, id)
	if fromQueue {
		b = append(b, `,"fromQueue":true`...)
	}
	return append(b, '}')
}

// serverInfoFrame is the first frame of every connection (SPEC 3.2).
func serverInfoFrame(authorized bool, key string, t int64, server string) []byte {
	b := make([]byte, 0, 128+len(key))
	b = append(b, `{"authorized":`...)
	b = strconv.AppendBool(b, authorized)
	b = append(b, `,"data":`...)
	if !authorized {
		key = ""
	}
	b = appendString(b, key)
	b = append(b, `,"event":"serverInfo","message_send_time":`...)
	b = appendInt(b, t)
	b = append(b, `,"pipe":"sys","server":`...)
	b = appendString(b, server)
	return append(b, '}')
}

// ErrorFrame encodes a sys error frame with a textual code.
func ErrorFrame(code, text string, t int64) []byte {
	b := make([]byte, 0, 96+len(text))
	b = append(b, `{"data":{"error":`...)
	b = appendString(b, text)
	b = append(b, `,"code":`...)
	b = appendString(b, code)
	b = append(b, `},"event":"error","message_send_time":`...)
	b = appendInt(b, t)
	return append(b, `,"pipe":"sys"}`...)
}

// HandshakeErrorFrame encodes the sys error sent before closing a connection
// whose handshake failed (SPEC 3.7), e.g. code 418 with text
// "Invalid request Not assigned client api version". Its top-level "error"
// key (the code as a string) tells CppComet's client that the error is
// fatal, so it stops reconnecting; no other frame carries that key.
func HandshakeErrorFrame(code int, text string, t int64) []byte {
	b := make([]byte, 0, 128+len(text))
	b = append(b, `{"error":`...)
	b = appendString(b, strconv.Itoa(code))
	b = append(b, `,"data":{"error":`...)
	b = appendString(b, "Error code "+strconv.Itoa(code)+"("+text+")")
	b = append(b, `,"error_code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `},"event":"error","message_send_time":`...)
	b = appendInt(b, t)
	return append(b, `,"pipe":"sys"}`...)
}

// answerFrame is the delivery report sent to a browser publisher. The
// empty "error" is CppComet's: its documented chat examples show
// data.error next to the count.
func answerFrame(pipe, message string, n int, t int64) []byte {
	b := make([]byte, 0, 140+len(message)+len(pipe))
	b = append(b, `{"data":{"message":`...)
	b = appendString(b, message)
	b = append(b, `,"number_messages":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"error":""},"event":"answer","message_send_time":`...)
	b = appendInt(b, t)
	b = append(b, `,"pipe":`...)
	b = appendString(b, "_answer_to_"+pipe)
	return append(b, '}')
}

// pipeCountFrame answers pipe_count.
func pipeCountFrame(n int, marker string, t int64) []byte {
	b := make([]byte, 0, 160)
	b = append(b, `{"data":{"user_in_pipe":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"0":"user_in_pipe","1":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `},"event":"user_in_pipe","marker":`...)
	b = appendString(b, marker)
	b = append(b, `,"message_send_time":`...)
	b = appendInt(b, t)
	return append(b, `,"pipe":"_answer_pipe_count"}`...)
}

// trackUsersFrame answers track_pipe_users.
func trackUsersFrame(members []Member, marker string, t int64) []byte {
	b := make([]byte, 0, 128+len(members)*48)
	b = append(b, `{"_info":"answer for track_pipe_users","data":[`...)
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"user_id":`...)
		b = appendInt(b, m.UserID)
		b = append(b, `,"uuid":`...)
		b = appendString(b, m.UUID)
		b = append(b, '}')
	}
	b = append(b, `],"event":"answer","marker":`...)
	b = appendString(b, marker)
	b = append(b, `,"message_send_time":`...)
	b = appendInt(b, t)
	return append(b, `,"pipe":"_answer"}`...)
}

// userDataFrame answers user_data.
func userDataFrame(user int64, data, marker string, t int64) []byte {
	b := make([]byte, 0, 128+len(data))
	b = append(b, `{"data":{"user_data":`...)
	b = appendString(b, data)
	b = append(b, `,"user_id":`...)
	b = appendInt(b, user)
	b = append(b, `},"event":"answer","marker":`...)
	b = appendString(b, marker)
	b = append(b, `,"message_send_time":`...)
	b = appendInt(b, t)
	return append(b, `,"pipe":"_answer"}`...)
}

// userStatusFrame answers user_status.
func userStatusFrame(user int64, online bool, last int64, t int64) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"data":{"online":`...)
	b = strconv.AppendBool(b, online)
	b = append(b, `,"last_online_time":`...)
	b = appendInt(b, last)
	b = append(b, `},"event":"user_status_`...)
	b = appendInt(b, user)
	b = append(b, `","message_send_time":`...)
	b = appendInt(b, t)
	return append(b, `,"pipe":"_answer_user_status"}`...)
}
