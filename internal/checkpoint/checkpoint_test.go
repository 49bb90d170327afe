package checkpoint

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// sample returns a small trained-looking checkpoint of every part.
func sample(t testing.TB, version uint64, spec ae.Spec) *reconv1.Checkpoint {
	t.Helper()
	m, err := ae.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(version, 1))
	m.Init(rng)
	opt := ae.NewAdam(m.NumParams(), 0.01)
	norm := ae.NewNormalizer(spec.Input)
	x := make([]float64, 20*spec.Input)
	for i := range x {
		x[i] = rng.Float64()
	}
	for r := 0; r < 20; r++ {
		if err := norm.Observe(x[r*spec.Input : (r+1)*spec.Input]); err != nil {
			t.Fatal(err)
		}
	}
	tr := ae.NewTrainer(m, opt, rng)
	tr.Step(x)
	var names []string
	for i := 0; i < spec.Input; i++ {
		names = append(names, "f"+string(rune('a'+i)))
	}
	c := Build(m, opt, norm, names)
	c.Version, c.Threshold, c.Quantile, c.Round, c.Loss = version, 1.5, 0.995, version*10, 0.1*float64(version)
	c.Metadata = map[string]string{"source": "test"}
	return c
}

var specs = []ae.Spec{
	{Input: 5, Hidden: []int{4}, Code: 2, Activation: ae.ReLU},
	{Input: 4, Code: 3, CodeActivation: ae.Sigmoid, Variant: ae.SparseKL, Tied: true},
	{Input: 6, Hidden: []int{5}, Code: 2, Activation: ae.Tanh, Variant: ae.Variational, Warmup: 10},
	{Input: 5, Code: 2, Variant: ae.Denoising, Noise: ae.MaskingNoise},
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for i, spec := range specs {
		c := sample(t, uint64(i+1), spec)
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, c) {
			t.Fatalf("%v: decoded checkpoint differs from the encoded one", spec.Variant)
		}
		l, err := Load(got)
		if err != nil {
			t.Fatal(err)
		}
		if s := l.Model.Spec(); s.Variant != spec.Variant || s.Tied != spec.Tied || s.Code != spec.Code {
			t.Errorf("loaded spec %+v, want %+v", s, spec)
		}
		if l.Model.State().Steps != 1 || l.Optimizer.(*ae.Adam).Steps() != 1 || l.Normalizer.Count() != 20 {
			t.Errorf("loaded state: steps %d, adam steps %d, normalizer count %d", l.Model.State().Steps, l.Optimizer.(*ae.Adam).Steps(), l.Normalizer.Count())
		}
	}
}

// TestDecodeDetectsEveryFlippedByte flips each byte of an encoded
// checkpoint in turn: every one must be reported as corrupt.
func TestDecodeDetectsEveryFlippedByte(t *testing.T) {
	b, err := Encode(sample(t, 3, specs[0]))
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		d := append([]byte(nil), b...)
		d[i] ^= 0x5a
		if _, err := Decode(d); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d of %d flipped: Decode returned %v, want ErrCorrupt", i, len(b), err)
		}
	}
	for _, n := range []int{0, 3, 8, len(b) / 2, len(b) - 1} {
		if _, err := Decode(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: Decode returned %v, want ErrCorrupt", n, err)
		}
	}
}

func TestValidateRejectsInconsistentCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *reconv1.Checkpoint)
		want   string
	}{
		{"version 0", func(c *reconv1.Checkpoint) { c.Version = 0 }, "version 0"},
		{"no spec", func(c *reconv1.Checkpoint) { c.Spec = nil }, "no model spec"},
		{"short params", func(c *reconv1.Checkpoint) { c.Params = c.Params[1:] }, "parameters, the spec needs"},
		{"NaN param", func(c *reconv1.Checkpoint) { c.Params[3] = math.NaN() }, "parameter 3 is NaN"},
		{"unknown activation", func(c *reconv1.Checkpoint) { c.Spec.Activation = "swish" }, "unknown activation"},
		{"huge spec", func(c *reconv1.Checkpoint) {
			c.Spec.Input, c.Spec.Hidden, c.Spec.Features = 60000, []uint32{60000}, nil
		}, "at most"},
		{"too wide", func(c *reconv1.Checkpoint) { c.Spec.Input = 1 << 20 }, "must be in"},
		{"normalizer width", func(c *reconv1.Checkpoint) { c.Normalizer.Mean = c.Normalizer.Mean[1:] }, "normalizer has"},
		{"optimizer state", func(c *reconv1.Checkpoint) { c.Optimizer.State = c.Optimizer.State[1:] }, "optimizer state"},
		{"optimizer kind", func(c *reconv1.Checkpoint) { c.Optimizer.Kind = "lbfgs" }, "unknown optimizer"},
		{"adam beta1 = 1", func(c *reconv1.Checkpoint) { c.Optimizer.Beta1 = 1 }, "betas in [0,1)"},
		{"adam eps 0", func(c *reconv1.Checkpoint) { c.Optimizer.Eps = 0 }, "eps > 0"},
		{"optimizer lr 0", func(c *reconv1.Checkpoint) { c.Optimizer.Lr = 0 }, "learning rate"},
		{"negative threshold", func(c *reconv1.Checkpoint) { c.Threshold = -1 }, "threshold"},
		{"quantile 1", func(c *reconv1.Checkpoint) { c.Quantile = 1 }, "quantile"},
		{"NaN loss", func(c *reconv1.Checkpoint) { c.Loss = math.NaN() }, "loss NaN"},
		{"infinite loss", func(c *reconv1.Checkpoint) { c.Loss = math.Inf(1) }, "loss +Inf"},
		{"feature names", func(c *reconv1.Checkpoint) { c.Spec.Features = c.Spec.Features[1:] }, "names 4 features"},
		{"overcomplete", func(c *reconv1.Checkpoint) { c.Spec.Code = 7 }, "overcomplete"},
	} {
		c := sample(t, 1, specs[0])
		tc.mutate(c)
		err := Validate(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", tc.name, err, tc.want)
		}
		if _, err := Encode(c); err == nil {
			t.Errorf("%s: Encode accepted an invalid checkpoint", tc.name)
		}
	}
}

func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck.db")
	s, err := Open(path, Options{Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Latest(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Latest of an empty store: %v, want ErrNotFound", err)
	}
	if v, _ := s.NextVersion(); v != 1 {
		t.Fatalf("NextVersion of an empty store = %d", v)
	}
	for v := uint64(1); v <= 3; v++ {
		if err := s.Put(sample(t, v, specs[0])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(sample(t, 3, specs[0])); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("Put of an existing version: %v, want ErrNotNewer", err)
	}
	if err := s.Pin(1); err != nil {
		t.Fatal(err)
	}
	if err := s.Pin(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Pin(99) = %v, want ErrNotFound", err)
	}
	before := time.Now()
	for v := uint64(4); v <= 6; v++ {
		c := sample(t, v, specs[0])
		if v == 5 {
			c.Loss = 0 // an older writer: no loss recorded
		}
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var versions []uint64
	for _, in := range list {
		versions = append(versions, in.Version)
	}
	if len(versions) != 4 || versions[0] != 1 || versions[1] != 4 || versions[3] != 6 || !list[0].Pinned {
		t.Fatalf("after retention keep=3 with 1 pinned: %v (pinned %v)", versions, list[0].Pinned)
	}
	// Each entry describes its checkpoint: round, loss (0 where none was
	// recorded), variant and the write time Put set.
	for i, want := range []struct {
		round uint64
		loss  float64
	}{{10, 0.1}, {40, 0.4}, {50, 0}, {60, 0.6}} {
		in := list[i]
		if in.Round != want.round || math.Abs(in.Loss-want.loss) > 1e-12 || in.Variant != "plain" || in.Threshold != 1.5 ||
			in.CreatedAt.IsZero() || (in.Version > 3 && in.CreatedAt.Before(before)) || in.CreatedAt.After(time.Now()) {
			t.Errorf("List entry %d: %+v; want round %d, loss %v, variant plain, threshold 1.5, written in this test", i, in, want.round, want.loss)
		}
	}
	if _, err := s.Get(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a pruned version: %v, want ErrNotFound", err)
	}
	got, err := s.Get(5)
	if err != nil || got.GetVersion() != 5 || got.GetRound() != 50 {
		t.Fatalf("Get(5) = %v, %v", got.GetVersion(), err)
	}

	// Damage the newest entry on disk: Latest skips it, Get and List report it.
	corrupt(t, s, 6, func(b []byte) []byte { b[len(b)-3] ^= 1; return b })
	latest, err := s.Latest()
	if err != nil || latest.GetVersion() != 5 {
		t.Fatalf("Latest with version 6 corrupt = %v, %v; want version 5", latest.GetVersion(), err)
	}
	if _, err := s.Get(6); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a corrupt entry: %v, want ErrCorrupt", err)
	}
	list, _ = s.List()
	if last := list[len(list)-1]; last.Version != 6 || !errors.Is(last.Err, ErrCorrupt) {
		t.Fatalf("List does not report the corrupt entry: %+v", last)
	}
	// A truncated entry too.
	corrupt(t, s, 5, func(b []byte) []byte { return b[:len(b)/2] })
	if latest, err = s.Latest(); err != nil || latest.GetVersion() != 4 {
		t.Fatalf("Latest with 5 truncated and 6 corrupt = %v, %v; want version 4", latest.GetVersion(), err)
	}
	// Versions keep growing past corrupt entries.
	if err := s.Put(sample(t, 6, specs[0])); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("Put over a corrupt newest version: %v, want ErrNotNewer", err)
	}
	if v, _ := s.NextVersion(); v != 7 {
		t.Fatalf("NextVersion = %d, want 7", v)
	}
}

func corrupt(t *testing.T, s *Store, v uint64, f func([]byte) []byte) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		val := append([]byte(nil), b.Get(key(v))...)
		return b.Put(key(v), f(val))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.db"), Options{ReadOnly: true}); err == nil {
		t.Error("read-only Open of a missing file succeeded")
	}
}

func FuzzDecode(f *testing.F) {
	for i, spec := range specs {
		b, err := Encode(sample(f, uint64(i+1), spec))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("RCK1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes must load and score without panicking.
		l, err := Load(c)
		if err != nil {
			t.Fatalf("decoded checkpoint does not load: %v", err)
		}
		x := make([]float64, 2*l.Model.Spec().Input)
		s := make([]float64, 2)
		l.Model.Score(s, x)
	})
}

// Replace leaves the given checkpoint as the only one, whatever its
// version, and Put goes on above it.
func TestReplace(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "c.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := ae.Spec{Input: 4, Code: 2}
	for v := uint64(10); v <= 12; v++ {
		c := sample(t, v, spec)
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Pin(11); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(sample(t, 2, spec)); err != nil {
		t.Fatal(err)
	}
	infos, err := s.List()
	if err != nil || len(infos) != 1 || infos[0].Version != 2 {
		t.Fatalf("after Replace: %+v, %v; want version 2 alone", infos, err)
	}
	if err := s.Put(sample(t, 3, spec)); err != nil {
		t.Fatalf("Put above the replacement: %v", err)
	}
}

// TestSpecRoundTrip checks that every field of a spec survives the
// checkpoint's ModelSpec, the trimmed objective included: a trainer
// welcomed with the coordinator's spec trains the same objective.
func TestSpecRoundTrip(t *testing.T) {
	want := ae.Spec{Input: 7, Hidden: []int{5}, Code: 2, Activation: ae.Tanh, CodeActivation: ae.Tanh,
		Output: ae.Linear, Variant: ae.Denoising, Noise: ae.GaussianNoise, NoiseSigma: 0.2, Trim: 0.15}
	got, err := SpecFromProto(SpecToProto(want, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip gave %+v, want %+v", got, want)
	}
	bad := SpecToProto(want, nil)
	bad.Trim = 0.9
	if _, err := SpecFromProto(bad); err == nil {
		t.Fatal("a trim of 0.9 decoded without error")
	}
}
