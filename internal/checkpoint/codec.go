package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// ErrCorrupt is returned (wrapped, with the reason) when stored bytes are
// not a valid checkpoint: a bad frame or checksum, undecodable protobuf, or
// contents that do not describe a usable model.
var ErrCorrupt = errors.New("checkpoint corrupt")

// The frame of an encoded checkpoint: magic, CRC-32C of the payload
// (big-endian), then the protobuf payload.
var magic = [4]byte{'R', 'C', 'K', '1'}

const headerLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode validates c and returns its framed, checksummed encoding.
func Encode(c *reconv1.Checkpoint) ([]byte, error) {
	if err := Validate(c); err != nil {
		return nil, err
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	b := make([]byte, headerLen, headerLen+len(payload))
	copy(b, magic[:])
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(payload, castagnoli))
	return append(b, payload...), nil
}

// Decode verifies the frame and checksum of b, decodes the checkpoint and
// validates it. Every failure wraps ErrCorrupt and says what is wrong. b is
// not retained.
func Decode(b []byte) (*reconv1.Checkpoint, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header (truncated?)", ErrCorrupt, len(b), headerLen)
	}
	if [4]byte(b[:4]) != magic {
		return nil, fmt.Errorf("%w: bad magic %q, want %q", ErrCorrupt, b[:4], magic[:])
	}
	payload := b[headerLen:]
	if got, want := crc32.Checksum(payload, castagnoli), binary.BigEndian.Uint32(b[4:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, stored %08x (damaged or truncated)", ErrCorrupt, got, want)
	}
	c := new(reconv1.Checkpoint)
	if err := proto.Unmarshal(payload, c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := Validate(c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return c, nil
}

// Validate reports whether c describes a usable model: a valid spec, a
// parameter vector of the right length, and finite, consistently sized
// normalizer, optimizer and training state.
func Validate(c *reconv1.Checkpoint) error {
	if c == nil {
		return errors.New("checkpoint is nil")
	}
	if c.GetVersion() == 0 {
		return errors.New("checkpoint version 0: versions start at 1")
	}
	spec, err := SpecFromProto(c.GetSpec())
	if err != nil {
		return err
	}
	// Compare sizes before building anything: the spec is outside input.
	if len(c.GetParams()) != spec.NumParams() {
		return fmt.Errorf("%d parameters, the spec needs %d", len(c.GetParams()), spec.NumParams())
	}
	m, err := ae.New(spec)
	if err != nil {
		return err
	}
	if err := allFinite("parameter", c.GetParams()); err != nil {
		return err
	}
	if n := c.GetNormalizer(); n != nil {
		if len(n.GetMean()) != spec.Input {
			return fmt.Errorf("normalizer has %d features, the model %d", len(n.GetMean()), spec.Input)
		}
		if _, err := ae.RestoreNormalizer(n.GetCount(), n.GetMean(), n.GetM2()); err != nil {
			return err
		}
	}
	if w := c.GetWhitening(); len(w) > 0 {
		if len(w) != spec.Input*spec.Input {
			return fmt.Errorf("whitening has %d values, the model's width %d needs %d", len(w), spec.Input, spec.Input*spec.Input)
		}
		if _, err := ae.RestoreWhitening(spec.Input, w); err != nil {
			return err
		}
	}
	if o := c.GetOptimizer(); o != nil {
		if _, err := optimizerFromProto(o, m.NumParams()); err != nil {
			return err
		}
	}
	if err := m.SetState(stateFromProto(c.GetState())); err != nil {
		return err
	}
	th, q := c.GetThreshold(), c.GetQuantile()
	if math.IsNaN(th) || math.IsInf(th, 0) || th < 0 {
		return fmt.Errorf("threshold %v: must be finite and not negative", th)
	}
	if math.IsNaN(q) || q < 0 || q >= 1 {
		return fmt.Errorf("quantile %v: must be in [0, 1)", q)
	}
	if l := c.GetLoss(); math.IsNaN(l) || math.IsInf(l, 0) {
		return fmt.Errorf("loss %v: must be finite", l)
	}
	if ts := c.GetCreatedAt(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return fmt.Errorf("created-at: %w", err)
		}
	}
	return nil
}

func allFinite(what string, s []float64) error {
	for i, v := range s {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s %d is %v", what, i, v)
		}
	}
	return nil
}
