package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"mime"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// The words the script searches for. SubjectWord is in about 1 subject in
// 100, BodyWord in about 1 text body in 200; neither occurs anywhere else.
const (
	SubjectWord = "quarterly"
	BodyWord    = "zanzibar"
)

// genStart and genSpan place the messages' dates: two years from 2024-01-01,
// in delivery order.
var (
	genStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	genSpan  = 2 * 365 * 24 * time.Hour
)

var (
	firstNames = []string{"Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
		"Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Zoë", "José", "Ingrid"}
	lastNames = []string{"Smith", "Jones", "Müller", "Dupont", "Rossi", "García", "Nowak", "Svensson", "Okafor",
		"Tanaka", "Kowalski", "Novák", "Ivanova", "O'Brien", "Haddad", "Singh", "Lefèvre", "Schmidt"}
	domains = []string{"example.com", "mail.example.net", "lists.example.org", "corp.example", "university.example.edu",
		"shop.example", "newsletter.example.com", "bank.example", "github.example", "post.example.de"}
	// words is the vocabulary of subjects and bodies; it holds neither
	// SubjectWord nor BodyWord.
	words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or his from at
which but have an they you were her she there been one all we their has would when if so no will can more
other what up out time about into only new some could these two may first then do any like my now over such
our man me even most made after also did many before must through back years where much your way well down
should because each just those people how too little state good very make world still own see men work long
get here between both life being under never day same another know while last might us great old year off come
since against go came right used take three meeting report budget invoice project release review draft notes
schedule update agenda proposal contract payment order shipping delivery account password reset welcome
newsletter digest summary weekly monthly annual travel flight hotel booking reservation ticket support issue
bug patch merge build deploy server database backup storage network security certificate renewal expiry
conference workshop seminar lecture course exam grade thesis paper journal article library museum garden
kitchen recipe dinner lunch breakfast coffee weekend holiday birthday party wedding family friends photos`)
	// accented words go into encoded-word subjects.
	accented = []string{"Grüße", "café", "réunion", "Überblick", "año", "naïve", "crème", "São", "Zürich", "Ångström"}
)

// genOptions are gen's flags.
type genOptions struct {
	dir  string
	n    int
	seed uint64
	host string
}

func runGen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	var o genOptions
	fs.StringVar(&o.dir, "dir", "", "Maildir to create (its cur/, new/ and tmp/)")
	fs.IntVar(&o.n, "n", 10000, "messages")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed: the same seed and n give the same Maildir")
	fs.StringVar(&o.host, "host", "bench.test", "host part of the file names")
	fs.Parse(args)
	if o.dir == "" || o.n < 1 {
		return errors.New("gen: need -dir and -n >= 1")
	}
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(o.dir, d), 0o700); err != nil {
			return fmt.Errorf("gen: %w", err)
		}
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		firstErr  error
		total     int64
		subjHits  int
		bodyHits  int
		multipart int
	)
	next := make(chan int, 256)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			var b bytes.Buffer
			for i := range next {
				m := genMessage(&b, o.seed, i, o.n)
				err := writeMessage(o, i, m, b.Bytes())
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				total += int64(b.Len())
				if m.subjectHit {
					subjHits++
				}
				if m.bodyHit {
					bodyHits++
				}
				if m.multipart {
					multipart++
				}
				mu.Unlock()
			}
		})
	}
	for i := range o.n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("RESULT n=%d bytes=%d subject_hits=%d body_hits=%d multipart=%d\n", o.n, total, subjHits, bodyHits, multipart)
	return nil
}

// genInfo says what one generated message holds.
type genInfo struct {
	date                           time.Time
	flags                          string
	subjectHit, bodyHit, multipart bool
}

// genMessage writes message i of n into b (LF line endings, as Maildir
// files are kept), from a random source of its own so that workers may
// generate in any order.
func genMessage(b *bytes.Buffer, seed uint64, i, n int) genInfo {
	b.Reset()
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	var m genInfo
	m.date = genStart.Add(time.Duration(float64(genSpan) * (float64(i) + r.Float64()) / float64(n))).Truncate(time.Second)
	switch x := r.IntN(100); {
	case x < 60:
		m.flags = "S"
	case x < 65:
		m.flags = "FS"
	case x < 70:
		m.flags = "RS"
	}
	// Sizes are log-uniform between 1 and 50 KiB (median about 7 KiB).
	size := int(1024 * math.Exp(r.Float64()*math.Log(50)))
	first, last := pick(r, firstNames), pick(r, lastNames)
	fromAddr := strings.ToLower(strings.Map(asciiOnly, first)+"."+strings.Map(asciiOnly, last)) + "@" + pick(r, domains)

	subj := sentence(r, 3+r.IntN(6))
	if r.IntN(100) == 0 {
		subj += " " + SubjectWord
		m.subjectHit = true
	}
	if r.IntN(20) == 0 {
		subj = mime.QEncoding.Encode("utf-8", subj+" "+pick(r, accented))
	} else if r.IntN(10) == 0 {
		subj = "Re: " + subj
	}
	tz := time.FixedZone("", (r.IntN(25)-12)*3600)

	fmt.Fprintf(b, "Return-Path: <%s>\n", fromAddr)
	fmt.Fprintf(b, "Delivered-To: alice@example.org\n")
	fmt.Fprintf(b, "Received: from mx%d.%s (mx%d.%s [192.0.2.%d])\n\tby mail.example.org (mailroom) with ESMTPS id %016x\n\tfor <alice@example.org>; %s\n",
		r.IntN(9), pick(r, domains), r.IntN(9), pick(r, domains), 1+r.IntN(250), r.Uint64(), m.date.Format(time.RFC1123Z))
	fmt.Fprintf(b, "Date: %s\n", m.date.In(tz).Format(time.RFC1123Z))
	fmt.Fprintf(b, "From: %s <%s>\n", mime.QEncoding.Encode("utf-8", first+" "+last), fromAddr)
	fmt.Fprintf(b, "To: Alice <alice@example.org>\n")
	if r.IntN(5) == 0 {
		fmt.Fprintf(b, "Cc: %s <%s@%s>, bob@example.org\n", pick(r, firstNames[:10]), strings.ToLower(pick(r, firstNames[:10])), pick(r, domains))
	}
	fmt.Fprintf(b, "Subject: %s\n", subj)
	fmt.Fprintf(b, "Message-ID: <%d.%016x@%s>\n", i, r.Uint64(), pick(r, domains))
	if r.IntN(3) == 0 {
		fmt.Fprintf(b, "In-Reply-To: <%d.%016x@%s>\n", r.IntN(i+1), r.Uint64(), pick(r, domains))
	}
	b.WriteString("MIME-Version: 1.0\n")

	hit := r.IntN(200) == 0
	m.bodyHit = hit
	switch x := r.IntN(10); {
	case x < 7:
		b.WriteString("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")
		text(b, r, size-b.Len(), hit)
	case x < 9:
		m.multipart = true
		bd := fmt.Sprintf("=_alt_%016x", r.Uint64())
		fmt.Fprintf(b, "Content-Type: multipart/alternative; boundary=\"%s\"\n\nThis is a multi-part message in MIME format.\n\n", bd)
		half := (size - b.Len()) / 2
		fmt.Fprintf(b, "--%s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n", bd)
		text(b, r, half, hit)
		fmt.Fprintf(b, "\n--%s\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n<html><body>\n", bd)
		text(b, r, size-b.Len()-40, false)
		fmt.Fprintf(b, "</body></html>\n\n--%s--\n", bd)
	default:
		m.multipart = true
		bd := fmt.Sprintf("=_mixed_%016x", r.Uint64())
		fmt.Fprintf(b, "Content-Type: multipart/mixed; boundary=\"%s\"\n\nThis is a multi-part message in MIME format.\n\n", bd)
		fmt.Fprintf(b, "--%s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n", bd)
		text(b, r, 300+r.IntN(1500), hit)
		fmt.Fprintf(b, "\n--%s\nContent-Type: application/pdf; name=\"%s.pdf\"\nContent-Disposition: attachment; filename=\"%s.pdf\"\nContent-Transfer-Encoding: base64\n\n",
			bd, pick(r, words), pick(r, words))
		raw := make([]byte, max(64, (size-b.Len())*3/4))
		for j := range raw {
			raw[j] = byte(r.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteByte('\n')
			enc = enc[76:]
		}
		b.WriteString(enc)
		fmt.Fprintf(b, "\n\n--%s--\n", bd)
	}
	return m
}

// text writes about n bytes of lines of words (at least one line),
// with BodyWord in the middle if hit.
func text(b *bytes.Buffer, r *rand.Rand, n int, hit bool) {
	end := b.Len() + max(n, 60)
	mid := b.Len() + max(n, 60)/2
	line := 0
	for b.Len() < end {
		w := pick(r, words)
		if hit && b.Len() >= mid {
			w, hit = BodyWord, false
		}
		if line > 0 && line+1+len(w) > 72 {
			b.WriteByte('\n')
			line = 0
		} else if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteByte('\n')
}

func sentence(r *rand.Rand, n int) string {
	ws := make([]string, n)
	for j := range ws {
		ws[j] = pick(r, words)
	}
	ws[0] = strings.ToUpper(ws[0][:1]) + ws[0][1:]
	return strings.Join(ws, " ")
}

func pick(r *rand.Rand, l []string) string { return l[r.IntN(len(l))] }

func asciiOnly(c rune) rune {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return c
	case c == 'ü':
		return 'u'
	case c == 'ë', c == 'é', c == 'è':
		return 'e'
	case c == 'í':
		return 'i'
	case c == 'á':
		return 'a'
	}
	return -1
}

// writeMessage writes data as cur/ file of message i, named as Dovecot and
// mailroom name theirs (S= file size, W= size with CRLF line endings), with
// its date as mtime (both servers take the internal date from it).
func writeMessage(o genOptions, i int, m genInfo, data []byte) error {
	lf := bytes.Count(data, []byte{'\n'})
	name := fmt.Sprintf("%d.M%06dP4242Q%d.%s,S=%d,W=%d:2,%s", m.date.Unix(), i%1000000, i, o.host, len(data), len(data)+lf, m.flags)
	p := filepath.Join(o.dir, "cur", name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	if err := os.Chtimes(p, m.date, m.date); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	return nil
}
