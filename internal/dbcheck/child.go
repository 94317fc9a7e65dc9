package dbcheck

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// envChild marks a process started by runChild.
const envChild = "MAILROOM_DBCHECK_CHILD"

// childMaxHeap is more than reading any sound database needs (the walk
// keeps one path, tx.Check a map of page ids): beyond it, pages point in
// a loop and the child stops rather than take the machine's memory.
const childMaxHeap = 1 << 30

// Main runs the child's side and exits when the process was started as a
// child by Check or Salvage; otherwise it returns at once. The mailroom
// binary calls it first thing, as must the TestMain of any test binary
// whose tests reach Check.
func Main() {
	if os.Getenv(envChild) != "1" {
		return
	}
	os.Exit(child(os.Stdin, os.Stdout))
}

func child(stdin io.Reader, stdout io.Writer) int {
	// A corrupt page can send bbolt anywhere in (or past) its mapping:
	// make those faults panics this goroutine recovers, and a descent
	// through pages in a loop a quick death rather than a slow one.
	debug.SetPanicOnFault(true)
	debug.SetMaxStack(256 << 20)
	go watchMemory()

	var req request
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "dbcheck: bad request:", err)
		return 2
	}
	st, err := os.Stat(req.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return childMissing
	}
	if err != nil {
		fmt.Fprintln(stdout, err)
		return childDamaged
	}
	if st.Size() == 0 {
		// What bbolt makes a new database of; the caller decides.
		if req.Op == "check" {
			json.NewEncoder(stdout).Encode(Info{Buckets: map[string]int{}})
		} else {
			stdout.Write([]byte{recEnd, 0, recDone, 0})
		}
		return childOK
	}
	db, err := bolt.Open(req.Path, 0, &bolt.Options{ReadOnly: true, Timeout: req.LockWait})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return childLocked
	case err != nil:
		fmt.Fprintf(stdout, "bbolt cannot open it (%v)\n", err)
		return childDamaged
	}
	// db is not closed: after a recovered panic a transaction may still
	// hold its locks, and the process ends anyway.
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	switch req.Op {
	case "check":
		info, err := check(db, st.Size())
		if err != nil {
			fmt.Fprintln(w, err)
			return childDamaged
		}
		json.NewEncoder(w).Encode(info)
		return childOK
	case "probe":
		d := &dumper{w: w, flush: true}
		if err := d.probe(db, req.Resume); err != nil {
			fmt.Fprintln(os.Stderr, "dbcheck:", err)
			return childDamaged
		}
		return childOK
	case "dump":
		d := &dumper{w: w, flush: req.Flush}
		if err := d.dump(db, req.Resume, req.Inclusive); err != nil {
			w.Flush()
			fmt.Fprintln(os.Stderr, "dbcheck:", err)
			return childDamaged
		}
		d.emit(recDone)
		return childOK
	}
	fmt.Fprintf(os.Stderr, "dbcheck: unknown op %q\n", req.Op)
	return 2
}

// watchMemory ends the process when its heap passes childMaxHeap.
func watchMemory() {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	for range time.Tick(20 * time.Millisecond) {
		metrics.Read(s)
		if s[0].Value.Kind() == metrics.KindUint64 && s[0].Value.Uint64() > childMaxHeap {
			fmt.Fprintln(os.Stderr, "dbcheck: out of memory bound")
			os.Exit(childMemory)
		}
	}
}

// check reads every key and value, then runs bbolt's own consistency
// check (free list, reachability, page types, key order).
func check(db *bolt.DB, fileSize int64) (info Info, err error) {
	info = Info{Buckets: map[string]int{}, Size: fileSize}
	err = db.View(func(tx *bolt.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("bbolt failed reading it (%v)", r)
			}
		}()
		// Every page of a sound file lies below its high-water mark;
		// touching one past the end of a short file is a fault.
		if need := tx.Size(); need > fileSize {
			return fmt.Errorf("it is cut short: %d bytes, but its pages reach to %d", fileSize, need)
		}
		root := tx.Cursor().Bucket()
		c := root.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			b := root.Bucket(k)
			if b == nil {
				return fmt.Errorf("top-level key %q is not a bucket", k)
			}
			n, err := countAll(b)
			if err != nil {
				return err
			}
			info.Buckets[string(k)] = n
		}
		var errs []string
		for err := range tx.Check() {
			if len(errs) < 3 {
				// bbolt reports a panic it recovered as "panic: ...".
				errs = append(errs, strings.TrimPrefix(err.Error(), "panic: "))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("bbolt's consistency check failed (%s)", strings.Join(errs, "; "))
		}
		return nil
	})
	return info, err
}

// countAll reads every key and value below b and returns the number of
// keys directly in b.
func countAll(b *bolt.Bucket) (int, error) {
	n := 0
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n++
		if sub := b.Bucket(k); sub != nil {
			if _, err := countAll(sub); err != nil {
				return 0, err
			}
			continue
		}
		// Touch the value: an overflow page past the end faults here.
		if len(v) > 0 {
			_ = v[0] + v[len(v)-1]
		}
	}
	return n, nil
}

// Record kinds of a dump stream.
const (
	recBucket = 'b' // segments: bucket path; then the sequence (8 bytes)
	recKey    = 'k' // segments: bucket path, key, value
	recEnd    = 'e' // segments: bucket path: every key of it was sent
	recDone   = 'z' // the whole file was sent
)

// dumper writes a depth-first walk of the database as records.
type dumper struct {
	w     *bufio.Writer
	flush bool
}

func (d *dumper) emit(kind byte, segs ...[]byte) {
	var buf [binary.MaxVarintLen64]byte
	d.w.WriteByte(kind)
	d.w.Write(buf[:binary.PutUvarint(buf[:], uint64(len(segs)))])
	for _, s := range segs {
		d.w.Write(buf[:binary.PutUvarint(buf[:], uint64(len(s)))])
		d.w.Write(s)
	}
	if d.flush {
		d.w.Flush()
	}
}

func (d *dumper) dump(db *bolt.DB, resume [][]byte, inclusive bool) error {
	return db.View(func(tx *bolt.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("bbolt failed reading it (%v)", r)
			}
		}()
		d.walk(tx.Cursor().Bucket(), nil, resume, inclusive)
		return nil
	})
}

// probe seeks to the last element of at in the bucket the others name
// and sends the key found there (recKey with no value), or recEnd if the
// bucket has none from there on. It tells Salvage where reading can go
// on after a page that cannot be read.
func (d *dumper) probe(db *bolt.DB, at [][]byte) error {
	return db.View(func(tx *bolt.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("bbolt failed reading it (%v)", r)
			}
		}()
		if len(at) == 0 {
			return errors.New("probe: no key")
		}
		b := tx.Cursor().Bucket()
		for _, name := range at[:len(at)-1] {
			if b = b.Bucket(name); b == nil {
				return fmt.Errorf("probe: no bucket %q", name)
			}
		}
		if k, _ := b.Cursor().Seek(at[len(at)-1]); k != nil {
			d.emit(recKey, k)
		} else {
			d.emit(recEnd)
		}
		return nil
	})
}

// walk sends every key of b (path) after the position resume, then
// recEnd for b. resume is a key of b to go on after (descending into it
// if it is a bucket and more of resume follows; going on from it, not
// after it, if it is the last and inclusive is set); an empty key means
// "from the start".
func (d *dumper) walk(b *bolt.Bucket, path [][]byte, resume [][]byte, inclusive bool) {
	c := b.Cursor()
	var k, v []byte
	if len(resume) == 0 {
		k, v = c.First()
	} else {
		k, v = c.Seek(resume[0])
		if k != nil && string(k) == string(resume[0]) && !(inclusive && len(resume) == 1) {
			if sub := b.Bucket(k); sub != nil && len(resume) > 1 {
				d.walk(sub, extend(path, k), resume[1:], inclusive)
			}
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		if sub := b.Bucket(k); sub != nil {
			p := extend(path, k)
			d.emit(recBucket, append(p, binary.BigEndian.AppendUint64(nil, sub.Sequence()))...)
			d.walk(sub, p, nil, false)
			continue
		}
		segs := make([][]byte, 0, len(path)+2)
		d.emit(recKey, append(append(segs, path...), k, v)...)
	}
	d.emit(recEnd, path...)
}

// extend returns a new path: path, then k.
func extend(path [][]byte, k []byte) [][]byte {
	p := make([][]byte, len(path), len(path)+1)
	copy(p, path)
	return append(p, append([]byte(nil), k...))
}
