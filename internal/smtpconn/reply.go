package smtpconn

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/conns"
	"mailroom/mda"
)

// Reply maps a delivery error to its SMTP/LMTP reply: the one table for
// both protocols. Permanent failures are the sender's fault (unknown user,
// bad address, too big); anything else is temporary, because a 5xx for our
// own trouble would make the sender give up on mail we could have taken
// later.
func Reply(err error) *gosmtp.SMTPError {
	var se *gosmtp.SMTPError
	var pe *mda.PermanentError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, mda.ErrLoop):
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 4, 6}, Message: "Mail forwarding loop detected"}
	case errors.As(err, &pe):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: enhanced(pe.Status), Message: printable(pe.Text)}
	case errors.Is(err, mda.ErrNoSuchUser):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case errors.Is(err, mda.ErrNotLocal):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 2}, Message: "Domain not handled here"}
	case errors.Is(err, mda.ErrBadSender):
		return &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	case errors.Is(err, mda.ErrBadAddress):
		return &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 1, 3}, Message: "Bad address syntax"}
	case errors.Is(err, mda.ErrTooBig):
		return &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
	case errors.Is(err, gosmtp.ErrTooLongLine):
		// RFC 5321 §4.5.3.1.6 allows 1000 octets a line; we take 2000.
		// Retrying the same message cannot help, so this is permanent.
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Line too long"}
	case errors.Is(err, mda.ErrNoRcpt):
		return &gosmtp.SMTPError{Code: 503, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The client went silent in the middle of a message.
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 4, 2}, Message: "Idle timeout, closing connection"}
	case errors.Is(err, context.Canceled):
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
	default:
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	}
}

// Answer is Reply for a session on c: a temporary failure of ours is
// logged with a reference that the reply repeats, so that the
// administrator can find it; the error's own text never reaches the client
// (it may name files). A client that timed out is told so and the
// connection is closed after the reply. It returns nil for nil.
func Answer(log *slog.Logger, c *conns.Conn, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// conns has logged it.
		c.CloseAfterWrite()
		return Reply(err)
	}
	r := Reply(err)
	if r.Code/100 == 4 && r.EnhancedCode != (gosmtp.EnhancedCode{4, 5, 3}) {
		id := newErrID()
		log.Warn("temporary failure", "err", err, "err_id", id)
		r = &gosmtp.SMTPError{Code: r.Code, EnhancedCode: r.EnhancedCode, Message: fmt.Sprintf("%s (ref %s)", r.Message, id)}
	}
	return r
}

// newErrID returns a reference for a log record that a reply repeats:
// the time and random bits, unique enough to find the record and with
// no counter shared between servers.
func newErrID() string {
	return fmt.Sprintf("E%d-%s", time.Now().Unix(), rand.Text()[:6])
}

// enhanced parses an RFC 3463 code such as "5.3.0"; anything else is 5.0.0.
func enhanced(status string) gosmtp.EnhancedCode {
	var c gosmtp.EnhancedCode
	if n, err := fmt.Sscanf(status, "%d.%d.%d", &c[0], &c[1], &c[2]); err != nil || n != 3 || c[0] != 5 {
		return gosmtp.EnhancedCode{5, 0, 0}
	}
	return c
}

// printable makes text safe for one reply line: printable ASCII only, at
// most 200 characters.
func printable(s string) string {
	b := []byte(s)
	out := b[:0]
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
		if len(out) == 200 {
			break
		}
	}
	if len(out) == 0 {
		return "Delivery failed"
	}
	return string(out)
}
