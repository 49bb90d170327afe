package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
)

// Retention is a policy of which checkpoints to keep by their age: every
// one younger than All, the newest of each clock hour younger than Hourly,
// the newest of each day younger than Daily; besides these, always the
// newest Min versions, every pinned one and the newest. Hours and days are
// UTC. A zero duration turns its tier off.
//
// Age is now minus the checkpoint's created-at. A created-at in the future
// (a clock that was ahead, or went back) is kept until it is in the past
// and the tiers above let it go. A checkpoint without a created-at (a
// corrupt entry, a writer that set none) is kept by Min, a pin or being
// the newest only.
//
// Retention is a pure value: Drop takes the clock as an argument.
type Retention struct {
	All    time.Duration // keep every checkpoint younger than this
	Hourly time.Duration // and the newest of each hour younger than this
	Daily  time.Duration // and the newest of each day younger than this
	Min    int           // and always the newest Min, whatever their age
}

// DefaultRetention returns the policy of 24 h of every checkpoint (so
// that every alert's model version stays readable that long), 7 days of
// hourly ones, 30 days of daily ones and at least the newest 20: the
// coordinator's --keep-* flags start from it.
func DefaultRetention() Retention {
	return Retention{All: 24 * time.Hour, Hourly: 7 * 24 * time.Hour, Daily: 30 * 24 * time.Hour, Min: 20}
}

// Validate reports a negative duration or count.
func (r Retention) Validate() error {
	switch {
	case r.All < 0:
		return fmt.Errorf("retention: keep-all age %v is negative", r.All)
	case r.Hourly < 0:
		return fmt.Errorf("retention: keep-hourly age %v is negative", r.Hourly)
	case r.Daily < 0:
		return fmt.Errorf("retention: keep-daily age %v is negative", r.Daily)
	case r.Min < 0:
		return fmt.Errorf("retention: keep count %d is negative", r.Min)
	}
	return nil
}

// Drop returns the versions of infos that r lets go at time now, in
// ascending order. It reads each Info's Version, CreatedAt (zero: none)
// and Pinned; infos may come in any order and are not modified.
func (r Retention) Drop(infos []Info, now time.Time) []uint64 {
	if len(infos) == 0 {
		return nil
	}
	// Newest version first.
	order := make([]int, len(infos))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		va, vb := infos[a].Version, infos[b].Version
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	keep := make([]bool, len(infos))
	keep[order[0]] = true // the newest
	for n, i := range order {
		in := infos[i]
		if n < r.Min || in.Pinned {
			keep[i] = true
		}
		if in.CreatedAt.IsZero() {
			continue
		}
		if age := now.Sub(in.CreatedAt); age < 0 || age < r.All {
			keep[i] = true
		}
	}
	// The newest of each period: the entry with the latest created-at, the
	// higher version on a tie.
	tier := func(limit, period time.Duration) {
		if limit <= 0 {
			return
		}
		newest := map[time.Time]int{}
		for i, in := range infos {
			if in.CreatedAt.IsZero() || now.Sub(in.CreatedAt) >= limit {
				continue
			}
			p := in.CreatedAt.Truncate(period) // since the zero time: UTC hours and days
			j, ok := newest[p]
			if !ok || in.CreatedAt.After(infos[j].CreatedAt) ||
				in.CreatedAt.Equal(infos[j].CreatedAt) && in.Version > infos[j].Version {
				newest[p] = i
			}
		}
		for _, i := range newest {
			keep[i] = true
		}
	}
	tier(r.Hourly, time.Hour)
	tier(r.Daily, 24*time.Hour)
	var drop []uint64
	for n := len(order) - 1; n >= 0; n-- {
		if i := order[n]; !keep[i] {
			drop = append(drop, infos[i].Version)
		}
	}
	return drop
}

// pruneByAge applies r to the store's checkpoints at time now, inside
// Put's transaction. Each entry's created-at is read from its frame
// without decoding or checksumming it (createdAt): decoding thousands of
// checkpoints on every Put would cost more than the Put.
func pruneByAge(tx *bolt.Tx, r *Retention, now time.Time) error {
	bk, pins := tx.Bucket(bucketCheckpoints), tx.Bucket(bucketPins)
	var infos []Info
	err := bk.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return nil // not a version: never dropped
		}
		infos = append(infos, Info{Version: binary.BigEndian.Uint64(k), CreatedAt: createdAt(v), Pinned: pins.Get(k) != nil})
		return nil
	})
	if err != nil {
		return err
	}
	for _, v := range r.Drop(infos, now) {
		if err := bk.Delete(key(v)); err != nil {
			return err
		}
	}
	return nil
}

// createdAt reads the created_at field (10) of the checkpoint frame b by
// walking the payload's top-level fields, skipping the others whole: the
// parameters are one length-delimited field, so this costs a few varints,
// not a decode. The checksum is not verified. It returns the zero time for
// a frame without a created-at, or one that does not parse.
func createdAt(b []byte) time.Time {
	if len(b) < headerLen || [4]byte(b[:4]) != magic {
		return time.Time{}
	}
	const createdAtField = 10
	var secs, nanos int64
	found := false
	for p := b[headerLen:]; len(p) > 0; {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 {
			return time.Time{}
		}
		p = p[n:]
		if num != createdAtField || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, p); n < 0 {
				return time.Time{}
			}
			p = p[n:]
			continue
		}
		ts, n := protowire.ConsumeBytes(p)
		if n < 0 {
			return time.Time{}
		}
		p = p[n:]
		// Repeated occurrences of a message field merge: later values win.
		if err := timestampFields(ts, &secs, &nanos); err != nil {
			return time.Time{}
		}
		found = true
	}
	// The range timestamppb's CheckValid accepts: years 1 to 9999.
	if !found || secs < -62135596800 || secs > 253402300799 || nanos < 0 || nanos >= 1e9 {
		return time.Time{}
	}
	return time.Unix(secs, nanos).UTC()
}

// timestampFields reads the seconds (1) and nanos (2) of an encoded
// google.protobuf.Timestamp into secs and nanos.
func timestampFields(b []byte, secs, nanos *int64) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errors.New("bad tag")
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errors.New("bad varint")
			}
			b = b[n:]
			if num == 1 {
				*secs = int64(v)
			} else {
				*nanos = int64(int32(v))
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return errors.New("bad field")
		}
		b = b[n:]
	}
	return nil
}
