package mailauth

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"blitiri.com.ar/go/spf"
	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// TestLibrariesAssertDNSErrorType shows the defect that counting works
// around (docs/upstream/go-msgauth.md): go-msgauth and the SPF
// library tell a temporary DNS failure by asserting the error's type, so
// a wrapped one, or a context's end, reads as permanent: dkim=permerror
// and spf=permerror where RFC 6376 and 7208 call for temperror.
func TestLibrariesAssertDNSErrorType(t *testing.T) {
	temp := &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}
	wrapped := fmt.Errorf("look up: %w", temp)
	msg := "DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=sel; h=From; bh=AAAA; b=AAAA\r\nFrom: a@example.net\r\n\r\nbody\r\n"
	verify := func(err error) error {
		vs, verr := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{
			LookupTXT: func(string) ([]string, error) { return nil, err },
		})
		if verr != nil {
			t.Fatal(verr)
		}
		return vs[0].Err
	}
	if err := verify(wrapped); !msgdkim.IsPermFail(err) {
		t.Errorf("go-msgauth now treats a wrapped temporary error as %v: the workaround may go", err)
	}
	ctx := context.Background()
	if err := verify(dnsErr(ctx, "x", wrapped)); !msgdkim.IsTempFail(err) {
		t.Errorf("through dnsErr, a wrapped temporary error gives %v, want a temporary failure", err)
	}

	res := func(err error) spf.Result {
		r, _ := spf.CheckHostWithSender(net.ParseIP("192.0.2.1"), "h.example", "a@example.net",
			spf.WithResolver(&counting{r: failing{err}}))
		return r
	}
	if r := res(wrapped); r != spf.TempError {
		t.Errorf("through counting, a wrapped temporary error gives spf=%s, want temperror", r)
	}
	r, _ := spf.CheckHostWithSender(net.ParseIP("192.0.2.1"), "h.example", "a@example.net", spf.WithResolver(failing{wrapped}))
	if r != spf.PermError {
		t.Errorf("the SPF library now gives spf=%s for a wrapped temporary error: the workaround may go", r)
	}
}

type failing struct{ err error }

func (f failing) LookupTXT(context.Context, string) ([]string, error)        { return nil, f.err }
func (f failing) LookupMX(context.Context, string) ([]*net.MX, error)        { return nil, f.err }
func (f failing) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) { return nil, f.err }
func (f failing) LookupAddr(context.Context, string) ([]string, error)       { return nil, f.err }
