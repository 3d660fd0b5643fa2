package pipes

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/time/rate"
)

// senderPrefix starts a message that CppComet's client reads as
// "A::<user_id>;<text>", taking the sender's id from it when the frame's
// user_id is 0. Browsers may not send such messages, or an anonymous sender
// could pose as any user.
const senderPrefix = "A::"

// The browser commands of SPEC 3.4. Each method answers the browser with its
// reply frame itself; an error return means nothing was done and the
// transport should report it with ReportError.

// WebPublish publishes a browser message (web_pipe2) to a web_* pipe, or a
// webauth_* pipe when the session is authorized. A leading '@' publishes
// anonymously. The message reaches every subscriber but the sender, with the
// sender's authorized user id, and the sender gets the delivery report on
// _answer_to_<pipe>.
func (s *Session) WebPublish(ctx context.Context, pipe, event, data string) error {
	h := s.hub
	user := s.user.Load()
	sender := user
	if strings.HasPrefix(pipe, "@") {
		pipe = pipe[1:]
		sender = 0
	}
	if err := CanWebPublish(pipe, user != 0); err != nil {
		return err
	}
	if !ValidEventName(event) {
		return fmt.Errorf("%w: %q", ErrInvalidEvent, clip(event))
	}
	if err := ValidateMessage(data, h.cfg.MaxMessageBytes); err != nil {
		return err
	}
	if strings.HasPrefix(data, senderPrefix) {
		return fmt.Errorf("%w: a browser message may not start with %q: CppComet's client reads it as the sender's user id", ErrInvalidMessage, senderPrefix)
	}
	if !s.allow() {
		h.limited.Add(1)
		return fmt.Errorf("%w: at most %g messages per second to web pipes", ErrRateLimited, h.cfg.WebPublishRate)
	}
	m := &Message{Kind: KindPipe, DevID: s.info.DevID, Pipe: pipe, Event: event, Data: data, UserID: sender, Exclude: s.key}
	n, err := h.publish(ctx, m)
	if err != nil {
		return err
	}
	h.webPublished.Add(1)
	s.send(answerFrame(pipe, data, n, h.now()))
	return nil
}

func (s *Session) allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limiter == nil {
		s.limiter = rate.NewLimiter(rate.Limit(s.hub.cfg.WebPublishRate), s.hub.cfg.WebPublishBurst)
	}
	return s.limiter.Allow()
}

// PipeLog replays a pipe's stored history to this session only, oldest
// first, as history frames; since > 0 replays only messages with a greater
// sequence number.
func (s *Session) PipeLog(ctx context.Context, pipe, marker string, since int64) error {
	if err := CanSubscribe(pipe, s.user.Load() != 0); err != nil {
		return err
	}
	if marker != "" && !ValidMarker(marker) {
		return fmt.Errorf("%w: %q", ErrInvalidMarker, clip(marker))
	}
	msgs, err := s.hub.eng.History(ctx, s.info.DevID, pipe, since)
	if err != nil {
		return fmt.Errorf("history of %q: %w", pipe, err)
	}
	frames := make([][]byte, len(msgs))
	for i := range msgs {
		frames[i] = historyFrame(&msgs[i])
	}
	s.sendPaced(frames, nil, nil)
	return nil
}

// PipeCount answers the number of connections subscribed to a web_* or
// track_* pipe, cluster-wide.
func (s *Session) PipeCount(ctx context.Context, pipe, marker string) error {
	if err := CanCount(pipe); err != nil {
		return err
	}
	if !ValidMarker(marker) {
		return fmt.Errorf("%w: %q", ErrInvalidMarker, clip(marker))
	}
	n, err := s.hub.eng.MemberCount(ctx, s.info.DevID, pipe)
	if err != nil {
		return fmt.Errorf("count of %q: %w", pipe, err)
	}
	s.send(pipeCountFrame(n, marker, s.hub.now()))
	return nil
}

// TrackPipeUsers answers the members of a track_* pipe, cluster-wide.
func (s *Session) TrackPipeUsers(ctx context.Context, pipe, marker string) error {
	if !ValidPipeName(pipe) {
		return fmt.Errorf("%w: %q", ErrInvalidPipe, clip(pipe))
	}
	if !IsTrackPipe(pipe) {
		return fmt.Errorf("%w: only track_* pipes list their users, not %q", ErrForbidden, pipe)
	}
	if !ValidMarker(marker) {
		return fmt.Errorf("%w: %q", ErrInvalidMarker, clip(marker))
	}
	members, err := s.hub.eng.Members(ctx, s.info.DevID, pipe)
	if err != nil {
		return fmt.Errorf("members of %q: %w", pipe, err)
	}
	s.send(trackUsersFrame(members, marker, s.hub.now()))
	return nil
}

// UserData answers a user's users_data row (empty when none).
func (s *Session) UserData(ctx context.Context, marker string, user int64) error {
	if !ValidMarker(marker) {
		return fmt.Errorf("%w: %q", ErrInvalidMarker, clip(marker))
	}
	if !ValidUserID(user) {
		return fmt.Errorf("%w: %d", ErrInvalidUser, user)
	}
	data := ""
	if s.hub.users != nil {
		d, err := s.hub.users.UserData(ctx, s.info.DevID, user)
		if err != nil {
			return fmt.Errorf("data of user %d: %w", user, err)
		}
		data = d
	}
	s.send(userDataFrame(user, data, marker, s.hub.now()))
	return nil
}

// UserStatus answers whether a user is online and when they were last seen.
func (s *Session) UserStatus(ctx context.Context, user int64) error {
	if !ValidUserID(user) {
		return fmt.Errorf("%w: %d", ErrInvalidUser, user)
	}
	rows, err := s.hub.eng.UsersTime(ctx, s.info.DevID, []int64{user})
	if err != nil {
		return fmt.Errorf("status of user %d: %w", user, err)
	}
	t := int64(-1)
	if len(rows) > 0 {
		t = rows[0].Time
	}
	s.send(userStatusFrame(user, t == 0, t, s.hub.now()))
	return nil
}

// ReportError sends a sys error frame describing err to the browser.
func (s *Session) ReportError(err error) {
	s.SendError(ErrorCode(err), ErrorText(err))
}

// SendError sends a sys error frame with an explicit code, counted in
// Stats.Errors. Codes are the server's own constants.
func (s *Session) SendError(code, text string) {
	s.hub.countError(code)
	s.send(ErrorFrame(code, text, s.hub.now()))
}

// ErrorCode names the class of a hub error for sys error frames.
func ErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrInvalidPipe):
		return "invalid_pipe"
	case errors.Is(err, ErrInvalidEvent):
		return "invalid_event"
	case errors.Is(err, ErrInvalidUser):
		return "invalid_user"
	case errors.Is(err, ErrInvalidMessage):
		return "invalid_message"
	case errors.Is(err, ErrMessageTooLarge):
		return "message_too_large"
	case errors.Is(err, ErrInvalidMarker):
		return "invalid_marker"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrTooManySubs):
		return "too_many_subscriptions"
	case errors.Is(err, ErrTooManyDevices):
		return "too_many_devices"
	case errors.Is(err, ErrClosed):
		return "shutting_down"
	}
	return "internal"
}

// ErrorText is err's message without the package prefix, for browsers.
func ErrorText(err error) string {
	return strings.ReplaceAll(err.Error(), "pipes: ", "")
}
