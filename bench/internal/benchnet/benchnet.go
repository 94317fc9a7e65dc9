// Package benchnet holds what the benchmark drivers share: picking a free
// loopback port for a peer's configuration and waiting until a server
// answers.
package benchnet

import (
	"fmt"
	"net"
	"time"
)

// FreePort returns a port on 127.0.0.1 that was free a moment ago, for a
// peer (Dovecot, Postfix) whose configuration needs a number.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Wait calls probe(addr) every 50 ms until it succeeds or timeout passes.
func Wait(addr string, timeout time.Duration, probe func(addr string) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := probe(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
