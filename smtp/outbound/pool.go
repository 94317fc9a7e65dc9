package outbound

import (
	"context"
	"sync"
	"time"
)

// pool keeps sessions that ended cleanly, so that the next message to the
// same host address skips connecting, the greeting, EHLO and STARTTLS
// (as Postfix's connection cache does). A session waits at most
// Options.IdleTimeout; RFC 5321 §3.3 lets a client start the next
// transaction with MAIL at once.
type pool struct {
	mu   sync.Mutex
	idle map[string][]*pooled
	max  int
	ttl  time.Duration
}

type pooled struct {
	c     *client
	timer *time.Timer
}

func newPool(max int, ttl time.Duration) *pool {
	return &pool{idle: map[string][]*pooled{}, max: max, ttl: ttl}
}

// take returns an idle session for key, or nil.
func (p *pool) take(key string) *client {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list = list[:len(list)-1]
		p.idle[key] = list
		if pc.timer.Stop() {
			return pc.c
		}
	}
	return nil
}

// put keeps c for key, or ends the session if the pool is full. c must
// no longer be tied to a context.
func (p *pool) put(key string, c *client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max <= 0 || len(p.idle[key]) >= p.max {
		go c.quit()
		return
	}
	pc := &pooled{c: c}
	pc.timer = time.AfterFunc(p.ttl, func() {
		p.mu.Lock()
		list := p.idle[key]
		for i, x := range list {
			if x == pc {
				p.idle[key] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		c.quit()
	})
	p.idle[key] = append(p.idle[key], pc)
}

// closeAll ends every idle session.
func (p *pool) closeAll() {
	p.mu.Lock()
	var all []*client
	for key, list := range p.idle {
		for _, pc := range list {
			if pc.timer.Stop() {
				all = append(all, pc.c)
			}
		}
		delete(p.idle, key)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(c.quit)
	}
	wg.Wait()
}

// bind makes ctx's end close c's connection, for as long as c is in use.
func (c *client) bind(ctx context.Context) {
	raw := c.raw
	c.stop = context.AfterFunc(ctx, func() { raw.Close() })
}

// unbind undoes bind; false means ctx ended and the connection is closed.
func (c *client) unbind() bool { return c.stop() }

// quit ends the session politely (QUIT, bounded by the command timeout)
// and closes the connection.
func (c *client) quit() {
	c.Client.Quit()
	c.Client.Close()
}
