// Command queuebench measures the outbound path: it starts Postfix's
// smtp-sink on 127.0.0.1 as the smarthost, runs a queue with the SMTP
// transport (bbolt and body files on a real disk), enqueues N messages and
// waits until every one was accepted by the sink. It prints messages per
// second and mailroom's CPU time per message. bench/queue.sh runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailroom/queue"
	"mailroom/smtp/outbound"
)

func main() {
	n := flag.Int("n", 10000, "messages")
	conc := flag.Int("c", 16, "outbound connections (queue concurrency)")
	enq := flag.Int("e", 16, "goroutines enqueueing at once (as concurrent SMTP sessions)")
	size := flag.Int("size", 4096, "message size in bytes")
	dir := flag.String("dir", "/var/tmp", "where the work directory goes (a real disk, not tmpfs)")
	sink := flag.String("sink", "smtp-sink", "Postfix's smtp-sink")
	prof := flag.String("cpuprofile", "", "write a CPU profile to this file")
	separate := flag.Bool("separate", false, "enqueue everything first, then start sending (times the two phases apart)")
	flag.Parse()
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			fmt.Fprintln(os.Stderr, "queuebench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*n, *conc, *enq, *size, *dir, *sink, *separate); err != nil {
		fmt.Fprintln(os.Stderr, "queuebench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// counter counts "sent" records and closes done when all have been.
type counter struct {
	slog.Handler
	want int64
	sent atomic.Int64
	done chan struct{}
	once sync.Once
	errs atomic.Int64
}

func (c *counter) Enabled(context.Context, slog.Level) bool { return true }
func (c *counter) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "event" {
			switch a.Value.String() {
			case "sent":
				if c.sent.Add(1) == c.want {
					c.once.Do(func() { close(c.done) })
				}
			case "deferred", "bounced", "expired", "held":
				if c.errs.Add(1) <= 3 {
					fmt.Fprintln(os.Stderr, "queuebench:", r.Message, r.Level)
				}
			}
		}
		return true
	})
	return nil
}
func (c *counter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *counter) WithGroup(string) slog.Handler      { return c }

func run(n, conc, enq, size int, base, sinkBin string, separate bool) error {
	work, err := os.MkdirTemp(base, "queuebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"-c", addr, "1024"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	sink := exec.Command(sinkBin, args...)
	sink.Stderr = os.Stderr
	if err := sink.Start(); err != nil {
		return fmt.Errorf("start smtp-sink (apt-get install postfix): %w", err)
	}
	defer func() {
		sink.Process.Kill()
		sink.Wait()
	}()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			return fmt.Errorf("smtp-sink does not accept on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	db, err := bolt.Open(filepath.Join(work, "mailroom.db"), 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	cnt := &counter{want: int64(n), done: make(chan struct{})}
	q, err := queue.Open(queue.Options{
		DB: db, Dir: filepath.Join(work, "queue"), Hostname: "bench.test",
		Transport:   outbound.New(outbound.Options{Hostname: "bench.test", Smarthost: addr}),
		Concurrency: conc, Logger: slog.New(cnt),
	})
	if err != nil {
		return err
	}
	msg := "From: bench@bench.test\r\nTo: sink@sink.test\r\nSubject: bench\r\n\r\n"
	line := strings.Repeat("x", 76) + "\r\n"
	for len(msg)+len(line) <= size {
		msg += line
	}

	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	startRun := func() {
		go func() {
			q.Run(ctx)
			close(runDone)
		}()
	}
	if !separate {
		startRun()
	}
	// Enqueue from as many goroutines as there are connections, as
	// concurrent SMTP sessions would.
	var wg sync.WaitGroup
	var next atomic.Int64
	var enqErr atomic.Value
	for range enq {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := q.Enqueue(ctx, "bench@bench.test", []string{"sink@sink.test"}, strings.NewReader(msg)); err != nil {
					enqErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	enqueued := time.Since(start)
	if err, _ := enqErr.Load().(error); err != nil {
		cancel()
		return fmt.Errorf("enqueue: %w", err)
	}
	var mid syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &mid)
	if separate {
		startRun()
	}
	select {
	case <-cnt.done:
	case <-time.After(10 * time.Minute):
		cancel()
		return fmt.Errorf("only %d of %d sent after 10 minutes", cnt.sent.Load(), n)
	}
	total := time.Since(start)
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cancel()
	<-runDone
	cpu := tv(after.Utime) - tv(before.Utime) + tv(after.Stime) - tv(before.Stime)
	fmt.Printf("messages            %d x %d bytes, %d outbound connections, smarthost smtp-sink\n", n, len(msg), conc)
	fmt.Printf("enqueue (durable)   %.2fs  %.0f msg/s\n", enqueued.Seconds(), float64(n)/enqueued.Seconds())
	if separate {
		sendTime := total - enqueued
		sendCPU := tv(after.Utime) - tv(mid.Utime) + tv(after.Stime) - tv(mid.Stime)
		fmt.Printf("send (queued)       %.2fs  %.0f msg/s, CPU %.0f µs/msg\n", sendTime.Seconds(), float64(n)/sendTime.Seconds(),
			float64(sendCPU.Microseconds())/float64(n))
	}
	fmt.Printf("enqueue + send      %.2fs  %.0f msg/s\n", total.Seconds(), float64(n)/total.Seconds())
	fmt.Printf("CPU (mailroom)      %.2fs  %.0f µs/msg (user %.2fs, sys %.2fs)\n", cpu.Seconds(),
		float64(cpu.Microseconds())/float64(n), (tv(after.Utime) - tv(before.Utime)).Seconds(), (tv(after.Stime) - tv(before.Stime)).Seconds())
	if e := cnt.errs.Load(); e > 0 {
		fmt.Printf("deferred/failed     %d (retried)\n", e)
	}
	return nil
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}
