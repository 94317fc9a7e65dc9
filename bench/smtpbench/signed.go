package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"mailroom/mailauth/dkim"
)

// runSigned writes the message the MX's checks are loaded with in
// bench/smtp.sh AUTH=1 (smtpbench send -message): From: the -from
// address, a body of -l octets, signed with a new RSA 2048 and a new
// Ed25519 key of the address's domain (selectors r and e, relaxed/relaxed,
// as mailroom and most senders sign), and appends the two keys' TXT
// records to -zone, which smtpbench dns then serves. Every message of a
// run is this one, byte for byte (the signatures cover its Date and
// Message-ID), so that the checker verifies two signatures per message,
// as BenchmarkCheck4K does, while the load generator signs nothing.
func runSigned(args []string) error {
	fs := flag.NewFlagSet("signed", flag.ExitOnError)
	from := fs.String("from", "bench@sender.example", "From: address; its domain signs")
	to := fs.String("t", "user@example.org", "To: address")
	size := fs.Int("l", 4096, "body size in octets")
	out := fs.String("out", "", "file to write the signed message to")
	zone := fs.String("zone", "", "zone file to append the keys' TXT records to")
	fs.Parse(args)
	_, domain, ok := strings.Cut(*from, "@")
	if !ok || *out == "" || *zone == "" {
		return errors.New("signed: -from must be an address; -out and -zone are required")
	}
	var keys []dkim.Key
	var records strings.Builder
	for _, k := range []struct{ algo, sel string }{{dkim.RSA, "r"}, {dkim.Ed25519, "e"}} {
		key, err := dkim.Generate(k.algo)
		if err != nil {
			return fmt.Errorf("signed: %w", err)
		}
		rec, err := dkim.RecordFor(key.Public())
		if err != nil {
			return fmt.Errorf("signed: %w", err)
		}
		keys = append(keys, dkim.Key{Domain: domain, Selector: k.sel, Signer: key})
		fmt.Fprintf(&records, "%s. 60 IN TXT %q\n", dkim.RecordName(k.sel, domain), rec)
	}
	s, err := dkim.NewSigner(keys)
	if err != nil {
		return fmt.Errorf("signed: %w", err)
	}
	body := strings.Repeat(strings.Repeat("x", 70)+"\r\n", *size/72+1)[:*size]
	msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: bench\r\nDate: Thu, 3 Dec 2026 12:00:00 +0000\r\n"+
		"Message-ID: <signed.%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%s",
		*from, *to, *from, body)
	sig, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		return fmt.Errorf("signed: %w", err)
	}
	if err := os.WriteFile(*out, []byte(sig+msg), 0o644); err != nil {
		return fmt.Errorf("signed: %w", err)
	}
	f, err := os.OpenFile(*zone, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("signed: %w", err)
	}
	if _, err := f.WriteString(records.String()); err != nil {
		f.Close()
		return fmt.Errorf("signed: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("signed: %w", err)
	}
	fmt.Printf("RESULT out=%s octets=%d\n", *out, len(sig)+len(msg))
	return nil
}
