package jsapi

import (
	"context"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cometql/cometql/pipes"
)

// cmdKind names a browser command (SPEC 3.4).
type cmdKind uint8

const (
	cmdSubscription   cmdKind = iota + 1 // subscription\n<pipe>\n<pipe>...
	cmdWebPipe                           // web_pipe2\n<pipe>\n<event>\n<auth>\n<message...>
	cmdPipeLog                           // pipe_log\n<pipe>\n<marker>\n[since]
	cmdPipeCount                         // pipe_count\n<pipe>\n<marker>\n
	cmdTrackPipeUsers                    // track_pipe_users\n<pipe>\n<marker>
	cmdUserData                          // user_data\n<marker>\n<user_id>
	cmdUserStatus                        // user_status\n<user_id>
	cmdStatistics                        // statistics\n<json>: accepted and ignored
)

// command is one decoded browser command. Only the fields of its kind are
// set.
type command struct {
	kind   cmdKind
	names  []string // subscription: the complete list of pipes, as sent
	pipe   string
	event  string
	marker string
	data   string // web_pipe2: the message, the rest of the frame
	since  int64  // pipe_log: replay only seq > since
	user   int64  // user_data, user_status
}

// cmdError is a command the server cannot run; the browser gets a sys error
// frame with its code and text and the connection stays open.
type cmdError struct {
	code string
	text string
}

func (e *cmdError) Error() string { return e.text }

// decodeCommand decodes one command: a text frame (or long-poll body)
// "<command>\n<arg>\n<arg>...". It is pure: it only splits and converts, the
// hub validates names, markers and rights. A '\r' ending a line other than a
// web_pipe2 message is dropped.
func decodeCommand(text string) (command, *cmdError) {
	if !utf8.ValidString(text) {
		return command{}, &cmdError{"invalid_message", "the command is not valid UTF-8"}
	}
	name, rest, _ := strings.Cut(text, "\n")
	name = strings.TrimSuffix(name, "\r")
	switch name {
	case "subscription":
		var list []string
		if rest != "" {
			list = strings.Split(rest, "\n")
			for i, s := range list {
				list[i] = strings.TrimSuffix(s, "\r")
			}
		}
		return command{kind: cmdSubscription, names: list}, nil

	case "web_pipe2":
		parts := strings.SplitN(rest, "\n", 4)
		if len(parts) < 4 {
			return command{}, &cmdError{"bad_command", "web_pipe2 needs four lines: pipe, event, auth character and message"}
		}
		return command{
			kind:  cmdWebPipe,
			pipe:  strings.TrimSuffix(parts[0], "\r"),
			event: strings.TrimSuffix(parts[1], "\r"),
			data:  parts[3],
		}, nil

	case "pipe_log":
		args := lines(rest, 3)
		c := command{kind: cmdPipeLog, pipe: args[0], marker: args[1]}
		if s := args[2]; s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return command{}, &cmdError{"bad_command", "pipe_log: since must be a sequence number, not " + strconv.Quote(clipString(s, 32))}
			}
			c.since = n
		}
		if c.pipe == "" {
			return command{}, &cmdError{"bad_command", "pipe_log needs a pipe name"}
		}
		return c, nil

	case "pipe_count", "track_pipe_users":
		args := lines(rest, 2)
		kind := cmdPipeCount
		if name == "track_pipe_users" {
			kind = cmdTrackPipeUsers
		}
		if args[0] == "" {
			return command{}, &cmdError{"bad_command", name + " needs a pipe name and a marker"}
		}
		return command{kind: kind, pipe: args[0], marker: args[1]}, nil

	case "user_data":
		args := lines(rest, 2)
		user, err := parseUser(args[1])
		if err != nil {
			return command{}, err
		}
		return command{kind: cmdUserData, marker: args[0], user: user}, nil

	case "user_status":
		args := lines(rest, 1)
		user, err := parseUser(args[0])
		if err != nil {
			return command{}, err
		}
		return command{kind: cmdUserStatus, user: user}, nil

	case "statistics":
		return command{kind: cmdStatistics}, nil
	}
	return command{}, &cmdError{"unknown_command", "unknown command " + strconv.Quote(clipString(name, 64))}
}

// lines returns the first n lines of s, "" for the missing ones, each
// without a trailing '\r'.
func lines(s string, n int) []string {
	out := make([]string, n)
	for i := 0; i < n && s != ""; i++ {
		var l string
		l, s, _ = strings.Cut(s, "\n")
		out[i] = strings.TrimSuffix(l, "\r")
	}
	return out
}

func parseUser(s string) (int64, *cmdError) {
	id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || !pipes.ValidUserID(id) {
		return 0, &cmdError{"invalid_user", "invalid user id " + strconv.Quote(clipString(s, 32))}
	}
	return id, nil
}

// runCommand executes a browser command on its session. Replies and errors
// reach the browser as frames through the session's sink.
func runCommand(ctx context.Context, s *pipes.Session, text string) {
	c, cerr := decodeCommand(text)
	if cerr != nil {
		s.SendError(cerr.code, cerr.text)
		return
	}
	var err error
	switch c.kind {
	case cmdSubscription:
		for _, e := range s.Subscribe(ctx, c.names) {
			s.ReportError(e)
		}
	case cmdWebPipe:
		err = s.WebPublish(ctx, c.pipe, c.event, c.data)
	case cmdPipeLog:
		err = s.PipeLog(ctx, c.pipe, c.marker, c.since)
	case cmdPipeCount:
		err = s.PipeCount(ctx, c.pipe, c.marker)
	case cmdTrackPipeUsers:
		err = s.TrackPipeUsers(ctx, c.pipe, c.marker)
	case cmdUserData:
		err = s.UserData(ctx, c.marker, c.user)
	case cmdUserStatus:
		err = s.UserStatus(ctx, c.user)
	case cmdStatistics:
	}
	if err != nil {
		s.ReportError(err)
	}
}
