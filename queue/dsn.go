package queue

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

type boltTx = bolt.Tx

// maxDSNHeader bounds how much of the original header a DSN returns.
const maxDSNHeader = 64 << 10

// notify tells rec's sender about the recipients at idx: that they failed
// (a bounce) or, with delayed, that they are still being retried. The DSN
// is queued, to a local sender through DeliverLocal, in the same bbolt
// transaction that marks the recipients notified, so the sender hears once
// even across a crash. There is no DSN for the null sender
// (RFC 5321 §4.5.5, RFC 3464 §2): bounces of bounces would loop.
func (q *Queue) notify(rec *record, body io.ReaderAt, idx []int, delayed bool) error {
	mark := func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		v := b.Get([]byte(rec.ID))
		if v == nil {
			return ErrNotFound
		}
		cur, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if delayed {
			cur.Warned = true
		} else {
			for _, i := range idx {
				if cur.Rcpts[i].State == StateFailed {
					cur.Rcpts[i].State = StateNotified
				}
			}
		}
		if cur.done() {
			// Nothing is left to do for it: a record kept now would
			// never be scheduled again. The body goes after the commit
			// (or, after a crash, as an orphan when the queue opens).
			return b.Delete([]byte(rec.ID))
		}
		return b.Put([]byte(rec.ID), cur.encode())
	}
	if rec.From == "" {
		if !delayed {
			q.log.Debug("no DSN: the sender is the null sender", "queue_id", rec.ID)
		}
		return q.commit.do(mark)
	}
	now := time.Now()
	var hdr strings.Builder
	readHeader(&hdr, io.NewSectionReader(body, 0, rec.Size))
	dsnID, err := q.store("", []string{rec.From}, func(w io.Writer) (*bodyWriter, error) {
		bw := newBodyWriter(w)
		if err := q.writeDSN(bw, rec, idx, delayed, hdr.String(), now); err != nil {
			return bw, err
		}
		return bw, bw.finish()
	}, mark)
	if err != nil {
		return err
	}
	kind := "bounce"
	if delayed {
		kind = "delay warning"
	}
	q.log.Info("queued", "event", "queued", "queue_id", dsnID, "from", "", "rcpts", []string{rec.From},
		"dsn", kind, "for_queue_id", rec.ID)
	return nil
}

// readHeader copies the header of the message (up to its empty line, at
// most maxDSNHeader octets, whole lines only).
func readHeader(w *strings.Builder, r io.Reader) {
	br := bufio.NewReader(io.LimitReader(r, maxDSNHeader))
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" || line == "\n" {
			return
		}
		w.WriteString(line)
	}
}

// writeDSN writes a delivery status notification (RFC 3464) as a
// multipart/report (RFC 6522, formerly 3462): a human-readable part, the
// message/delivery-status part, and the original header
// (text/rfc822-headers).
func (q *Queue) writeDSN(w io.Writer, rec *record, idx []int, delayed bool, header string, now time.Time) error {
	host := q.opts.Hostname
	boundary := newID() + "/" + host
	subject, action, intro := "Undelivered Mail Returned to Sender", "failed",
		"Your message could not be delivered to one or more recipients.\r\nIt is attached below; the reasons follow.\r\n"
	if delayed {
		subject, action = "Delayed Mail (still being retried)", "delayed"
		intro = fmt.Sprintf("Your message could not be delivered yet to one or more recipients.\r\n"+
			"The mail system will keep trying until %s; you do not need to send it again.\r\n",
			rec.Created.Add(q.opts.MaxLifetime).UTC().Format(time.RFC1123Z))
	}
	// RFC 6533: with a UTF-8 address or header the report and the
	// returned header are of the "global" types.
	reportType, statusType, headersType := "delivery-status", "message/delivery-status", "text/rfc822-headers"
	global := !isASCIIString(header)
	for _, i := range idx {
		global = global || !isASCIIString(rec.Rcpts[i].Addr)
	}
	if global {
		reportType, statusType, headersType = "global-delivery-status", "message/global-delivery-status", "message/global-headers"
	}
	b := &strings.Builder{}
	fmt.Fprintf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host)
	fmt.Fprintf(b, "To: <%s>\r\n", rec.From)
	fmt.Fprintf(b, "Subject: %s\r\n", subject)
	fmt.Fprintf(b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(b, "Message-ID: <%s.dsn@%s>\r\n", newID(), host)
	// RFC 3834 §5: an automatic message, not to be answered automatically.
	b.WriteString("Auto-Submitted: auto-replied\r\n")
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(b, "Content-Type: multipart/report; report-type=%s;\r\n\tboundary=\"%s\"\r\n", reportType, boundary)
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n\r\n")

	fmt.Fprintf(b, "--%s\r\n", boundary)
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
	b.WriteString("Content-Description: Notification\r\n\r\n")
	fmt.Fprintf(b, "This is the mail system at host %s.\r\n\r\n%s\r\n", host, intro)
	for _, i := range idx {
		rc := rec.Rcpts[i]
		fmt.Fprintf(b, "<%s>: %s\r\n", rc.Addr, oneLine(orElse(rc.LastError, "no reason given")))
	}

	fmt.Fprintf(b, "\r\n--%s\r\n", boundary)
	fmt.Fprintf(b, "Content-Type: %s\r\nContent-Description: Delivery report\r\n\r\n", statusType)
	// RFC 3464 §2.2: per-message fields.
	fmt.Fprintf(b, "Reporting-MTA: dns; %s\r\n", host)
	fmt.Fprintf(b, "X-Mailroom-Queue-ID: %s\r\n", rec.ID)
	fmt.Fprintf(b, "Arrival-Date: %s\r\n", rec.Created.Format(time.RFC1123Z))
	// RFC 3464 §2.3: per-recipient fields, each group after an empty line.
	for _, i := range idx {
		rc := rec.Rcpts[i]
		b.WriteString("\r\n")
		fmt.Fprintf(b, "Final-Recipient: %s; %s\r\n", addrType(rc.Addr), rc.Addr)
		fmt.Fprintf(b, "Action: %s\r\n", action)
		status := rc.Status
		if status == "" {
			status = map[bool]string{true: "4.0.0", false: "5.0.0"}[delayed]
		}
		fmt.Fprintf(b, "Status: %s\r\n", status)
		if rc.RemoteMTA != "" {
			fmt.Fprintf(b, "Remote-MTA: dns; %s\r\n", rc.RemoteMTA)
		}
		diag := rc.Diag
		if diag == "" {
			diag = "X-Mailroom; " + oneLine(orElse(rc.LastError, "no reason given"))
		}
		fmt.Fprintf(b, "Diagnostic-Code: %s\r\n", foldDiag(oneLine(diag)))
		fmt.Fprintf(b, "Last-Attempt-Date: %s\r\n", now.Format(time.RFC1123Z))
		if delayed {
			fmt.Fprintf(b, "Will-Retry-Until: %s\r\n", rec.Created.Add(q.opts.MaxLifetime).Format(time.RFC1123Z))
		}
	}

	fmt.Fprintf(b, "\r\n--%s\r\n", boundary)
	fmt.Fprintf(b, "Content-Type: %s\r\nContent-Description: Undelivered message headers\r\n\r\n", headersType)
	b.WriteString(header)
	fmt.Fprintf(b, "\r\n--%s--\r\n", boundary)
	msg := b.String()
	if q.opts.Signer != nil {
		// Signed like a submitted message, when the postmaster's domain
		// has a key; a notice that cannot be signed still goes out.
		sig, err := q.opts.Signer.Sign(strings.NewReader(msg))
		if err != nil {
			q.log.Warn("DSN not signed", "queue_id", rec.ID, "err", err)
		}
		msg = sig + msg
	}
	_, err := io.WriteString(w, msg)
	return err
}

func isASCIIString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addrType is the RFC 3464 address type: utf-8 (RFC 6533) for an address
// with non-ASCII characters.
func addrType(addr string) string {
	if !isASCIIString(addr) {
		return "utf-8"
	}
	return "rfc822"
}

// oneLine makes s safe as a header field body: no line breaks, no
// control characters.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// foldDiag folds a long Diagnostic-Code at spaces (RFC 5322 §2.2.3), so no
// line exceeds 78 octets where a space allows.
func foldDiag(s string) string {
	const max = 78 - len("Diagnostic-Code: ")
	var b strings.Builder
	line := 0
	for i, word := range strings.Split(s, " ") {
		if i > 0 {
			if line+1+len(word) > max && line > 0 {
				b.WriteString("\r\n ")
				line = 1
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}

func orElse(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("queue: encode: %v", err))
	}
	return b
}
