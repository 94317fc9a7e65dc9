package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/miekg/dns"
)

// runDNS serves the zone-file lines of -zone on 127.0.0.1 (UDP and TCP,
// one port) until SIGTERM, for the checks' lookups in bench/smtp.sh
// (AUTH=1). It prints "RESULT addr=127.0.0.1:PORT" once it serves.
func runDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	zoneFile := fs.String("zone", "", "zone-file lines, one record each")
	fs.Parse(args)
	f, err := os.Open(*zoneFile)
	if err != nil {
		return err
	}
	zone := map[string][]dns.RR{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			return fmt.Errorf("%s: %q: %w", *zoneFile, line, err)
		}
		if t, ok := rr.(*dns.TXT); ok {
			var parts []string
			for _, s := range t.Txt {
				for len(s) > 255 {
					parts, s = append(parts, s[:255]), s[255:]
				}
				parts = append(parts, s)
			}
			t.Txt = parts
		}
		name := strings.ToLower(rr.Header().Name)
		zone[name] = append(zone[name], rr)
	}
	f.Close()
	if err := sc.Err(); err != nil {
		return err
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		rrs, ok := zone[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := 512
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return err
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return errors.New("dns: no port free for both UDP and TCP")
	}
	go (&dns.Server{PacketConn: pc, Handler: handler}).ActivateAndServe()
	go (&dns.Server{Listener: l, Handler: handler}).ActivateAndServe()
	fmt.Printf("RESULT addr=%s\n", pc.LocalAddr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
