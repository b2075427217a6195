package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reading a stream by message gets, with no consumer. A consumer, even a watch's ephemeral
// one, can be given any deliver subject, and JetStream delivers to it as the account
// itself: into another stream's subjects, or to another user's inbox. No service may
// therefore make one (docs/security.md); what a watch did is done with these reads, which
// the stream's leader answers, and with the subject a stream republishes to.

// MsgGet is a message get (JetStream's JSApiMsgGetRequest): message Seq, or with NextFor
// the first message at or after Seq (or written at or after StartTime) whose subject
// matches NextFor.
type MsgGet struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// StoredMsg is a message as its stream keeps it.
type StoredMsg struct {
	Subject string    `json:"subject"`
	Seq     uint64    `json:"seq"`
	Header  []byte    `json:"hdrs,omitempty"` // the headers as sent: "NATS/1.0\r\n…", or none
	Data    []byte    `json:"data"`
	Time    time.Time `json:"time"`
}

// HeaderValue returns the value of header key in the message's headers, or "".
func (m *StoredMsg) HeaderValue(key string) string {
	lines := bytes.Split(m.Header, []byte("\r\n"))
	for _, line := range lines[min(1, len(lines)):] { // the first is the version line
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(k)), key) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// ErrNoMessage is GetMsg's answer when the stream holds no such message.
var ErrNoMessage = errors.New("no such message in the stream")

// errUnavailable is a stream with no leader to answer (an election).
var errUnavailable = errors.New("the stream's leader is not available")

// JetStream's error code for a message get that found no message.
const errCodeNoMessageFound jetstream.ErrorCode = 10037

// GetMsgTimeout bounds one message get.
const GetMsgTimeout = 5 * time.Second

// GetMsg sends one message get to stream's leader, and tries it again, three times in all,
// after a timeout or while the stream has no leader (an election during a rolling restart).
func GetMsg(ctx context.Context, nc *nats.Conn, stream string, req MsgGet) (*StoredMsg, error) {
	var err error
	for attempt := range 3 {
		var m *StoredMsg
		if m, err = getMsg(ctx, nc, stream, req); err == nil || errors.Is(err, ErrNoMessage) || ctx.Err() != nil ||
			!(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, errUnavailable)) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 250 * time.Millisecond):
		}
	}
	return nil, err
}

func getMsg(ctx context.Context, nc *nats.Conn, stream string, req MsgGet) (*StoredMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, GetMsgTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, fmt.Errorf("message get from %s: %w", stream, err)
	}
	var res struct {
		Message *StoredMsg `json:"message"`
		Error   *struct {
			Code        int                 `json:"code"`
			ErrCode     jetstream.ErrorCode `json:"err_code"`
			Description string              `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return nil, fmt.Errorf("message get from %s: decode the answer: %w", stream, err)
	}
	switch {
	case res.Error != nil && res.Error.ErrCode == errCodeNoMessageFound:
		return nil, ErrNoMessage
	case res.Error != nil && res.Error.Code == 503:
		return nil, fmt.Errorf("message get from %s: %w: %s", stream, errUnavailable, res.Error.Description)
	case res.Error != nil:
		return nil, fmt.Errorf("message get from %s: %s", stream, res.Error.Description)
	case res.Message == nil:
		return nil, fmt.Errorf("message get from %s: an empty answer", stream)
	}
	return res.Message, nil
}

// ReadWindow is how many message gets ReadRange has in flight.
const ReadWindow = 64

// ReadRange calls fn, in order of sequence, with each message stream holds from sequence
// from to last (both included), asking for ReadWindow of them at once. A sequence with no
// message (deleted, aged out, replaced under a key) is skipped. It stops at fn's first error.
func ReadRange(ctx context.Context, nc *nats.Conn, stream string, from, last uint64, fn func(*StoredMsg) error) error {
	from = max(from, 1)
	for next := from; next <= last; next += ReadWindow {
		n := min(ReadWindow, last-next+1)
		msgs := make([]*StoredMsg, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for k := range n {
			wg.Go(func() { msgs[k], errs[k] = GetMsg(ctx, nc, stream, MsgGet{Seq: next + k}) })
		}
		wg.Wait()
		for k := range n {
			switch {
			case errors.Is(errs[k], ErrNoMessage):
				continue
			case errs[k] != nil:
				return errs[k]
			}
			if err := fn(msgs[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReadSubject calls fn, in order, with each message of stream whose subject matches subject
// (wildcards allowed), from sequence from to the stream's end as it stands: one message get
// each, for a sparse subject (a key's revisions, an object's chunks). It stops at fn's first
// error; it returns the sequence after the last message read (from when none was).
func ReadSubject(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64, fn func(*StoredMsg) error) (uint64, error) {
	next := max(from, 1)
	for {
		m, err := GetMsg(ctx, nc, stream, MsgGet{Seq: next, NextFor: subject})
		if errors.Is(err, ErrNoMessage) {
			return next, nil
		}
		if err != nil {
			return next, err
		}
		next = m.Seq + 1
		if err := fn(m); err != nil {
			return next, err
		}
	}
}
