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
// ErrLocked instead of hanging.
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
