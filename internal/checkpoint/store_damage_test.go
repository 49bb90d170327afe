package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/recon-ad/recon/pkg/ae"
)

// bigSpec makes checkpoints of about 23 KB, several pages each, so that a
// store of a few of them has a branch page over its leaves.
var bigSpec = ae.Spec{Input: 24, Hidden: []int{16}, Code: 4, Activation: ae.ReLU}

const damageCheckpoints = 6

// writeStore writes versions 1..n of bigSpec to a new store at path, closes
// it, and returns its id and the encoding of each version (index v-1).
func writeStore(t testing.TB, path string, n int) (string, [][]byte) {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for v := uint64(1); v <= uint64(n); v++ {
		c := sample(t, v, bigSpec)
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	id := s.ID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return id, frames
}

// layout is where the live checkpoints tree of a bbolt file lies.
type layout struct {
	pageSize     int
	branch, leaf int64 // the bucket's root (a branch page) and its last child (a leaf)
}

// liveLayout reads the checkpoints bucket's root page of db and checks that
// it is a branch page over leaves: bbolt page flags 0x01 branch, 0x02 leaf
// at byte 8 of each page's header; a branch element is 16 bytes (pos,
// ksize uint32, pgid uint64) after the 16-byte header.
func liveLayout(t testing.TB, db *bolt.DB) layout {
	t.Helper()
	var l layout
	l.pageSize = db.Info().PageSize
	err := db.View(func(tx *bolt.Tx) error {
		l.branch = int64(tx.Bucket(bucketCheckpoints).RootPage())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	p := b[l.branch*int64(l.pageSize):]
	if flags := binary.NativeEndian.Uint16(p[8:]); flags != 0x01 {
		t.Fatalf("checkpoints root page %d has flags %#x, not a branch page: make the checkpoints bigger", l.branch, flags)
	}
	count := int(binary.NativeEndian.Uint16(p[10:]))
	l.leaf = int64(binary.NativeEndian.Uint64(p[16+16*(count-1)+8:]))
	if flags := binary.NativeEndian.Uint16(b[l.leaf*int64(l.pageSize)+8:]); flags != 0x02 {
		t.Fatalf("last child %d of the root has flags %#x, not a leaf page", l.leaf, flags)
	}
	return l
}

func fileLayout(t testing.TB, path string) layout {
	t.Helper()
	db, err := bolt.Open(path, 0o644, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return liveLayout(t, db)
}

func overwritePage(b []byte, pg int64, ps int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := pg * int64(ps); i < (pg+1)*int64(ps) && i < int64(len(b)); i++ {
		b[i] = byte(rng.Uint32())
	}
}

// newestSurviving is the newest version whose encoding is still whole
// somewhere in b; 0 when none is.
func newestSurviving(b []byte, frames [][]byte) uint64 {
	for v := len(frames); v > 0; v-- {
		if bytes.Contains(b, frames[v-1]) {
			return uint64(v)
		}
	}
	return 0
}

func damagedCopies(t testing.TB, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".damaged-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOpenDamagedFile(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.db")
	id, frames := writeStore(t, base, damageCheckpoints)
	orig, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	l := fileLayout(t, base)
	random := func(seed uint64) func([]byte) []byte {
		return func(b []byte) []byte {
			rng := rand.New(rand.NewPCG(seed, 3))
			for range 16 {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
			return b
		}
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		exact  bool // the store must be found damaged and salvage every surviving checkpoint
		sameID bool // the root page survives, so the store keeps its id
	}{
		{"branch page overwritten", func(b []byte) []byte { overwritePage(b, l.branch, l.pageSize, 1); return b }, true, true},
		{"leaf page overwritten", func(b []byte) []byte { overwritePage(b, l.leaf, l.pageSize, 2); return b }, true, true},
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, true, false},
		{"both meta pages zeroed", func(b []byte) []byte { clear(b[:2*l.pageSize]); return b }, true, false},
		{"random bytes seed 1", random(1), false, false},
		{"random bytes seed 2", random(2), false, false},
		{"random bytes seed 3", random(3), false, false},
		{"random bytes seed 4", random(4), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.damage(bytes.Clone(orig))
			want := newestSurviving(b, frames)
			path := filepath.Join(t.TempDir(), "ck.db")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s, err := Open(path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				if !errors.Is(err, ErrDamaged) {
					t.Fatalf("Open: %v, want an error wrapping ErrDamaged", err)
				}
				if tc.exact && want != 0 {
					t.Fatalf("Open: %v, but version %d survives", err, want)
				}
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it aside or restore a backup") {
					t.Errorf("error %q does not name the file and the way out", err)
				}
				if _, err := os.Stat(path); err != nil {
					t.Errorf("the damaged file is gone: %v", err)
				}
				return
			}
			defer s.Close()
			c, err := s.Latest()
			switch {
			case want == 0 && !errors.Is(err, ErrNotFound):
				t.Fatalf("Latest with nothing surviving = %v, %v", c.GetVersion(), err)
			case want == 0:
			case err != nil:
				t.Fatalf("Latest: %v, want version %d", err, want)
			case tc.exact && c.GetVersion() != want, c.GetVersion() > want:
				t.Fatalf("Latest = version %d, want %d (the newest surviving)", c.GetVersion(), want)
			}
			if _, err := Encode(c); want != 0 && err != nil {
				t.Fatalf("Latest does not verify: %v", err)
			}
			aside := damagedCopies(t, path)
			if tc.exact && len(aside) != 1 {
				t.Fatalf("damaged copies %v, want one", aside)
			}
			for _, a := range aside {
				if got, err := os.ReadFile(a); err != nil || !bytes.Equal(got, b) {
					t.Fatalf("damaged copy %s differs from the damaged file (%v)", a, err)
				}
				if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), a) {
					t.Errorf("want one WARN line naming %s, got:\n%s", a, logs.String())
				}
			}
			if got := s.ID(); len(got) != 32 || (tc.sameID && got != id) {
				t.Errorf("ID = %q, want %q", got, id)
			} else if _, err := hex.DecodeString(got); err != nil {
				t.Errorf("ID %q is not hex", got)
			}
			// The store takes the next checkpoint and opens cleanly again.
			next, err := s.NextVersion()
			if err != nil {
				t.Fatal(err)
			}
			if next <= c.GetVersion() {
				t.Fatalf("NextVersion = %d after version %d", next, c.GetVersion())
			}
			if err := s.Put(sample(t, next, bigSpec)); err != nil {
				t.Fatalf("Put after Open: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path, Options{})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if c, err := s.Latest(); err != nil || c.GetVersion() != next {
				t.Fatalf("Latest after reopen = %d, %v; want %d", c.GetVersion(), err, next)
			}
			if got := damagedCopies(t, path); len(got) != len(aside) {
				t.Fatalf("reopen set aside another copy: %v", got)
			}
		})
	}
}

// TestDamageAfterOpen damages the file under an open store: the calls that
// follow return errors wrapping ErrDamaged, and a new Open salvages it.
func TestDamageAfterOpen(t *testing.T) {
	for _, page := range []string{"branch", "leaf"} {
		t.Run(page, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ck.db")
			_, frames := writeStore(t, path, damageCheckpoints)
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			l := liveLayout(t, s.db)
			pg := l.branch
			if page == "leaf" {
				pg = l.leaf
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			junk := make([]byte, l.pageSize)
			overwritePage(junk, 0, l.pageSize, 5)
			if _, err := f.WriteAt(junk, pg*int64(l.pageSize)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := s.Put(sample(t, damageCheckpoints+1, bigSpec)); !errors.Is(err, ErrDamaged) {
				t.Fatalf("Put on a damaged file: %v, want ErrDamaged", err)
			}
			if _, err := s.Latest(); !errors.Is(err, ErrDamaged) {
				t.Errorf("Latest: %v, want ErrDamaged", err)
			}
			if _, err := s.Get(1); !errors.Is(err, ErrDamaged) {
				t.Errorf("Get: %v, want ErrDamaged", err)
			}
			if _, err := s.List(); !errors.Is(err, ErrDamaged) {
				t.Errorf("List: %v, want ErrDamaged", err)
			}
			s.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := newestSurviving(b, frames)
			s, err = Open(path, Options{})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s.Close()
			if c, err := s.Latest(); err != nil || c.GetVersion() != want {
				t.Fatalf("Latest after salvage = %d, %v; want %d", c.GetVersion(), err, want)
			}
			if len(damagedCopies(t, path)) != 1 {
				t.Fatal("no damaged copy set aside")
			}
		})
	}
}

func TestOpenDamagedCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	id, _ := writeStore(t, path, damageCheckpoints)
	l := fileLayout(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	overwritePage(b, l.branch, l.pageSize, 7)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := Open(path, Options{Keep: 2, SetAsideDamaged: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open of a damaged cache: %v", err)
	}
	defer s.Close()
	if _, err := s.Latest(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Latest of the fresh cache: %v, want ErrNotFound", err)
	}
	aside := damagedCopies(t, path)
	if len(aside) != 1 {
		t.Fatalf("damaged copies %v, want one", aside)
	}
	if got, err := os.ReadFile(aside[0]); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("damaged copy differs (%v)", err)
	}
	if strings.Count(logs.String(), "level=WARN") != 1 || !strings.Contains(logs.String(), aside[0]) {
		t.Errorf("want one WARN line naming %s, got:\n%s", aside[0], logs.String())
	}
	if got := s.ID(); len(got) != 32 || got == id {
		t.Errorf("ID of the fresh cache = %q (old %q)", got, id)
	}
	if err := s.Put(sample(t, 1, specs[0])); err != nil {
		t.Fatal(err)
	}
}

// FuzzOpenDamaged flips bytes of a valid store file: Open must not panic,
// and what it opens must read and write or fail with ErrDamaged. Each 5
// bytes of the input are a flip: a little-endian offset (modulo the file
// length) and the byte XORed in.
func FuzzOpenDamaged(f *testing.F) {
	base := filepath.Join(f.TempDir(), "base.db")
	_, frames := writeStore(f, base, damageCheckpoints)
	orig, err := os.ReadFile(base)
	if err != nil {
		f.Fatal(err)
	}
	l := fileLayout(f, base)
	flip := func(off int64, x byte) []byte {
		var b [5]byte
		binary.LittleEndian.PutUint32(b[:], uint32(off))
		b[4] = x
		return b[:]
	}
	f.Add(flip(l.branch*int64(l.pageSize)+16, 0xff))
	f.Add(flip(l.leaf*int64(l.pageSize)+20, 0x40))
	f.Add(append(flip(16, 1), flip(int64(l.pageSize)+16, 1)...))
	f.Add(flip(l.leaf*int64(l.pageSize), 3))
	f.Fuzz(func(t *testing.T, flips []byte) {
		b := bytes.Clone(orig)
		for ; len(flips) >= 5; flips = flips[5:] {
			b[int(binary.LittleEndian.Uint32(flips))%len(b)] ^= flips[4]
		}
		path := filepath.Join(t.TempDir(), "ck.db")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, Options{})
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open: %v, want nil or ErrDamaged", err)
			}
			return
		}
		defer s.Close()
		c, err := s.Latest()
		if err == nil && c.GetVersion() > newestSurviving(b, frames) {
			t.Fatalf("Latest = version %d, newer than any surviving", c.GetVersion())
		} else if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrDamaged) {
			t.Fatalf("Latest: %v", err)
		}
		if _, err := s.List(); err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("List: %v", err)
		}
		next, err := s.NextVersion()
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("NextVersion: %v", err)
			}
			return
		}
		if err := s.Put(sample(t, next, specs[0])); err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("Put: %v", err)
		}
	})
}
