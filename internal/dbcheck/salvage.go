package dbcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BucketReport is how much of one bucket Salvage saved.
type BucketReport struct {
	// Path names the bucket from the top.
	Path []string
	// Keys is how many keys (values and sub-buckets) were copied.
	Keys int
	// Complete says every key of the bucket was read.
	Complete bool
	// Gaps are the stretches of keys that could not be read.
	Gaps []Gap
}

// Gap is a stretch of a bucket that could not be read: the keys after
// After ("": from the start) and before Before ("": to the end).
type Gap struct{ After, Before string }

// Report is what Salvage saved.
type Report struct {
	// Opened is false when bbolt could not open the file at all (both
	// meta pages gone): nothing was saved, and Reason says why.
	Opened bool
	Reason string
	// Buckets lists every bucket met, in the order met.
	Buckets []BucketReport
	// Keys is the number of keys copied, in all buckets.
	Keys int
	// Runs is how many child processes the salvage took: one more for
	// each place where reading failed.
	Runs int
}

// Lost reports whether anything met could not be read.
func (r *Report) Lost() bool {
	if !r.Opened {
		return true
	}
	for _, b := range r.Buckets {
		if !b.Complete {
			return true
		}
	}
	return false
}

const (
	// maxRuns bounds the child processes of one salvage: finding where
	// reading can go on after an unreadable page takes up to about a
	// hundred short ones.
	maxRuns = 5000
	// idleLimit is how long a dumping child may go without sending a
	// record before it is taken for stuck.
	idleLimit = time.Minute
	// batchKeys is how many keys go into one write transaction of dst.
	batchKeys = 5000
)

// Salvage copies every key of the bbolt file src that can still be read
// into a new file dst (which must not exist), bucket by bucket, and says
// what it could not read. Where reading fails, the rest of that bucket is
// given up and the copy goes on with the next one, in a new child
// process. src is never written.
func Salvage(ctx context.Context, src, dst string, opts Options) (*Report, error) {
	if opts.LockWait <= 0 {
		opts.LockWait = time.Second
	}
	if _, err := os.Stat(dst); err == nil {
		return nil, fmt.Errorf("salvage into %s: it exists", dst)
	}
	// No fsync per batch: the file is synced once, at the end, and is
	// of no use to anyone before.
	out, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: opts.LockWait, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", dst, err)
	}
	s := &salvager{opts: opts, src: src, db: out, rep: &Report{Opened: true}, buckets: map[string]int{}}
	err = s.run(ctx)
	if err == nil {
		if err = out.Sync(); err != nil {
			err = fmt.Errorf("write %s: %w", dst, err)
		}
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", dst, cerr)
	}
	if err != nil {
		os.Remove(dst)
		return nil, err
	}
	return s.rep, nil
}

type salvager struct {
	opts    Options
	src     string
	db      *bolt.DB
	rep     *Report
	buckets map[string]int // pathKey -> index in rep.Buckets
	pos     [][]byte       // where the next run goes on from
	incl    bool           // from pos's last key rather than after it

	tx    *bolt.Tx
	open  map[string]*bolt.Bucket // buckets of tx, by pathKey
	batch int
}

func (s *salvager) run(ctx context.Context) error {
	for {
		if s.rep.Runs == maxRuns {
			s.giveUp()
			return nil
		}
		s.rep.Runs++
		n, res, err := s.once(ctx)
		if err != nil {
			return err
		}
		switch {
		case res.done:
			return nil
		case res.code == childLocked:
			return fmt.Errorf("%s: %w", s.src, ErrLocked)
		case res.code == childMissing:
			return fmt.Errorf("%s: %w", s.src, os.ErrNotExist)
		case n == 0 && s.rep.Runs == 1 && res.code == childDamaged && strings.HasPrefix(res.stdout, "bbolt cannot open"):
			s.rep.Opened, s.rep.Reason = false, oneLine(res.stdout)
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
		if n > 0 {
			continue // it got further: try again from there
		}
		// No progress from here: find where the bucket can be read
		// again, past the page that stops it.
		pos := s.pos
		if len(pos) == 0 {
			pos = [][]byte{nil}
		}
		path, after := pos[:len(pos)-1], pos[len(pos)-1]
		next, found, err := s.findNext(ctx, path, after)
		if err != nil {
			return err
		}
		s.lose(path, Gap{After: string(after), Before: string(next)})
		switch {
		case found:
			s.pos, s.incl = append(clonePath(path), next), true
		case len(path) == 0:
			return nil
		default:
			s.pos, s.incl = clonePath(path), false
		}
	}
}

// findNext looks for the first key of bucket path after key after that
// bbolt can seek to, taking the key's leading bytes (up to eight) for a
// number and trying ever larger ones, then the least of those that works.
// found is false if there is none (the rest of the bucket is lost).
func (s *salvager) findNext(ctx context.Context, path [][]byte, after []byte) (next []byte, found bool, err error) {
	w := min(max(len(after), 1), 8)
	if len(after) == 0 {
		w = 8
	}
	var x uint64
	for i := range w {
		x <<= 8
		if i < len(after) {
			x |= uint64(after[i])
		}
	}
	limit := uint64(1)<<(8*w) - 1
	if w == 8 {
		limit = ^uint64(0)
	}
	probe := func(d uint64) ([]byte, bool, bool, error) {
		v := x + d
		key := make([]byte, w)
		for i := w - 1; i >= 0; i-- {
			key[i] = byte(v)
			v >>= 8
		}
		s.rep.Runs++
		var out bytes.Buffer
		req := request{Op: "probe", Path: s.src, LockWait: s.opts.LockWait, Resume: append(clonePath(path), key)}
		r, err := runChild(ctx, s.opts, req, &out)
		if err != nil || r.code != childOK {
			return nil, false, false, err
		}
		kind, segs, rerr := readRecord(bufio.NewReader(&out))
		if rerr != nil {
			return nil, false, false, nil
		}
		if kind == recKey && len(segs) == 1 {
			return segs[0], true, true, nil
		}
		return nil, false, true, nil // the end of the bucket
	}
	if limit == x {
		return nil, false, nil
	}
	// If even the last key cannot be sought, the page that stops the
	// walk is the bucket's last (or its root): the rest is lost.
	if _, _, ok, err := probe(limit - x); err != nil || !ok {
		return nil, false, err
	}
	// Grow the step until a seek works, then narrow it down.
	var lo, hi uint64 = 0, 0
	var hiKey []byte
	var hiFound bool
	for d := uint64(1); d != 0 && d <= limit-x; d <<= 1 {
		if s.rep.Runs >= maxRuns || ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		k, f, ok, err := probe(d)
		if err != nil {
			return nil, false, err
		}
		if ok {
			hi, hiKey, hiFound = d, k, f
			break
		}
		lo = d
	}
	if hi == 0 {
		return nil, false, nil
	}
	for hi-lo > 1 && s.rep.Runs < maxRuns && ctx.Err() == nil {
		mid := lo + (hi-lo)/2
		k, f, ok, err := probe(mid)
		if err != nil {
			return nil, false, err
		}
		if ok {
			hi, hiKey, hiFound = mid, k, f
		} else {
			lo = mid
		}
	}
	return hiKey, hiFound, ctx.Err()
}

// giveUp marks the top level, and every bucket still open, incomplete.
func (s *salvager) giveUp() {
	for i := len(s.pos) - 1; i >= 0; i-- {
		s.lose(s.pos[:i], Gap{After: string(s.pos[i])})
	}
}

// lose records a gap in bucket path.
func (s *salvager) lose(path [][]byte, g Gap) {
	if len(path) == 0 {
		s.rep.Buckets = append(s.rep.Buckets, BucketReport{Path: nil, Gaps: []Gap{g}})
		return
	}
	if i, ok := s.buckets[pathKey(path)]; ok {
		s.rep.Buckets[i].Gaps = append(s.rep.Buckets[i].Gaps, g)
	}
}

type onceResult struct {
	childResult
	done   bool
	stdout string // what followed the records (the child's reason)
}

// once runs one child from s.pos and copies what it sends; n is the
// number of records received.
func (s *salvager) once(ctx context.Context) (n int, res onceResult, err error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	type result struct {
		r   childResult
		err error
	}
	done := make(chan result, 1)
	req := request{Op: "dump", Path: s.src, LockWait: s.opts.LockWait, Resume: s.pos, Inclusive: s.incl, Flush: s.rep.Runs > 1}
	go func() {
		r, err := runChild(cctx, s.opts, req, pw)
		pw.Close()
		done <- result{r, err}
	}()
	idle := time.AfterFunc(idleLimit, cancel)
	defer idle.Stop()
	br := bufio.NewReaderSize(pr, 64<<10)
	for {
		kind, segs, rerr := readRecord(br)
		if rerr != nil {
			break
		}
		idle.Reset(idleLimit)
		n++
		s.incl = false
		if kind == recDone {
			res.done = true
			break
		}
		if err = s.apply(kind, segs); err != nil {
			cancel()
			break
		}
	}
	rest, _ := io.ReadAll(io.LimitReader(br, 64<<10))
	io.Copy(io.Discard, pr)
	r := <-done
	if err == nil {
		err = s.commit()
	}
	if err == nil {
		err = r.err
	}
	res.childResult, res.stdout = r.r, string(rest)
	return n, res, err
}

// apply writes one record into the new file.
func (s *salvager) apply(kind byte, segs [][]byte) error {
	switch kind {
	case recBucket:
		if len(segs) < 2 {
			return errors.New("salvage: bad bucket record")
		}
		path, seq := segs[:len(segs)-1], segs[len(segs)-1]
		b, err := s.bucket(path)
		if err != nil {
			return err
		}
		if len(seq) == 8 {
			if err := b.SetSequence(binary.BigEndian.Uint64(seq)); err != nil {
				return err
			}
		}
		s.buckets[pathKey(path)] = len(s.rep.Buckets)
		names := make([]string, len(path))
		for i, p := range path {
			names[i] = string(p)
		}
		s.rep.Buckets = append(s.rep.Buckets, BucketReport{Path: names})
		s.count(path[:len(path)-1])
		s.pos = append(clonePath(path), nil)
	case recKey:
		if len(segs) < 3 {
			return errors.New("salvage: bad key record")
		}
		path, k, v := segs[:len(segs)-2], segs[len(segs)-2], segs[len(segs)-1]
		s.pos = append(clonePath(path), k)
		if len(path) == 0 || len(k) == 0 {
			// The top level holds only buckets; a key there, or an
			// empty key, is damage bbolt read as data.
			return nil
		}
		b, err := s.bucket(path)
		if err != nil {
			return err
		}
		if err := b.Put(k, v); err != nil {
			return fmt.Errorf("salvage: write key: %w", err)
		}
		s.count(path)
		if s.batch++; s.batch >= batchKeys {
			return s.commit()
		}
	case recEnd:
		if i, ok := s.buckets[pathKey(segs)]; ok {
			s.rep.Buckets[i].Complete = len(s.rep.Buckets[i].Gaps) == 0
		}
		s.pos = clonePath(segs)
	default:
		return fmt.Errorf("salvage: unknown record %q", kind)
	}
	return nil
}

func (s *salvager) count(path [][]byte) {
	s.rep.Keys++
	if i, ok := s.buckets[pathKey(path)]; ok {
		s.rep.Buckets[i].Keys++
	}
}

// bucket returns the bucket at path in the current write transaction,
// creating it (and the transaction) as needed.
func (s *salvager) bucket(path [][]byte) (*bolt.Bucket, error) {
	if s.tx == nil {
		tx, err := s.db.Begin(true)
		if err != nil {
			return nil, fmt.Errorf("salvage: %w", err)
		}
		s.tx, s.open = tx, map[string]*bolt.Bucket{}
	}
	key := pathKey(path)
	if b := s.open[key]; b != nil {
		return b, nil
	}
	var b *bolt.Bucket
	var err error
	if len(path) == 1 {
		b, err = s.tx.CreateBucketIfNotExists(path[0])
	} else {
		var parent *bolt.Bucket
		if parent, err = s.bucket(path[:len(path)-1]); err == nil {
			b, err = parent.CreateBucketIfNotExists(path[len(path)-1])
		}
	}
	if err != nil {
		return nil, fmt.Errorf("salvage: create bucket %q: %w", path, err)
	}
	s.open[key] = b
	return b, nil
}

func (s *salvager) commit() error {
	if s.tx == nil {
		return nil
	}
	tx := s.tx
	s.tx, s.open, s.batch = nil, nil, 0
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("salvage: %w", err)
	}
	return nil
}

// readRecord reads one record of a dump stream; a record cut short (the
// child died writing it) is io.ErrUnexpectedEOF.
func readRecord(r *bufio.Reader) (byte, [][]byte, error) {
	kind, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > 1<<16 {
		return 0, nil, io.ErrUnexpectedEOF
	}
	segs := make([][]byte, n)
	for i := range segs {
		l, err := binary.ReadUvarint(r)
		if err != nil || l > 1<<31 {
			return 0, nil, io.ErrUnexpectedEOF
		}
		segs[i] = make([]byte, l)
		if _, err := io.ReadFull(r, segs[i]); err != nil {
			return 0, nil, io.ErrUnexpectedEOF
		}
	}
	return kind, segs, nil
}

func pathKey(path [][]byte) string {
	var b []byte
	for _, p := range path {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return string(b)
}

func clonePath(path [][]byte) [][]byte {
	out := make([][]byte, len(path), len(path)+1)
	for i, p := range path {
		out[i] = append([]byte(nil), p...)
	}
	return out
}
