package pipes

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// What the Redis engine writes into Redis and onto its channels. Every
// format starts with the fields the Lua scripts read (a message id, a queue
// index and time) separated by '|', and ends with the free text (message
// data, a token), so no escaping is needed. Variable strings in the middle
// are length-prefixed ("<len>:<bytes>").
//
//	message body   <id>|<kind>|<time>|<user>|<len>:<exclude><len>:<event><data>
//	  (a history entry is a body; a pipe channel carries "<seq>|<body>";
//	  for a track event <user> and <data> are the member's id and uuid)
//	private        <dev>|<user>|<time>|<id>|<len>:<event><data>
//	queue entry    <index>|<time>|<event>|<data>   (written by Lua)
//	control        k|<dev>|<user>|<token>
//	member         JSON of redisMember (a hash value read back by Go only)

var errBadPayload = errors.New("pipes: malformed payload from redis")

func appendLenString(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// encodeBody encodes m for a pipe channel and history.
func encodeBody(m *Message) string {
	user, data := m.UserID, m.Data
	if m.Kind == KindTrack {
		user, data = m.Member.UserID, m.Member.UUID
	}
	b := make([]byte, 0, 48+len(m.ID)+len(m.Exclude)+len(m.Event)+len(data))
	b = append(b, m.ID...)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(m.Kind), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, m.Time, 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, user, 10)
	b = append(b, '|')
	b = appendLenString(b, string(m.Exclude))
	b = appendLenString(b, m.Event)
	b = append(b, data...)
	return string(b)
}

// cutField returns s up to the first '|' and the rest after it.
func cutField(s string) (field, rest string, ok bool) {
	return strings.Cut(s, "|")
}

func cutInt(s string) (int64, string, bool) {
	f, rest, ok := cutField(s)
	if !ok {
		return 0, "", false
	}
	n, err := strconv.ParseInt(f, 10, 64)
	return n, rest, err == nil
}

// cutLenString reads a "<len>:<bytes>" string.
func cutLenString(s string) (string, string, bool) {
	ls, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", false
	}
	n, err := strconv.Atoi(ls)
	if err != nil || n < 0 || n > len(rest) {
		return "", "", false
	}
	return rest[:n], rest[n:], true
}

// decodeBody decodes a message body into m (Kind, ID, Time, user, Exclude,
// Event, Data or Member); the caller sets DevID, Pipe and Seq.
func decodeBody(s string, m *Message) error {
	id, s, ok := cutField(s)
	if !ok {
		return errBadPayload
	}
	kind, s, ok := cutInt(s)
	if !ok || kind < int64(KindPipe) || kind > int64(KindTrack) {
		return errBadPayload
	}
	t, s, ok := cutInt(s)
	if !ok {
		return errBadPayload
	}
	user, s, ok := cutInt(s)
	if !ok {
		return errBadPayload
	}
	exclude, s, ok := cutLenString(s)
	if !ok {
		return errBadPayload
	}
	event, data, ok := cutLenString(s)
	if !ok {
		return errBadPayload
	}
	m.ID, m.Kind, m.Time, m.Event, m.Exclude = id, Kind(kind), t, event, SessionKey(exclude)
	if m.Kind == KindTrack {
		m.Member = Member{Session: m.Exclude, UserID: user, UUID: data}
	} else {
		m.UserID, m.Data = user, data
	}
	return nil
}

// decodeChannelMessage decodes "<seq>|<body>" from a pipe channel.
func decodeChannelMessage(s string, m *Message) error {
	seq, rest, ok := cutInt(s)
	if !ok {
		return errBadPayload
	}
	m.Seq = seq
	return decodeBody(rest, m)
}

// privateMessage is a private message on its way to the nodes hosting the
// user.
type privateMessage struct {
	dev, user int64
	t         int64
	id, event string
	data      string
}

func encodePrivate(p *privateMessage) string {
	b := make([]byte, 0, 64+len(p.id)+len(p.event)+len(p.data))
	b = strconv.AppendInt(b, p.dev, 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, p.user, 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, p.t, 10)
	b = append(b, '|')
	b = append(b, p.id...)
	b = append(b, '|')
	b = appendLenString(b, p.event)
	b = append(b, p.data...)
	return string(b)
}

func decodePrivate(s string) (*privateMessage, error) {
	p := &privateMessage{}
	var ok bool
	if p.dev, s, ok = cutInt(s); !ok {
		return nil, errBadPayload
	}
	if p.user, s, ok = cutInt(s); !ok {
		return nil, errBadPayload
	}
	if p.t, s, ok = cutInt(s); !ok {
		return nil, errBadPayload
	}
	if p.id, s, ok = cutField(s); !ok {
		return nil, errBadPayload
	}
	if p.event, p.data, ok = cutLenString(s); !ok {
		return nil, errBadPayload
	}
	return p, nil
}

// decodeQueued decodes a queue entry written by the private-message script.
func decodeQueued(s string, user int64) (QueuedMessage, error) {
	q := QueuedMessage{UserID: user}
	var ok bool
	if q.Index, s, ok = cutInt(s); !ok {
		return q, errBadPayload
	}
	if q.Time, s, ok = cutInt(s); !ok {
		return q, errBadPayload
	}
	if q.Event, q.Data, ok = cutField(s); !ok {
		return q, errBadPayload
	}
	return q, nil
}

func encodeKick(dev, user int64, token string) string {
	b := make([]byte, 0, 48+len(token))
	b = append(b, "k|"...)
	b = strconv.AppendInt(b, dev, 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, user, 10)
	b = append(b, '|')
	b = append(b, token...)
	return string(b)
}

func decodeKick(s string) (dev, user int64, token string, err error) {
	rest, ok := strings.CutPrefix(s, "k|")
	if !ok {
		return 0, 0, "", errBadPayload
	}
	if dev, rest, ok = cutInt(rest); !ok {
		return 0, 0, "", errBadPayload
	}
	if user, rest, ok = cutInt(rest); !ok {
		return 0, 0, "", errBadPayload
	}
	return dev, user, rest, nil
}

// redisMember is a Member as the membership hashes hold it.
type redisMember struct {
	Session   string `json:"s"`
	UserID    int64  `json:"u,omitempty"`
	UUID      string `json:"id,omitempty"`
	UserAgent string `json:"ua,omitempty"`
	IP        string `json:"ip,omitempty"`
	Origin    string `json:"o,omitempty"`
	Language  string `json:"l,omitempty"`
}

func encodeMember(m Member) string {
	b, err := json.Marshal(redisMember{
		Session: string(m.Session), UserID: m.UserID, UUID: m.UUID,
		UserAgent: m.UserAgent, IP: m.IP, Origin: m.Origin, Language: m.Language,
	})
	if err != nil { // strings and ints always marshal
		panic(err)
	}
	return string(b)
}

func decodeMember(s string) (Member, error) {
	var r redisMember
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return Member{}, errBadPayload
	}
	return Member{
		Session: SessionKey(r.Session), UserID: r.UserID, UUID: r.UUID,
		UserAgent: r.UserAgent, IP: r.IP, Origin: r.Origin, Language: r.Language,
	}, nil
}
