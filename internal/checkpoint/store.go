package checkpoint

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Sentinel errors of the store.
var (
	// ErrNotFound is returned when no checkpoint (or no valid one) exists
	// for the version asked for.
	ErrNotFound = errors.New("checkpoint not found")
	// ErrNotNewer is returned by Put for a version not above every stored one.
	ErrNotNewer = errors.New("checkpoint version is not newer than the stored ones")
	// ErrLocked is returned by Open when another process holds the file.
	ErrLocked = errors.New("checkpoint store is locked by another process")
	// ErrDamaged is returned (wrapped, with the reason) when the bbolt file
	// itself is damaged: by Open when nothing in it could be salvaged, and
	// by every call on a Store whose file was found damaged while open.
	ErrDamaged = errors.New("checkpoint store damaged")
)

var (
	bucketCheckpoints = []byte("checkpoints")
	bucketPins        = []byte("pins")
	bucketMeta        = []byte("meta")
	keyID             = []byte("id")   // the store's identity, 32 hex digits
	keyFloor          = []byte("next") // the lowest version Put accepts, set by a salvage
)

// Options configure a Store.
type Options struct {
	// Keep is how many of the newest checkpoints Put retains, besides
	// pinned ones; 0 keeps all. Put ignores it when Retention is set.
	Keep int
	// Retention, when set, is the policy Put applies instead of Keep:
	// checkpoints kept by their created-at (Retention.Drop), at least the
	// newest Retention.Min, the pinned ones and the newest. A salvage
	// applies only Keep (0: it keeps all that verify); the next Put
	// applies Retention.
	Retention *Retention
	// LockTimeout is how long Open waits for a file another process holds
	// before failing with ErrLocked (default 1 s).
	LockTimeout time.Duration
	// ReadOnly opens the file for reading only (shared lock).
	ReadOnly bool
	// SetAsideDamaged makes Open of a damaged file move it aside and start
	// an empty store in its place instead of salvaging its checkpoints: for
	// a store that is only a cache of checkpoints kept elsewhere.
	SetAsideDamaged bool
	// Logger receives a warning for every corrupt entry found and for a
	// damaged file set aside; nil discards.
	Logger *slog.Logger
}

// Store is a bbolt file of versioned checkpoints. Keys are big-endian
// versions, so cursors run in version order; values are Encode's frames.
// A Store is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger
	id   string

	mu     sync.Mutex
	broken error // set when bbolt panicked on the file: every later call returns it
}

// Open opens (creating if needed, unless read-only) the store at path.
//
// Open checks the file (bbolt's consistency check, with every page of the
// tree read) and never panics on a damaged one. A damaged file opened
// writable is salvaged: every checkpoint that still verifies is copied
// into a fresh file that takes its place, the damaged one stays beside it
// as path.damaged-<UTC time>, and one warning says what was kept. When no
// checkpoint verifies, or the store is read-only, Open returns an error
// wrapping ErrDamaged and leaves the file alone. With SetAsideDamaged the
// damaged file is moved aside and an empty store opened instead.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Keep < 0 {
		return nil, fmt.Errorf("open checkpoint store: keep %d is negative", opts.Keep)
	}
	if opts.Retention != nil {
		if err := opts.Retention.Validate(); err != nil {
			return nil, fmt.Errorf("open checkpoint store: %w", err)
		}
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open checkpoint store: %w", err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := open(path, opts, log)
	switch {
	case err == nil:
		return s, nil
	case !errors.Is(err, ErrDamaged):
		return nil, fmt.Errorf("open checkpoint store %s: %w", path, err)
	case opts.ReadOnly:
		return nil, fmt.Errorf("open checkpoint store %s: %w: open it writable to salvage it, move it aside or restore a backup", path, err)
	case opts.SetAsideDamaged:
		return setAside(path, opts, log, err)
	}
	return salvage(path, opts, log, err)
}

// open opens and checks the file; a damaged one is an error wrapping
// ErrDamaged.
func open(path string, opts Options, log *slog.Logger) (*Store, error) {
	var db *bolt.DB
	// PreLoadFreelist: read the freelist here, under guard, and not in the
	// goroutine of bbolt's Check.
	bo := &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly, PreLoadFreelist: true}
	err := guard(func() (err error) {
		db, err = bolt.Open(path, 0o644, bo)
		return err
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w (waited %v)", ErrLocked, opts.LockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch),
		err != nil && strings.HasPrefix(err.Error(), "file size too small"):
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	case err != nil:
		return nil, err
	}
	s := &Store{db: db, opts: opts, log: log}
	if err := s.check(); err != nil {
		s.broken = err
		s.Close()
		return nil, err
	}
	if opts.ReadOnly {
		err = s.view(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketMeta); b != nil {
				s.id = string(b.Get(keyID))
			}
			return nil
		})
	} else {
		err = s.update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketCheckpoints, bucketPins} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			m, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			if id := m.Get(keyID); id != nil {
				s.id = string(id)
				return nil
			}
			s.id = newID()
			return m.Put(keyID, []byte(s.id))
		})
		if errors.Is(err, berrors.ErrIncompatibleValue) { // a bucket's name holds a plain value
			err = fmt.Errorf("%w: %w", ErrDamaged, err)
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// guard runs f, turning a panic of bbolt, or a memory fault in its mmap
// (a damaged or truncated file), into an error wrapping ErrDamaged.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked: %s", ErrDamaged, oneLine(fmt.Sprint(r)))
		}
	}()
	return f()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// check reads the file and walks its tree in bounds (checkFile), then
// runs bbolt's consistency check: its free list, key order, and that
// every page is either reachable or free.
func (s *Store) check() error {
	b, err := os.ReadFile(s.db.Path())
	if err != nil {
		return err
	}
	if err := checkFile(b); err != nil {
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			var first error
			for err := range tx.Check() { // drain: Check's goroutine sends every error
				if first == nil {
					first = err
				}
			}
			if first != nil {
				return fmt.Errorf("%w: %s", ErrDamaged, oneLine(first.Error()))
			}
			return nil
		})
	})
}

// view and update run fn in a bbolt transaction under guard. A panic marks
// the store broken: bbolt's state after one is unknown, so every later
// call returns the same error, and the next Open salvages the file.
func (s *Store) view(fn func(*bolt.Tx) error) error   { return s.do(s.db.View, fn) }
func (s *Store) update(fn func(*bolt.Tx) error) error { return s.do(s.db.Update, fn) }

func (s *Store) do(tx func(func(*bolt.Tx) error) error, fn func(*bolt.Tx) error) error {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken != nil {
		return broken
	}
	err := guard(func() error { return tx(fn) })
	if errors.Is(err, ErrDamaged) {
		s.mu.Lock()
		if s.broken == nil {
			s.broken = fmt.Errorf("%w (no more reads or writes: reopen the store to salvage the file)", err)
		}
		err = s.broken
		s.mu.Unlock()
	}
	return err
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// ID returns the store's identity: 32 hex digits made when the store was
// first opened writable and kept by a salvage when readable. It is "" for
// a store opened read-only that never had one.
func (s *Store) ID() string { return s.id }

// Close closes the file, releasing its lock. On a store found damaged it
// waits at most LockTimeout for bbolt.
func (s *Store) Close() error {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken == nil {
		return s.db.Close()
	}
	done := make(chan error, 1)
	go func() { done <- guard(s.db.Close) }()
	select {
	case err := <-done:
		return err
	case <-time.After(s.opts.LockTimeout):
		return fmt.Errorf("close checkpoint store %s: bbolt did not release it within %v: %w", s.Path(), s.opts.LockTimeout, broken)
	}
}

// Path returns the store's file name.
func (s *Store) Path() string { return s.db.Path() }

func key(v uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], v)
	return k[:]
}

// Put stores c, which must have a version above every stored one (valid or
// not), then drops the unpinned checkpoints that Retention, or else Keep,
// lets go. A missing creation time is set to now. The write is atomic:
// after a crash the store holds the checkpoint whole or not at all.
func (s *Store) Put(c *reconv1.Checkpoint) error {
	b, err := frame(c)
	if err != nil {
		return fmt.Errorf("put checkpoint %d: %w", c.GetVersion(), err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCheckpoints)
		if k, _ := bk.Cursor().Last(); k != nil {
			if last := binary.BigEndian.Uint64(k); c.GetVersion() <= last {
				return fmt.Errorf("%w: version %d, newest stored %d", ErrNotNewer, c.GetVersion(), last)
			}
		}
		if f := floor(tx); c.GetVersion() < f {
			return fmt.Errorf("%w: version %d, versions continue from %d (the salvaged file held newer ones that did not verify)", ErrNotNewer, c.GetVersion(), f)
		}
		if err := bk.Put(key(c.GetVersion()), b); err != nil {
			return err
		}
		if r := s.opts.Retention; r != nil {
			return pruneByAge(tx, r, time.Now())
		}
		return prune(tx, s.opts.Keep)
	})
	if err != nil {
		return fmt.Errorf("put checkpoint %d: %w", c.GetVersion(), err)
	}
	return nil
}

// frame encodes c for the store, setting a missing creation time to now.
func frame(c *reconv1.Checkpoint) ([]byte, error) {
	if c.GetCreatedAt() == nil {
		c.CreatedAt = timestamppb.Now()
	}
	return Encode(c)
}

// Replace makes c the only checkpoint stored, dropping every other one,
// the pins and the version floor: for a scorer's cache that follows a
// coordinator which started over, or went back, with versions below the
// cached ones.
func (s *Store) Replace(c *reconv1.Checkpoint) error {
	b, err := frame(c)
	if err != nil {
		return fmt.Errorf("replace with checkpoint %d: %w", c.GetVersion(), err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketCheckpoints, bucketPins} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if m := tx.Bucket(bucketMeta); m != nil {
			if err := m.Delete(keyFloor); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketCheckpoints).Put(key(c.GetVersion()), b)
	})
	if err != nil {
		return fmt.Errorf("replace with checkpoint %d: %w", c.GetVersion(), err)
	}
	return nil
}

// floor is the lowest version Put accepts besides "above every stored
// one": a salvage sets it above the versions it could not keep.
func floor(tx *bolt.Tx) uint64 {
	if m := tx.Bucket(bucketMeta); m != nil {
		if v := m.Get(keyFloor); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
	}
	return 0
}

// prune deletes the unpinned checkpoints older than the newest keep.
func prune(tx *bolt.Tx, keep int) error {
	if keep == 0 {
		return nil
	}
	bk, pins := tx.Bucket(bucketCheckpoints), tx.Bucket(bucketPins)
	var drop [][]byte
	n := 0
	c := bk.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		n++
		if n > keep && pins.Get(k) == nil {
			drop = append(drop, append([]byte(nil), k...))
		}
	}
	for _, k := range drop {
		if err := bk.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the checkpoint of version v: ErrNotFound when there is none,
// an error wrapping ErrCorrupt when its bytes do not verify.
func (s *Store) Get(v uint64) (*reconv1.Checkpoint, error) {
	var c *reconv1.Checkpoint
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		if b == nil {
			return ErrNotFound
		}
		val := b.Get(key(v))
		if val == nil {
			return ErrNotFound
		}
		var err error
		c, err = Decode(val) // Decode copies what it keeps out of val
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", v, err)
	}
	return c, nil
}

// Latest returns the newest checkpoint that verifies, skipping (and
// logging) corrupt ones; ErrNotFound when there is none.
func (s *Store) Latest() (*reconv1.Checkpoint, error) {
	var c *reconv1.Checkpoint
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		if b == nil {
			return ErrNotFound
		}
		cur := b.Cursor()
		for k, v := cur.Last(); k != nil; k, v = cur.Prev() {
			got, err := Decode(v)
			if err != nil {
				s.log.Warn("skipping corrupt checkpoint", "store", s.Path(), "version", binary.BigEndian.Uint64(k), "err", err)
				continue
			}
			c = got
			return nil
		}
		return ErrNotFound
	})
	if err != nil {
		return nil, fmt.Errorf("latest checkpoint in %s: %w", s.Path(), err)
	}
	return c, nil
}

// Info describes one stored checkpoint.
type Info struct {
	Version   uint64    // the key
	Round     uint64    // training round recorded in it
	CreatedAt time.Time // when it was written (zero: not recorded)
	Threshold float64   // its alert threshold
	Loss      float64   // the training objective when it was written (0: unknown)
	Variant   string    // its model variant
	Pinned    bool      // exempt from retention
	Size      int       // encoded bytes
	Err       error     // non-nil (wrapping ErrCorrupt) when the entry does not verify
}

// List describes every stored checkpoint, oldest first, corrupt ones included.
func (s *Store) List() ([]Info, error) {
	var out []Info
	err := s.view(func(tx *bolt.Tx) error {
		b, pins := tx.Bucket(bucketCheckpoints), tx.Bucket(bucketPins)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			in := Info{Version: binary.BigEndian.Uint64(k), Size: len(v), Pinned: pins != nil && pins.Get(k) != nil}
			c, err := Decode(v)
			if err != nil {
				in.Err = err
			} else {
				in.Round, in.Threshold, in.Loss, in.Variant = c.GetRound(), c.GetThreshold(), c.GetLoss(), c.GetSpec().GetVariant()
				if ts := c.GetCreatedAt(); ts != nil {
					in.CreatedAt = ts.AsTime()
				}
			}
			out = append(out, in)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list checkpoints in %s: %w", s.Path(), err)
	}
	return out, nil
}

// Pin keeps version v through retention until Unpin. It fails with
// ErrNotFound when v is not stored.
func (s *Store) Pin(v uint64) error {
	err := s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketCheckpoints).Get(key(v)) == nil {
			return ErrNotFound
		}
		return tx.Bucket(bucketPins).Put(key(v), []byte{1})
	})
	if err != nil {
		return fmt.Errorf("pin checkpoint %d: %w", v, err)
	}
	return nil
}

// Unpin releases a pin; the checkpoint is dropped at the next Put if it is
// older than the newest Keep.
func (s *Store) Unpin(v uint64) error {
	err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPins).Delete(key(v)) })
	if err != nil {
		return fmt.Errorf("unpin checkpoint %d: %w", v, err)
	}
	return nil
}

// NextVersion returns one more than the newest stored version (1 for an
// empty store), or the version a salvage left it to continue from when
// that is higher.
func (s *Store) NextVersion() (uint64, error) {
	var next uint64 = 1
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketCheckpoints); b != nil {
			if k, _ := b.Cursor().Last(); k != nil {
				next = binary.BigEndian.Uint64(k) + 1
			}
		}
		next = max(next, floor(tx))
		return nil
	})
	return next, err
}

// setAside moves the damaged file at path aside and opens an empty store
// in its place (Options.SetAsideDamaged).
func setAside(path string, opts Options, log *slog.Logger, cause error) (*Store, error) {
	aside := asideName(path)
	if err := os.Rename(path, aside); err != nil {
		return nil, fmt.Errorf("open checkpoint store %s: %w; setting it aside: %v", path, cause, err) //nolint:errorlint // cause is what callers branch on, not the rename
	}
	syncDir(path)
	s, err := open(path, opts, log)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint store %s (the damaged one is at %s): %w", path, aside, err)
	}
	log.Warn("checkpoint store damaged: set it aside and started an empty one", "store", path, "damaged_copy", aside, "err", cause)
	return s, nil
}

// salvage copies every checkpoint of the damaged file at path that still
// verifies into a fresh file, keeps the damaged one as path.damaged-<time>
// (a hard link, so that path never goes missing) and puts the fresh file
// in its place.
func salvage(path string, opts Options, log *slog.Logger, cause error) (*Store, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("open checkpoint store %s: %w; "+format+": move it aside or restore a backup", append([]any{path, cause}, a...)...)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fail("reading it to salvage: %v", err)
	}
	r := scan(b)
	if len(r.frames) == 0 {
		return nil, fail("no checkpoint in it verifies")
	}
	id, idNote := r.id, "kept"
	if id == "" {
		id, idNote = newID(), "new (the old one is unreadable)"
	}
	tmp := path + ".salvage"
	kept, newest, next, err := writeSalvaged(tmp, opts, r, id)
	if err != nil {
		os.Remove(tmp)
		return nil, fail("writing the salvaged checkpoints to %s: %v", tmp, err)
	}
	aside := asideName(path)
	if err := os.Link(path, aside); err != nil {
		if err := os.Rename(path, aside); err != nil {
			os.Remove(tmp)
			return nil, fail("setting it aside: %v", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("open checkpoint store %s: %w; the salvaged checkpoints are in %s, the damaged file in %s: %v", path, cause, tmp, aside, err) //nolint:errorlint // cause is what callers branch on, not the rename
	}
	syncDir(path)
	s, err := open(path, opts, log)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint store %s (salvaged; the damaged one is at %s): %w", path, aside, err)
	}
	log.Warn("checkpoint store damaged: resuming from the checkpoints that still verify, copied into a fresh file",
		"store", path, "kept", kept, "newest", newest, "next_version", next, "damaged_copy", aside, "id", idNote, "err", cause)
	return s, nil
}

// writeSalvaged writes r to a new store at path: its checkpoints (retention
// applied), the pins of those kept, the id, and a version floor above any
// newer entry that did not verify. It returns how many checkpoints it kept,
// the newest and the next version.
func writeSalvaged(path string, opts Options, r *salvaged, id string) (kept int, newest, next uint64, err error) {
	os.Remove(path) // a salvage that stopped half way
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return 0, 0, 0, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket(bucketCheckpoints)
		if err != nil {
			return err
		}
		pins, err := tx.CreateBucket(bucketPins)
		if err != nil {
			return err
		}
		m, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for v, f := range r.frames {
			if err := bk.Put(key(v), f); err != nil {
				return err
			}
			newest = max(newest, v)
		}
		for _, k := range r.pins {
			if bk.Get(k) != nil {
				if err := pins.Put(k, []byte{1}); err != nil {
					return err
				}
			}
		}
		if err := m.Put(keyID, []byte(id)); err != nil {
			return err
		}
		next = newest + 1
		// A newer entry that did not verify still used its version
		// (versions only grow), unless it is far off: a damaged key.
		if r.maxSeen > newest && r.maxSeen-newest <= 64 {
			next = r.maxSeen + 1
			if err := m.Put(keyFloor, key(next)); err != nil {
				return err
			}
		}
		if err := prune(tx, opts.Keep); err != nil {
			return err
		}
		kept = 0
		return bk.ForEach(func(_, _ []byte) error { kept++; return nil })
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return kept, newest, next, err
}

// asideName is path.damaged-<UTC time>, with a counter after it if that
// name is taken.
func asideName(path string) string {
	name := path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
	for i, n := 1, name; ; i++ {
		if _, err := os.Lstat(n); errors.Is(err, os.ErrNotExist) {
			return n
		}
		n = fmt.Sprintf("%s-%d", name, i)
	}
}

// syncDir makes the renames in path's directory durable, as far as it can.
func syncDir(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// The layout of a bbolt file (go.etcd.io/bbolt/internal/common, in the
// machine's byte order), read here without bbolt to salvage a damaged
// file: bbolt trusts its pages and panics on bad ones.
const (
	pageHeaderLen = 16 // id uint64, flags uint16, count uint16, overflow uint32
	elemLen       = 16 // leaf: flags, pos, ksize, vsize uint32; branch: pos, ksize uint32, pgid uint64
	flagBranch    = 0x01
	flagLeaf      = 0x02
	elemBucket    = 0x01       // a leaf element that is a nested bucket
	boltMagic     = 0xED0CDAED // meta: magic, version, page size, flags uint32,
	boltVersion   = 2          // root bucket (pgid, sequence uint64), freelist, pgid, txid, checksum uint64
)

var ne = binary.NativeEndian

// salvaged is what scan found in a damaged file.
type salvaged struct {
	frames  map[uint64][]byte    // every version that verifies
	created map[uint64]time.Time // of each frame kept: of two that verify, the later is kept
	maxSeen uint64               // the newest version of any entry framed as a checkpoint
	id      string               // the store's id, read from the live root; "" if unreadable
	pins    [][]byte             // the pinned keys, read from the live root
}

// scan looks through all of b for checkpoints that verify, and through
// its leaf pages for the versions of entries that do not. Freed pages are
// read too, so a checkpoint that retention had dropped can come back (the
// next Put drops it again). The id and the pins are read from the root
// bucket of the newest valid meta page only, so that stale copies do not
// count.
func scan(b []byte) *salvaged {
	r := &salvaged{frames: map[uint64][]byte{}, created: map[uint64]time.Time{}}
	m, ok := liveMeta(b)
	ps := m.ps
	r.findFrames(b)
	for off := 0; off+pageHeaderLen <= len(b); off += ps {
		if p := pageAt(b, ps, uint64(off/ps), flagLeaf); p != nil {
			r.leaf(p, 0)
		}
	}
	if !ok {
		return r
	}
	if p := pageAt(b, ps, m.root, flagLeaf); p != nil {
		leafElems(p, func(flags uint32, k, v []byte) {
			if flags&elemBucket == 0 {
				return
			}
			switch {
			case bytes.Equal(k, bucketMeta):
				bucketKVs(b, ps, v, 0, func(k, v []byte) {
					if bytes.Equal(k, keyID) && len(v) == 32 {
						if _, err := hex.DecodeString(string(v)); err == nil {
							r.id = string(v)
						}
					}
				})
			case bytes.Equal(k, bucketPins):
				bucketKVs(b, ps, v, 0, func(k, _ []byte) { r.pins = append(r.pins, bytes.Clone(k)) })
			}
		})
	}
	return r
}

// leaf notes the newest version keyed in the leaf page p, or in the
// buckets inlined in it, whose entry is framed as a checkpoint, verifying
// or not.
func (r *salvaged) leaf(p []byte, depth int) {
	leafElems(p, func(flags uint32, k, v []byte) {
		if flags&elemBucket != 0 {
			if depth < 4 && len(v) >= pageHeaderLen+pageHeaderLen && ne.Uint64(v) == 0 { // root 0: inline
				r.leaf(v[pageHeaderLen:], depth+1)
			}
			return
		}
		if len(k) == 8 && len(v) >= headerLen && [4]byte(v[:4]) == magic {
			r.maxSeen = max(r.maxSeen, binary.BigEndian.Uint64(k))
		}
	})
}

// findFrames adds every checkpoint frame in b that verifies, wherever it
// lies: in a leaf page, in the overflow pages of a leaf whose header is
// gone, in a freed page. A frame does not carry its length, so its end is
// looked for at each protobuf field boundary, where the running checksum
// must match the stored one (and Decode then verifies the whole).
func (r *salvaged) findFrames(b []byte) {
	for i := 0; i+headerLen <= len(b); {
		j := bytes.Index(b[i:], magic[:])
		if j < 0 {
			return
		}
		at := i + j
		i = at + 1
		if at+headerLen > len(b) {
			return
		}
		want := binary.BigEndian.Uint32(b[at+4:])
		payload := b[at+headerLen:]
		var sum uint32
		for n := 0; n < len(payload); {
			_, _, l := protowire.ConsumeField(payload[n:])
			if l < 0 {
				break
			}
			sum = crc32.Update(sum, castagnoli, payload[n:n+l])
			n += l
			if sum != want {
				continue
			}
			if c, err := Decode(b[at : at+headerLen+n]); err == nil {
				r.add(c, b[at:at+headerLen+n])
				break
			}
		}
	}
}

// add keeps frame f of c; of two frames of one version (a write that was
// never committed, then the one that was), the later one.
func (r *salvaged) add(c *reconv1.Checkpoint, f []byte) {
	v, t := c.GetVersion(), c.GetCreatedAt().AsTime()
	if _, dup := r.frames[v]; dup && !t.After(r.created[v]) {
		return
	}
	r.frames[v], r.created[v] = bytes.Clone(f), t
}

// pageAt returns page id of b with its overflow, if its header names it
// and has the given flags; nil otherwise.
func pageAt(b []byte, ps int, id uint64, flags uint16) []byte {
	off := id * uint64(ps)
	if id >= uint64(len(b)/ps) || off+pageHeaderLen > uint64(len(b)) {
		return nil
	}
	p := b[off:]
	if ne.Uint64(p) != id || ne.Uint16(p[8:]) != flags {
		return nil
	}
	end := (uint64(ne.Uint32(p[12:])) + 1) * uint64(ps)
	return p[:min(end, uint64(len(p)))]
}

// leafElems calls fn with each element of the leaf page p whose key and
// value lie inside p.
func leafElems(p []byte, fn func(flags uint32, k, v []byte)) {
	if len(p) < pageHeaderLen {
		return
	}
	for i := range int(ne.Uint16(p[10:])) {
		e := pageHeaderLen + i*elemLen
		if e+elemLen > len(p) {
			return
		}
		flags, pos, ks, vs := ne.Uint32(p[e:]), ne.Uint32(p[e+4:]), ne.Uint32(p[e+8:]), ne.Uint32(p[e+12:])
		start := uint64(e) + uint64(pos)
		end := start + uint64(ks) + uint64(vs)
		if end > uint64(len(p)) {
			continue
		}
		fn(flags, p[start:start+uint64(ks)], p[start+uint64(ks):end])
	}
}

// bucketKVs calls fn with each key and value of the bucket whose header
// (root pgid, sequence, then the page when inline) is v.
func bucketKVs(b []byte, ps int, v []byte, depth int, fn func(k, v []byte)) {
	if len(v) < pageHeaderLen || depth > 4 {
		return
	}
	leaf := func(p []byte) {
		leafElems(p, func(flags uint32, k, v []byte) {
			if flags&elemBucket == 0 {
				fn(k, v)
			}
		})
	}
	root := ne.Uint64(v)
	if root == 0 {
		leaf(v[pageHeaderLen:])
		return
	}
	var walk func(id uint64, depth int)
	walk = func(id uint64, depth int) {
		if p := pageAt(b, ps, id, flagLeaf); p != nil {
			leaf(p)
			return
		}
		p := pageAt(b, ps, id, flagBranch)
		if p == nil || depth > 4 {
			return
		}
		for i := range int(ne.Uint16(p[10:])) {
			if e := pageHeaderLen + i*elemLen; e+elemLen <= len(p) {
				walk(ne.Uint64(p[e+8:]), depth+1)
			}
		}
	}
	walk(root, depth)
}

// boltMeta is the part of a bbolt meta page that salvage and checkFile use.
type boltMeta struct {
	ps                  int    // page size
	root, freelist, hwm uint64 // root bucket page, freelist page, high water mark
}

// liveMeta returns the valid meta page with the highest transaction id,
// the one bbolt uses; ok is false, and the page size the system's
// (bbolt's default), when neither meta page is valid.
func liveMeta(b []byte) (live boltMeta, ok bool) {
	var txid uint64
	try := func(off int) {
		if off < 0 || off+pageHeaderLen+64 > len(b) {
			return
		}
		m := b[off+pageHeaderLen : off+pageHeaderLen+64]
		h := fnv.New64a()
		h.Write(m[:56])
		size := int(ne.Uint32(m[8:]))
		if ne.Uint32(m) != boltMagic || ne.Uint32(m[4:]) != boltVersion || ne.Uint64(m[56:]) != h.Sum64() ||
			size < 512 || size > 1<<24 || size&(size-1) != 0 {
			return
		}
		if t := ne.Uint64(m[48:]); !ok || t > txid {
			live = boltMeta{ps: size, root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), hwm: ne.Uint64(m[40:])}
			txid, ok = t, true
		}
	}
	try(0)
	if ok {
		try(live.ps)
	} else {
		for i := 0; i <= 14; i++ {
			try(1024 << i)
		}
	}
	if !ok {
		live.ps = os.Getpagesize()
	}
	return live, ok
}

// checkFile walks the tree of the bbolt file b from its live root, as
// bbolt's Check will, and fails unless every page it reaches, and every
// key and value on those pages, lies inside the file and below the high
// water mark. Check runs in a goroutine of its own, where a read outside
// bbolt's mmap would be a fatal fault that no recover catches; after
// checkFile it reads nothing out of bounds.
func checkFile(b []byte) error {
	m, ok := liveMeta(b)
	if !ok {
		return errors.New("no valid meta page")
	}
	ps := uint64(m.ps)
	pages := uint64(len(b)) / ps
	if m.hwm > pages {
		return fmt.Errorf("the file is %d bytes, its pages reach %d (truncated?)", len(b), m.hwm*ps)
	}
	page := func(id uint64, flags uint16) ([]byte, error) {
		if id < 2 || id >= m.hwm {
			return nil, fmt.Errorf("page %d: outside [2, %d)", id, m.hwm)
		}
		p := b[id*ps:]
		if got := ne.Uint64(p); got != id {
			return nil, fmt.Errorf("page %d: header says page %d", id, got)
		}
		if f := ne.Uint16(p[8:]); f&flags == 0 {
			return nil, fmt.Errorf("page %d: flags %#x, want %#x", id, f, flags)
		}
		n := uint64(ne.Uint32(p[12:])) + 1
		if id+n > m.hwm {
			return nil, fmt.Errorf("page %d: %d overflow pages run past the high water mark %d", id, n-1, m.hwm)
		}
		return p[:n*ps], nil
	}
	if m.freelist != 1<<64-1 {
		p, err := page(m.freelist, 0x10)
		if err != nil {
			return fmt.Errorf("freelist: %w", err)
		}
		n, start := uint64(ne.Uint16(p[10:])), uint64(pageHeaderLen)
		if n == 0xFFFF {
			n, start = ne.Uint64(p[pageHeaderLen:]), pageHeaderLen+8
		}
		if n > uint64(len(p)) || start+8*n > uint64(len(p)) {
			return fmt.Errorf("freelist page %d: %d ids do not fit", m.freelist, n)
		}
	}
	seen := map[uint64]bool{}
	var tree func(id uint64, depth int) error
	// elems checks the elements of the leaf or branch page p (inline when
	// id is 0) and descends into the pages and buckets they name.
	var elems func(p []byte, id uint64, depth int) error
	elems = func(p []byte, id uint64, depth int) error {
		if len(p) < pageHeaderLen || depth > 64 {
			return fmt.Errorf("page %d: too short or too deep", id)
		}
		flags, n := ne.Uint16(p[8:]), uint64(ne.Uint16(p[10:]))
		if flags != flagBranch && flags != flagLeaf {
			return fmt.Errorf("page %d: flags %#x, not a leaf or branch page", id, flags)
		}
		if pageHeaderLen+n*elemLen > uint64(len(p)) {
			return fmt.Errorf("page %d: %d elements do not fit", id, n)
		}
		for i := range n {
			e := pageHeaderLen + i*elemLen
			if flags == flagBranch {
				pos, ks := uint64(ne.Uint32(p[e:])), uint64(ne.Uint32(p[e+4:]))
				if e+pos+ks > uint64(len(p)) {
					return fmt.Errorf("page %d: branch element %d runs past the page", id, i)
				}
				if err := tree(ne.Uint64(p[e+8:]), depth+1); err != nil {
					return err
				}
				continue
			}
			ef, pos, ks, vs := ne.Uint32(p[e:]), uint64(ne.Uint32(p[e+4:])), uint64(ne.Uint32(p[e+8:])), uint64(ne.Uint32(p[e+12:]))
			if e+pos+ks+vs > uint64(len(p)) {
				return fmt.Errorf("page %d: leaf element %d runs past the page", id, i)
			}
			if ef&elemBucket == 0 {
				continue
			}
			v := p[e+pos+ks : e+pos+ks+vs]
			if len(v) < pageHeaderLen {
				return fmt.Errorf("page %d: bucket element %d is %d bytes", id, i, len(v))
			}
			var err error
			if root := ne.Uint64(v); root == 0 {
				err = elems(v[pageHeaderLen:], 0, depth+1)
			} else {
				err = tree(root, depth+1)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	tree = func(id uint64, depth int) error {
		if seen[id] {
			return fmt.Errorf("page %d: reached twice", id)
		}
		seen[id] = true
		p, err := page(id, flagBranch|flagLeaf)
		if err != nil {
			return err
		}
		return elems(p, id, depth)
	}
	return tree(m.root, 0)
}
