package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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
)

var (
	bucketCheckpoints = []byte("checkpoints")
	bucketPins        = []byte("pins")
)

// Options configure a Store.
type Options struct {
	// Keep is how many of the newest checkpoints Put retains, besides
	// pinned ones; 0 keeps all.
	Keep int
	// LockTimeout is how long Open waits for a file another process holds
	// before failing with ErrLocked (default 1 s).
	LockTimeout time.Duration
	// ReadOnly opens the file for reading only (shared lock).
	ReadOnly bool
	// Logger receives a warning for every corrupt entry found; nil discards.
	Logger *slog.Logger
}

// Store is a bbolt file of versioned checkpoints. Keys are big-endian
// versions, so cursors run in version order; values are Encode's frames.
// A Store is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger
}

// Open opens (creating if needed, unless read-only) the store at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Keep < 0 {
		return nil, fmt.Errorf("open checkpoint store: keep %d is negative", opts.Keep)
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open checkpoint store: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open checkpoint store %s: %w (waited %v)", path, ErrLocked, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open checkpoint store %s: %w", path, err)
	}
	if !opts.ReadOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(bucketCheckpoints); err != nil {
				return err
			}
			_, err := tx.CreateBucketIfNotExists(bucketPins)
			return err
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open checkpoint store %s: %w", path, err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Store{db: db, opts: opts, log: log}, nil
}

// Close closes the file, releasing its lock.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the store's file name.
func (s *Store) Path() string { return s.db.Path() }

func key(v uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], v)
	return k[:]
}

// Put stores c, which must have a version above every stored one (valid or
// not), then drops the oldest unpinned checkpoints beyond Keep. A missing
// creation time is set to now. The write is atomic: after a crash the store
// holds the checkpoint whole or not at all.
func (s *Store) Put(c *reconv1.Checkpoint) error {
	if c.GetCreatedAt() == nil {
		c.CreatedAt = timestamppb.Now()
	}
	b, err := Encode(c)
	if err != nil {
		return fmt.Errorf("put checkpoint %d: %w", c.GetVersion(), err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCheckpoints)
		if k, _ := bk.Cursor().Last(); k != nil {
			if last := binary.BigEndian.Uint64(k); c.GetVersion() <= last {
				return fmt.Errorf("%w: version %d, newest stored %d", ErrNotNewer, c.GetVersion(), last)
			}
		}
		if err := bk.Put(key(c.GetVersion()), b); err != nil {
			return err
		}
		return s.prune(tx)
	})
	if err != nil {
		return fmt.Errorf("put checkpoint %d: %w", c.GetVersion(), err)
	}
	return nil
}

// prune deletes the unpinned checkpoints older than the newest Keep.
func (s *Store) prune(tx *bolt.Tx) error {
	if s.opts.Keep == 0 {
		return nil
	}
	bk, pins := tx.Bucket(bucketCheckpoints), tx.Bucket(bucketPins)
	var drop [][]byte
	n := 0
	c := bk.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		n++
		if n > s.opts.Keep && pins.Get(k) == nil {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	CreatedAt time.Time // when it was written
	Threshold float64   // its alert threshold
	Variant   string    // its model variant
	Pinned    bool      // exempt from retention
	Size      int       // encoded bytes
	Err       error     // non-nil (wrapping ErrCorrupt) when the entry does not verify
}

// List describes every stored checkpoint, oldest first, corrupt ones included.
func (s *Store) List() ([]Info, error) {
	var out []Info
	err := s.db.View(func(tx *bolt.Tx) error {
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
				in.Round, in.Threshold, in.Variant = c.GetRound(), c.GetThreshold(), c.GetSpec().GetVariant()
				in.CreatedAt = c.GetCreatedAt().AsTime()
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
	err := s.db.Update(func(tx *bolt.Tx) error {
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
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPins).Delete(key(v)) })
	if err != nil {
		return fmt.Errorf("unpin checkpoint %d: %w", v, err)
	}
	return nil
}

// NextVersion returns one more than the newest stored version (1 for an
// empty store).
func (s *Store) NextVersion() (uint64, error) {
	var next uint64 = 1
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketCheckpoints); b != nil {
			if k, _ := b.Cursor().Last(); k != nil {
				next = binary.BigEndian.Uint64(k) + 1
			}
		}
		return nil
	})
	return next, err
}
