package checkpoint

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// t0 is the fixed "now" of the retention tables: half past an hour, UTC.
var t0 = time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC)

// ago is an Info of version v created d before t0.
func ago(v uint64, d time.Duration) Info { return Info{Version: v, CreatedAt: t0.Add(-d)} }

func pinned(in Info) Info { in.Pinned = true; return in }

// everyTenMinutes is a checkpoint every 10 minutes for 10 days up to t0,
// version 1440 the newest (k = 1440 - version ten-minute steps before t0).
func everyTenMinutes() []Info {
	var infos []Info
	for k := 1439; k >= 0; k-- {
		infos = append(infos, ago(uint64(1440-k), time.Duration(k)*10*time.Minute))
	}
	return infos
}

// everyTenMinutesKept is what the default policy keeps of everyTenMinutes,
// as steps k before t0 (12:30): every one of the last 24 h (k 0-143), the
// :50 of every hour of the last 7 days (k = 4 + 6j below 1008, 168 h) and
// the 23:50 of each of the 10 days before today (k = 76 + 144d; the 30-day
// tier reaches past the oldest).
func everyTenMinutesKept() []uint64 {
	var ks []int
	for k := 0; k < 144; k++ {
		ks = append(ks, k)
	}
	for k := 4 + 6*24; k < 1008; k += 6 {
		ks = append(ks, k)
	}
	for d := 7; d <= 9; d++ { // the days within 7 days are kept by the hour
		ks = append(ks, 76+144*d)
	}
	var vs []uint64
	for _, k := range ks {
		vs = append(vs, uint64(1440-k))
	}
	return vs
}

func TestRetentionDrop(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	hourly := Retention{Hourly: 24 * time.Hour} // the hourly tier alone
	for _, tc := range []struct {
		name  string
		r     Retention
		infos []Info
		keep  []uint64 // the versions kept; every other one is dropped
	}{
		{"empty store", DefaultRetention(), nil, nil},
		{"all younger than All", DefaultRetention(),
			[]Info{ago(1, 59*time.Minute), ago(2, 30*time.Minute), ago(3, time.Minute), ago(4, 0)}, []uint64{1, 2, 3, 4}},
		{"newest of each clock hour within Hourly", hourly,
			// 10:20, 10:10 and 09:40; the newest is always kept.
			[]Info{ago(1, 2*time.Hour+50*time.Minute), ago(2, 2*time.Hour+20*time.Minute), ago(3, 2*time.Hour+10*time.Minute), ago(4, 0)},
			[]uint64{1, 3, 4}},
		{"hours are UTC hours, whatever the location", hourly,
			// 10:05 and 10:55 UTC are 15:35 and 16:25 in IST: one UTC hour.
			[]Info{{Version: 1, CreatedAt: time.Date(2026, 3, 10, 10, 5, 0, 0, time.UTC).In(ist)},
				{Version: 2, CreatedAt: time.Date(2026, 3, 10, 10, 55, 0, 0, time.UTC).In(ist)}, ago(3, 0)},
			[]uint64{2, 3}},
		{"the newest by created-at, not by version", hourly,
			[]Info{ago(1, 2*time.Hour+10*time.Minute), ago(2, 2*time.Hour+20*time.Minute), ago(3, 0)}, []uint64{1, 3}},
		{"same created-at: the higher version", hourly,
			[]Info{ago(1, 2*time.Hour+10*time.Minute), ago(2, 2*time.Hour+10*time.Minute), ago(3, 0)}, []uint64{2, 3}},
		{"an hour older than Hourly goes", hourly,
			[]Info{ago(1, 24*time.Hour), ago(2, 23*time.Hour+50*time.Minute), ago(3, 0)}, []uint64{2, 3}},
		{"newest of each UTC day within Daily", Retention{Hourly: 24 * time.Hour, Daily: 7 * 24 * time.Hour},
			// 9 Mar 06:30 and 05:30, 8 Mar 20:30, 2 Mar 12:30 (8 days: too old).
			[]Info{ago(1, 8*24*time.Hour), ago(2, 40*time.Hour), ago(3, 31*time.Hour), ago(4, 30*time.Hour), ago(5, 0)},
			[]uint64{2, 4, 5}},
		{"age exactly All is past the All tier", Retention{All: time.Hour},
			[]Info{ago(1, time.Hour), ago(2, time.Hour-time.Nanosecond), ago(3, 0)}, []uint64{2, 3}},
		{"the newest Min whatever their age", Retention{All: time.Hour, Min: 3},
			[]Info{ago(1, 400*time.Hour), ago(2, 300*time.Hour), ago(3, 200*time.Hour), ago(4, 100*time.Hour)}, []uint64{2, 3, 4}},
		{"pinned ones whatever their age", Retention{All: 24 * time.Hour, Hourly: 7 * 24 * time.Hour, Daily: 30 * 24 * time.Hour, Min: 3},
			[]Info{pinned(ago(1, 1000*time.Hour)), ago(2, 999*time.Hour), ago(3, 998*time.Hour), ago(4, 997*time.Hour), ago(5, 996*time.Hour)},
			[]uint64{1, 3, 4, 5}},
		{"the newest even with every tier off", Retention{},
			[]Info{ago(1, 100*time.Hour), ago(2, 50*time.Hour)}, []uint64{2}},
		{"the newest by version, not by created-at", Retention{},
			[]Info{ago(1, 0), ago(2, 50*time.Hour)}, []uint64{2}},
		{"created-at in the future is kept", Retention{},
			[]Info{ago(1, -time.Hour), ago(2, -time.Nanosecond), ago(3, 50*time.Hour), ago(4, 40*time.Hour)}, []uint64{1, 2, 4}},
		{"no created-at: by count only", Retention{All: 24 * time.Hour, Hourly: 7 * 24 * time.Hour, Min: 3},
			[]Info{{Version: 1}, {Version: 2}, {Version: 3}, {Version: 4}, {Version: 5}}, []uint64{3, 4, 5}},
		{"no created-at among timed ones", Retention{All: time.Hour, Min: 2},
			[]Info{{Version: 1}, ago(2, 10*time.Minute), {Version: 3}, ago(4, 5*time.Minute), ago(5, 0)}, []uint64{2, 4, 5}},
		{"any order in, ascending drops out", Retention{All: time.Hour},
			[]Info{ago(5, 0), ago(2, 5*time.Hour), ago(4, 10*time.Minute), ago(1, 6*time.Hour), ago(3, 4*time.Hour)}, []uint64{4, 5}},
		{"every ten minutes for ten days, default policy", DefaultRetention(), everyTenMinutes(), everyTenMinutesKept()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.infos)
			drop := tc.r.Drop(tc.infos, t0)
			if !slices.Equal(in, tc.infos) {
				t.Fatal("Drop modified its argument")
			}
			if !slices.IsSorted(drop) || len(slices.Compact(slices.Clone(drop))) != len(drop) {
				t.Fatalf("drop %v: not ascending and distinct", drop)
			}
			var kept []uint64
			for _, in := range tc.infos {
				if !slices.Contains(drop, in.Version) {
					kept = append(kept, in.Version)
				}
			}
			slices.Sort(kept)
			want := slices.Sorted(slices.Values(tc.keep))
			if !slices.Equal(kept, want) {
				t.Errorf("kept %v (%d), want %v (%d)", kept, len(kept), want, len(want))
			}
		})
	}
}

func TestRetentionValidate(t *testing.T) {
	for _, tc := range []struct {
		r  Retention
		ok bool
	}{
		{DefaultRetention(), true},
		{Retention{}, true},
		{Retention{All: -time.Second}, false},
		{Retention{Hourly: -time.Second}, false},
		{Retention{Daily: -time.Second}, false},
		{Retention{Min: -1}, false},
	} {
		if err := tc.r.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate = %v", tc.r, err)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "ck.db"), Options{Retention: &Retention{Min: -1}}); err == nil {
		t.Error("Open with a negative Retention.Min: no error")
	}
}

// TestCreatedAtFromFrame: createdAt reads what Decode reads, from the
// frame's bytes, and the zero time where there is none to read.
func TestCreatedAtFromFrame(t *testing.T) {
	when := time.Date(2026, 3, 10, 12, 30, 15, 123456789, time.UTC)
	c := sample(t, 1, specs[0])
	c.CreatedAt = timestamppb.New(when)
	framed := mustEncode(t, c)
	c.CreatedAt = nil
	untimed := mustEncode(t, c)
	// A second created_at field: protobuf merges it, later seconds win.
	later := protowire.AppendTag(slices.Clone(framed), 10, protowire.BytesType)
	later = protowire.AppendBytes(later, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(when.Unix()+60)))
	for _, tc := range []struct {
		name  string
		frame []byte
		want  time.Time
	}{
		{"created-at set", framed, when},
		{"no created-at", untimed, time.Time{}},
		{"a repeated field merges", later, when.Add(time.Minute)},
		{"truncated", framed[:len(framed)-3], time.Time{}},
		{"bad magic", append([]byte("RCK2"), framed[4:]...), time.Time{}},
		{"header only", framed[:headerLen], time.Time{}},
		{"empty", nil, time.Time{}},
	} {
		if got := createdAt(tc.frame); !got.Equal(tc.want) {
			t.Errorf("%s: createdAt = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func mustEncode(t testing.TB, c *reconv1.Checkpoint) []byte {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzCreatedAt: createdAt never panics on stored bytes, and where Decode
// accepts them it agrees with Decode.
func FuzzCreatedAt(f *testing.F) {
	c := sample(f, 1, specs[0])
	c.CreatedAt = timestamppb.New(t0)
	f.Add(mustEncode(f, c))
	c.CreatedAt = nil
	f.Add(mustEncode(f, c))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := createdAt(b)
		c, err := Decode(b)
		if err != nil {
			return
		}
		want := time.Time{}
		if c.GetCreatedAt() != nil {
			want = c.GetCreatedAt().AsTime()
		}
		if !got.Equal(want) {
			t.Fatalf("createdAt = %v, Decode's %v", got, want)
		}
	})
}

// TestPutWithRetention: Put with a Retention drops what Drop drops, by the
// created-at stored in each checkpoint, and keeps the pinned ones until
// they are unpinned.
func TestPutWithRetention(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ck.db"), Options{Retention: &Retention{All: time.Hour, Hourly: 24 * time.Hour, Min: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	hour := now.Truncate(time.Hour).Add(-5 * time.Hour) // an hour 4-5 h ago, whatever now is
	put := func(v uint64, at time.Time) {
		t.Helper()
		c := sample(t, v, specs[0])
		c.CreatedAt = timestamppb.New(at)
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() []uint64 {
		t.Helper()
		list, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		var vs []uint64
		for _, in := range list {
			vs = append(vs, in.Version)
		}
		return vs
	}
	put(1, now.Add(-72*time.Hour))
	if err := s.Pin(1); err != nil {
		t.Fatal(err)
	}
	put(2, now.Add(-71*time.Hour))    // older than Hourly: goes once past the newest 2
	put(3, hour.Add(10*time.Minute))  // not the newest of its hour: goes
	put(4, hour.Add(20*time.Minute))  // the newest of its hour: stays
	put(5, now.Add(-30*time.Minute))  // younger than All: stays
	put(6, now.Add(365*24*time.Hour)) // in the future: stays
	if got, want := stored(), []uint64{1, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if err := s.Unpin(1); err != nil {
		t.Fatal(err)
	}
	c := sample(t, 7, specs[0])
	c.CreatedAt = nil // Put sets it to now
	if err := s.Put(c); err != nil {
		t.Fatal(err)
	}
	if got, want := stored(), []uint64{4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("after unpinning 1: stored %v, want %v", got, want)
	}
	// A corrupt entry has no created-at to read: kept by count only.
	corrupt(t, s, 5, func(b []byte) []byte { return b[:len(b)/2] })
	put(8, now)
	put(9, now)
	if got, want := stored(), []uint64{4, 6, 7, 8, 9}; !slices.Equal(got, want) {
		t.Fatalf("with 5 corrupt: stored %v, want %v", got, want)
	}
}

// retentionStore writes a store of n checkpoints of bigSpec (about 23 KB
// each) created over the last 50 minutes, in one transaction, and returns
// its path and the next version.
func retentionStore(b *testing.B, n int) (string, uint64) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "ck.db")
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		b.Fatal(err)
	}
	c := sample(b, 1, bigSpec)
	now := time.Now()
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketCheckpoints)
		if err != nil {
			return err
		}
		for v := 1; v <= n; v++ {
			c.Version = uint64(v)
			c.CreatedAt = timestamppb.New(now.Add(-50 * time.Minute * time.Duration(n-v) / time.Duration(n)))
			if err := bk.Put(key(c.Version), mustEncode(b, c)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	return path, uint64(n + 1)
}

// BenchmarkPutWithRetention: Put over a store of 2,000 checkpoints, with
// the count rule (keep-count) and with the age rule (retention, which
// reads every entry's created-at on each Put), and what decoding every
// entry instead would add to each Put (decode-all).
func BenchmarkPutWithRetention(b *testing.B) {
	const n = 2000
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"keep-count", Options{Keep: 10 * n}},
		{"retention", Options{Retention: &Retention{All: time.Hour, Hourly: 24 * time.Hour, Daily: 7 * 24 * time.Hour, Min: 20}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path, next := retentionStore(b, n)
			s, err := Open(path, bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c := sample(b, next, bigSpec)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.Version, c.CreatedAt = next+uint64(i), nil
				if err := s.Put(c); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if list, _ := s.List(); len(list) < n {
				b.Fatalf("%d checkpoints left of %d: the policy dropped some", len(list), n)
			}
		})
	}
	b.Run("decode-all", func(b *testing.B) {
		path, _ := retentionStore(b, n)
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			err := s.view(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
					_, err := Decode(v)
					return err
				})
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read-created-at", func(b *testing.B) {
		path, _ := retentionStore(b, n)
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			err := s.view(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
					if createdAt(v).IsZero() {
						return fmt.Errorf("version %d: no created-at", binary.BigEndian.Uint64(k))
					}
					return nil
				})
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
