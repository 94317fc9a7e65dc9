package maildir

// Internal dates read when asked for: a scan takes a file whose name
// carries both sizes without a stat (scan.go statNew), and the date (the
// file's mtime) is read on the first FETCH INTERNALDATE or date SEARCH
// that needs it, then kept in the index.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"mailroom/mailbox"
)

var _ mailbox.LazyDates = (*session)(nil)

// dateJob is one file whose mtime is to be read.
type dateJob struct {
	e     *entry // the entry (compared again before the date is kept)
	inNew bool
	name  string
	date  int64 // noDate if the file could not be stat'ed
}

// InternalDates returns the internal dates of the messages uids that are
// in the folder. Dates not known yet are read from the files' mtimes
// without the folder's lock held (in parallel for many), then kept in
// memory and in the index. A file renamed meanwhile is stat'ed again.
func (s *session) InternalDates(ctx context.Context, name string, uids []uint32) (map[uint32]time.Time, error) {
	out := make(map[uint32]time.Time, len(uids))
	var jobs []dateJob
	var f *folder
	_, _, err := s.locked(ctx, name, func(fl *folder) error {
		f = fl
		for _, uid := range uids {
			e := f.find(uid)
			switch {
			case e == nil:
			case e.date != noDate:
				out[uid] = time.Unix(e.date, 0)
			default:
				jobs = append(jobs, dateJob{e: e, inNew: e.inNew, name: e.name})
			}
		}
		return nil
	})
	if err != nil || len(jobs) == 0 {
		return out, err
	}
	f.statDates(jobs)
	err = s.withFolder(ctx, name, func(f *folder) error {
		var updates []entryUpdate
		for _, j := range jobs {
			e := f.find(j.e.uid)
			if e == nil {
				continue // expunged meanwhile
			}
			if e.date != noDate {
				out[e.uid] = time.Unix(e.date, 0)
				continue
			}
			d := j.date
			if d == noDate || e != j.e || e.name != j.name || e.inNew != j.inNew {
				// Renamed since (a flag change), or the folder was
				// read again: stat it again, here.
				var st unix.Stat_t
				if err := f.statMessage(e.inNew, e.name, &st); err != nil {
					continue // gone: the next sync tells
				}
				d = st.Mtim.Sec
			}
			u := *e
			u.date = d
			updates = append(updates, entryUpdate{e, u})
			out[e.uid] = time.Unix(d, 0)
		}
		if len(updates) == 0 {
			return nil
		}
		return f.commit(updates, nil, nil, nil)
	})
	return out, err
}

// statDates reads the mtimes of jobs' files, spread over the CPUs for
// many. It takes no lock but the handles' (shared).
func (f *folder) statDates(jobs []dateJob) {
	work := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var st unix.Stat_t
			jobs[i].date = noDate
			if f.statMessage(jobs[i].inNew, jobs[i].name, &st) == nil {
				jobs[i].date = st.Mtim.Sec
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), 8, len(jobs)/1024)
	if workers <= 1 {
		work(0, len(jobs))
		return
	}
	var wg sync.WaitGroup
	per := (len(jobs) + workers - 1) / workers
	for lo := 0; lo < len(jobs); lo += per {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(lo, min(lo+per, len(jobs)))
		}()
	}
	wg.Wait()
}

// statMessage stats the message file name in new/ or cur/ (not following
// a symlink) through the folder's handles, or through the Maildir.
func (f *folder) statMessage(inNew bool, name string, st *unix.Stat_t) error {
	f.hmu.RLock()
	if h := f.h; h != nil {
		d := h.curD
		if inNew {
			d = h.newD
		}
		err := unix.Fstatat(int(d.Fd()), name, st, unix.AT_SYMLINK_NOFOLLOW)
		f.hmu.RUnlock()
		return err
	}
	f.hmu.RUnlock()
	fh, err := f.openMessage(inNew, name)
	if err != nil {
		return err
	}
	defer fh.Close()
	if err := unix.Fstat(int(fh.Fd()), st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errors.New("not a regular file")
	}
	return nil
}
