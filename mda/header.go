package mda

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"
)

// maxHops is the number of Received: headers beyond which a message is
// taken to be looping (RFC 5321 §6.3 suggests a limit of at least 100).
const maxHops = 100

// maxScan bounds how much of the header is read for loop detection; a
// header larger than this is scanned only that far.
const maxScan = 1 << 20

// headerReaders are scanHeader's buffered readers (4 KiB each), pooled:
// one per message was the largest allocation left on the delivery path.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// traceInfo is what the message's own header says about its path.
type traceInfo struct {
	received    int
	deliveredTo map[string]bool // lower-cased addresses of Delivered-To:
}

// scanHeader reads the header of a message with LF line endings (the
// spool's form) and counts its Received: fields and collects its
// Delivered-To: addresses.
func scanHeader(r io.Reader) traceInfo {
	ti := traceInfo{deliveredTo: map[string]bool{}}
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(io.LimitReader(r, maxScan))
	defer func() {
		br.Reset(nil)
		headerReaders.Put(br)
	}()
	var field []byte
	flush := func() {
		name, value, ok := bytes.Cut(field, []byte{':'})
		field = field[:0]
		if !ok {
			return
		}
		switch strings.ToLower(string(bytes.TrimSpace(name))) {
		case "received":
			ti.received++
		case "delivered-to":
			v := strings.TrimSpace(string(value))
			v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
			ti.deliveredTo[strings.ToLower(v)] = true
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: keep only its start, which holds the
			// field name, and skip the rest.
			if len(field) == 0 || (line[0] != ' ' && line[0] != '\t') {
				flush()
				field = append(field, line[:min(len(line), 1024)]...)
			}
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				break
			}
			continue
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(field) < 64<<10 {
				field = append(field, bytes.TrimRight(line, "\r\n")...)
			}
		} else {
			flush()
			field = append(field, bytes.TrimRight(line, "\r\n")...)
		}
		if err != nil {
			break
		}
	}
	flush()
	return ti
}
