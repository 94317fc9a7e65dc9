package imap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"mime"
	"strings"
)

// APPEND with a literal8 (RFC 3516 §4.4) may bring parts in the binary
// transfer encoding: any octet, NUL included, and lines of any length or
// none. Such a part cannot be stored in a Maildir that keeps LF line ends
// (its CR and LF octets would change) nor served in a BODY[] literal (no
// NUL, RFC 9051 §4.3). So it is stored in base64, which RFC 3516 lets a
// server do: BINARY[] still gives the client its octets, BODY[] a 7-bit
// part. Other parts are left byte for byte as they came.

// maxMIMEDepth bounds how deeply multiparts are followed.
const maxMIMEDepth = 20

// unbinary returns msg (CRLF line ends) with each part that is in the
// binary encoding, or has NUL octets in an encoding that does not allow
// them, re-encoded in base64.
func unbinary(msg []byte) []byte { return unbinaryPart(msg, 0) }

func unbinaryPart(msg []byte, depth int) []byte {
	raw, err := splitHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		return msg
	}
	body := msg[len(raw):]
	fields := parseFields(raw)
	value := func(key string) string {
		for _, f := range fields {
			if strings.EqualFold(f.key, key) {
				return rawValue(f)
			}
		}
		return ""
	}
	mt, params, _ := mime.ParseMediaType(value("Content-Type"))
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < maxMIMEDepth {
		return append(raw[:len(raw):len(raw)], unbinaryMultipart(body, params["boundary"], depth)...)
	}
	cte := strings.ToLower(value("Content-Transfer-Encoding"))
	if cte != "binary" && (cte == "base64" || cte == "quoted-printable" || bytes.IndexByte(body, 0) < 0) {
		return msg
	}
	var out bytes.Buffer
	for _, f := range fields {
		if !strings.EqualFold(f.key, "Content-Transfer-Encoding") {
			out.Write(f.raw)
		}
	}
	out.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(body)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
	if depth == 0 {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// unbinaryMultipart rewrites the parts of a multipart body, keeping its
// preamble, delimiter lines and epilogue. The line end before a
// delimiter belongs to the delimiter (RFC 2046 §5.1.1), so a part is
// what lies between them without it.
func unbinaryMultipart(body []byte, boundary string, depth int) []byte {
	var out bytes.Buffer
	delim, closing := "--"+boundary, "--"+boundary+"--"
	var part []byte // the current part's lines; nil before the first delimiter
	inPart, done := false, false
	flush := func() {
		end := 0 // the line end before the delimiter
		if bytes.HasSuffix(part, []byte("\r\n")) {
			end = 2
		} else if bytes.HasSuffix(part, []byte("\n")) {
			end = 1
		}
		out.Write(unbinaryPart(part[:len(part)-end], depth+1))
		out.Write(part[len(part)-end:])
		part = part[:0]
	}
	for len(body) > 0 {
		n := bytes.IndexByte(body, '\n') + 1
		if n == 0 {
			n = len(body)
		}
		line := body[:n]
		body = body[n:]
		if done {
			out.Write(line) // the epilogue
			continue
		}
		t := strings.TrimRight(string(line), " \t\r\n")
		if t == delim || t == closing {
			if inPart {
				flush()
			}
			out.Write(line)
			inPart, done = t == delim, t == closing
			continue
		}
		if inPart {
			part = append(part, line...)
		} else {
			out.Write(line) // the preamble
		}
	}
	if inPart { // no closing delimiter
		out.Write(unbinaryPart(part, depth+1))
	}
	return out.Bytes()
}
