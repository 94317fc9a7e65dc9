package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Message is one message read back from an mbox file by Split.
type Message struct {
	// Sender is the envelope sender from the "From " line
	// ("MAILER-DAEMON" for the null sender).
	Sender string
	// Date is the rest of the "From " line, as written (asctime format
	// when Append wrote it).
	Date string
	// Body is the message as it was given to Append, with LF line ends
	// and the mboxrd quoting undone.
	Body []byte
}

// Split reads a whole mboxrd file and returns its messages. It exists for
// tests and tools that check what Append wrote (the IMAP side of mbox
// needs an index and offsets, not this); it holds the whole file in
// memory. Every line starting with "From " begins a message, as mboxrd
// guarantees once all such lines in bodies are quoted; one '>' is removed
// from each line matching ^>+From , and the empty line that separates a
// message from the next is dropped. Content before the first "From " line
// is an error.
func Split(r io.Reader) ([]Message, error) {
	br := bufio.NewReader(r)
	var msgs []Message
	// end drops the separating empty line from the last message.
	end := func() {
		if n := len(msgs); n > 0 && bytes.HasSuffix(msgs[n-1].Body, []byte("\n")) {
			msgs[n-1].Body = msgs[n-1].Body[:len(msgs[n-1].Body)-1]
		}
	}
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			switch {
			case bytes.HasPrefix(line, []byte(fromPrefix)):
				end()
				rest := bytes.TrimSuffix(line[len(fromPrefix):], []byte("\n"))
				sender, date, _ := bytes.Cut(rest, []byte(" "))
				msgs = append(msgs, Message{Sender: string(sender), Date: string(date), Body: []byte{}})
			case len(msgs) == 0:
				return nil, fmt.Errorf("split mbox: line %d: content before the first \"From \" line", lineNo)
			default:
				if isQuotedFrom(line) {
					line = line[1:]
				}
				msgs[len(msgs)-1].Body = append(msgs[len(msgs)-1].Body, line...)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("split mbox: %w", err)
		}
	}
	end()
	return msgs, nil
}

// isQuotedFrom reports whether line matches ^>+From .
func isQuotedFrom(line []byte) bool {
	rest := bytes.TrimLeft(line, ">")
	return len(rest) < len(line) && bytes.HasPrefix(rest, []byte(fromPrefix))
}
