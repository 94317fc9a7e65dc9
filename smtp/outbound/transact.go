package outbound

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/queue"
)

// transact runs MAIL, RCPT and DATA on a connected client. Its error
// return means the host did not take the message (try the next), and
// nothing was delivered; res is the outcome once the peer has answered
// the recipients. reuse says the session ended cleanly, ready for the
// next MAIL (RFC 5321 §3.3).
func (t *Transport) transact(c *client, h host, msg *queue.Message) (res error, err error, reuse bool) {
	// What the message needs of the peer, checked before MAIL so that the
	// failure names the cause (RFC 6152, RFC 6531, RFC 1870).
	needUTF8 := !isASCII(msg.From)
	for _, to := range msg.To {
		needUTF8 = needUTF8 || !isASCII(to)
	}
	hasUTF8, _ := c.Extension("SMTPUTF8")
	has8bit, _ := c.Extension("8BITMIME")
	switch {
	case needUTF8 && !hasUTF8:
		return nil, &queue.Error{Perm: true, Status: "5.6.7", RemoteMTA: h.name,
			Diag: "X-Mailroom; the address needs SMTPUTF8 (RFC 6531), which " + h.name + " does not offer",
			Err:  fmt.Errorf("%s does not offer SMTPUTF8, which the non-ASCII address needs", h.name)}, false
	case msg.EightBit && !has8bit:
		return nil, &queue.Error{Perm: true, Status: "5.6.3", RemoteMTA: h.name,
			Diag: "X-Mailroom; the message has 8-bit data and " + h.name + " does not offer 8BITMIME (RFC 6152)",
			Err:  fmt.Errorf("%s does not offer 8BITMIME, which the 8-bit message needs", h.name)}, false
	}
	if max, ok := c.MaxMessageSize(); ok && max > 0 && msg.Size > int64(max) {
		return nil, &queue.Error{Perm: true, Status: "5.3.4", RemoteMTA: h.name,
			Diag: fmt.Sprintf("X-Mailroom; message of %d octets exceeds the limit of %d that %s announces", msg.Size, max, h.name),
			Err:  fmt.Errorf("message of %d bytes is larger than %s accepts (SIZE %d)", msg.Size, h.name, max)}, false
	}
	opts := &gosmtp.MailOptions{Size: msg.Size, UTF8: hasUTF8 && (needUTF8 || msg.UTF8Header)}
	if err := c.Mail(msg.From, opts); err != nil {
		// 5xx: the sender is refused, permanent for every recipient; 4xx:
		// the next host may do better.
		return nil, replyError(h.name, "MAIL FROM", err), false
	}
	results := make(queue.RcptErrors, len(msg.To))
	accepted := 0
	for i, to := range msg.To {
		err := c.Rcpt(to, nil)
		if err == nil {
			accepted++
			continue
		}
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) {
			// The connection broke: nothing is delivered here.
			return nil, t.connErr(h, "RCPT TO", err), false
		}
		results[i] = replyError(h.name, "RCPT TO:<"+to+">", err)
	}
	if accepted == 0 {
		return results, nil, c.Reset() == nil
	}
	w, err := c.Data()
	if err != nil {
		fillAccepted(results, replyError(h.name, "DATA", err))
		return results, nil, false
	}
	if _, err := io.Copy(w, io.NewSectionReader(msg.Body, 0, msg.Size)); err != nil {
		// Without the final dot the peer discards the message
		// (RFC 5321 §4.1.1.4), so every accepted recipient is simply retried.
		fillAccepted(results, t.connErr(h, "DATA (sending the message)", err))
		return results, nil, false
	}
	if _, err := w.CloseWithResponse(); err != nil {
		var se *gosmtp.SMTPError
		fillAccepted(results, replyError(h.name, "end of DATA", err))
		return results, nil, errors.As(err, &se)
	}
	for _, r := range results {
		if r != nil {
			return results, nil, true
		}
	}
	return nil, nil, true
}

// fillAccepted gives err to every recipient that had been accepted.
func fillAccepted(results queue.RcptErrors, err error) {
	for i, r := range results {
		if r == nil {
			results[i] = err
		}
	}
}

// replyError turns a failed command into a queue.Error: a 5xx reply is
// permanent, a 4xx or a broken connection temporary, and the reply goes
// into the DSN's Diagnostic-Code (RFC 3464 §2.3.6) and Status.
func replyError(host, stage string, err error) *queue.Error {
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		return &queue.Error{Status: "4.4.2", RemoteMTA: host,
			Diag: fmt.Sprintf("X-Mailroom; connection with %s broke after %s: %v", host, stage, err),
			Err:  fmt.Errorf("%s: %s: %w", host, stage, err)}
	}
	perm := se.Code >= 500
	status := ""
	if se.EnhancedCode != gosmtp.NoEnhancedCode && se.EnhancedCode != (gosmtp.EnhancedCode{}) &&
		(se.EnhancedCode[0] == 4 || se.EnhancedCode[0] == 5) {
		status = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	// The class must agree with the reply code (RFC 3463 §3.1).
	if status == "" || (status[0] == '5') != perm {
		status = map[bool]string{true: "5.0.0", false: "4.0.0"}[perm]
	}
	text := strings.ReplaceAll(se.Message, "\n", " ")
	reply := strconv.Itoa(se.Code) + " "
	if se.EnhancedCode != gosmtp.NoEnhancedCode && se.EnhancedCode != (gosmtp.EnhancedCode{}) {
		reply += fmt.Sprintf("%d.%d.%d ", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	reply += text
	return &queue.Error{Perm: perm, Status: status, RemoteMTA: host, Diag: "smtp; " + reply,
		Err: fmt.Errorf("%s said after %s: %s", host, stage, reply)}
}

// connErr classifies a failure to talk to a host at all: always
// temporary (4.4.1 no answer, 4.4.2 bad connection), so the next host or
// attempt may do better.
func (t *Transport) connErr(h host, stage string, err error) error {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		qe := replyError(h.name, stage, err)
		// A refusal at greeting or EHLO is this host's; other MX hosts
		// may still take the message.
		qe.Perm = false
		if qe.Status[0] == '5' {
			qe.Status = "4" + qe.Status[1:]
		}
		return qe
	}
	status := "4.4.2"
	var ne net.Error
	if stage == "connect" || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
		status = "4.4.1"
	}
	return &queue.Error{Status: status, RemoteMTA: h.name,
		Diag: fmt.Sprintf("X-Mailroom; %s failed with %s: %v", stage, h.name, err),
		Err:  fmt.Errorf("%s: %s: %w", h.name, stage, err)}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
