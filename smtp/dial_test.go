package smtp_test

import "net"

// tlsFreeDialer makes raw loopback connections for tests that must see
// bytes before any protocol helper reads them.
type tlsFreeDialer struct{}

func (tlsFreeDialer) dial(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
func (tlsFreeDialer) listen() (net.Listener, error)      { return net.Listen("tcp", "127.0.0.1:0") }
