// Package checkpoint stores versioned model checkpoints in a bbolt file and
// converts between checkpoints (proto/recon/v1) and live pkg/ae objects.
//
// A checkpoint is framed as "RCK1", a CRC-32C of the payload, and the
// deterministic protobuf encoding. Decode verifies the frame and checksum
// and then the contents (a valid spec, a parameter vector of the right
// length, finite values, consistent normalizer and optimizer state), so a
// damaged entry is an error wrapping ErrCorrupt, never a panic or a model
// that scores garbage. Sizes are checked before anything is allocated.
//
// The Store keeps one bucket of checkpoints keyed by big-endian version
// (cursors run in version order) and one of pinned versions. Put only
// accepts a version above every stored one, and retention keeps the newest
// Keep plus the pinned. Latest skips corrupt entries (logging each) and
// returns the newest valid one. bbolt takes an exclusive file lock, so a
// second process opening the same file fails after LockTimeout with
// ErrLocked instead of hanging. A bucket "meta" holds the store's ID, 16
// random bytes in hex made at the first writable Open.
//
// A damaged bbolt file never panics. bbolt trusts its pages and panics (or
// faults in its mmap) on a bad one, so Open first walks the file's tree
// itself, in bounds, then runs bbolt's Check; every bbolt call runs under
// recover with debug.SetPanicOnFault. Opened writable, a damaged file is
// salvaged: Open looks through all of its bytes for checkpoint frames that
// verify (a frame's checksum finds its end), writes them into a fresh file
// that takes the old one's place, keeps the damaged file beside it as
// path.damaged-<UTC time>, and logs one warning with how many checkpoints
// it kept, the newest version and where the damaged copy is. Versions go on
// growing past newer entries that did not verify. The ID is kept when the
// live root page is readable, else a new one is made (the warning says
// which). When no checkpoint verifies, Open returns an error wrapping
// ErrDamaged and leaves the file alone; so does a read-only Open. With
// Options.SetAsideDamaged (a cache) the damaged file is moved aside and an
// empty store opened. Damage found after Open, a panic or fault in bbolt,
// is an error wrapping ErrDamaged from that call and every later one: the
// next Open salvages.
//
// Caveats: a salvage reads freed pages too, so a checkpoint that retention
// had dropped can come back until the next Put; pins survive only when the
// live root page is readable. A panic inside bbolt.Open leaks that file
// handle (bbolt never returns it). Open reads the whole file once.
//
// Use:
//
//	s, err := checkpoint.Open("model.db", checkpoint.Options{Keep: 10})
//	c := checkpoint.Build(model, opt, norm, features)
//	c.Version, c.Threshold, c.Quantile = next, th, 0.995
//	err = s.Put(c)
//	latest, err := s.Latest()
//	l, err := checkpoint.Load(latest) // l.Model, l.Normalizer, l.Optimizer
package checkpoint
