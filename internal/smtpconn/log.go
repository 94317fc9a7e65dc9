package smtpconn

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	gosmtp "github.com/emersion/go-smtp"
)

// Rejected logs, once, a command that err refuses for good (a MAIL or
// RCPT answered 5xx: unknown user, too big, not allowed), with its reply,
// and returns err. Temporary refusals are logged by Answer, with the
// reference the reply repeats.
func Rejected(log *slog.Logger, err error) error {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) && se.Code/100 == 5 {
		log.Info("rejected", "event", "rejected", "reply", replyText(se))
	}
	return err
}

// replyText is a reply as the client sees it: "550 5.1.1 No such user here".
func replyText(se *gosmtp.SMTPError) string {
	if se.EnhancedCode == (gosmtp.EnhancedCode{}) || se.EnhancedCode == gosmtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s", se.Code, se.Message)
	}
	c := se.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, c[0], c[1], c[2], se.Message)
}

// Counter counts what a session reads of a message, for the "received"
// record of its size as it came over the wire.
type Counter struct {
	R io.Reader
	N int64
}

func (c *Counter) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

// Received logs the one record of a message a session accepted, like
// Postfix's first line for a queue id: queue_id ties it to its delivery
// records (mda's delivered/deferred, the queue's sent/bounced), and the
// session's logger carries the connection (conn, remote, helo, user).
func Received(log *slog.Logger, queueID, from string, rcpts int, size int64) {
	log.Info("received", "event", "received", "queue_id", queueID, "from", from, "rcpts", rcpts, "size", size)
}
