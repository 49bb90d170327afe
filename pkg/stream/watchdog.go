package stream

import (
	"context"
	"log/slog"
	"time"
)

// watchStuck checks a consumer group's progress on topic every after/3 and
// returns when a partition's committed offset has not moved for after
// while records wait in it, or when ctx ends. Such a partition is held by
// no working member: the group lost it (kafka-go bugs), or (with kfake,
// the development broker) a member that died in the middle of joining is
// kept for ever; both are cured by a rebalance. A live member whose
// processing hangs is not: it gets its partitions back (see stuckWatch). It logs one warning naming the partition, the member
// holding it and the group's state; the caller then rejoins the group,
// whose rebalance assigns every partition anew. It reports whether it
// found one.
//
// ready, when not nil, says whether the caller's own work is going on, so
// that a stall is the group's: a trainer passes "rounds are being
// accepted", since while its coordinator is down no trainer commits and
// rejoining would not help. While ready is false nothing is judged.
func watchStuck(ctx context.Context, s Security, brokers []string, group, topic string, after time.Duration, ready func() bool, log *slog.Logger) bool {
	every := max(after/3, time.Millisecond)
	admin := s.Admin(brokers)
	defer admin.Close()
	last := map[int]int64{} // committed offset when last seen moving
	since := map[int]int{}  // checks without progress
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if ready != nil && !ready() {
			clear(last)
			clear(since)
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, every)
		prog, err := admin.GroupProgress(qctx, group, topic)
		cancel()
		if err != nil {
			continue // the outage logs say why; nothing to judge
		}
		for part, p := range prog {
			if p.Lag() == 0 || p.Committed != last[part] {
				last[part], since[part] = p.Committed, 0
				continue
			}
			if since[part]++; since[part] < 3 {
				continue
			}
			// Who holds it, for the operator: a dead member, a live one
			// not fetching, or nobody.
			qctx, cancel := context.WithTimeout(ctx, every)
			holders, state, herr := admin.Holders(qctx, group, topic)
			cancel()
			holder := holders[part]
			switch {
			case herr != nil:
				holder = "unknown: " + herr.Error()
			case holder == "":
				holder = "nobody"
			}
			log.Warn("a partition has not advanced while records wait in it: rejoining the group so that it is assigned again",
				"kind", "stuck_partition", "group", group, "topic", topic, "partition", part, "committed", p.Committed, "end", p.End, "for", after,
				"held_by", holder, "group_state", state)
			return true
		}
	}
}

// stuckWatch runs watchStuck for a Reader again and again, across its
// memberships. A live member that hangs gets its partitions back at every
// rebalance, so rejoining does not cure it: a stall found again soon after
// the last rejoin is watched for only after a pause that grows (after,
// 3×, 7×, … up to 10 min), so that the group is not rebalanced every
// after for ever.
type stuckWatch struct {
	security     Security
	brokers      []string
	group, topic string
	after        time.Duration // no progress for this long while records wait: stuck
	ready        func() bool   // optional, as watchStuck's ready
	log          *slog.Logger

	last  time.Time     // when it last fired
	pause time.Duration // before the next watch
	quick int           // fires in a row that came soon after the previous
}

// wait pauses as the last fires say, then watches until a partition is
// stuck (true) or ctx ends (false).
func (w *stuckWatch) wait(ctx context.Context) bool {
	if w.pause > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(w.pause):
		}
	}
	if !watchStuck(ctx, w.security, w.brokers, w.group, w.topic, w.after, w.ready, w.log) {
		return false
	}
	now := time.Now()
	if !w.last.IsZero() && now.Sub(w.last) < w.pause+4*w.after {
		w.quick++
	} else {
		w.quick = 0
	}
	w.last = now
	w.pause = min(w.after*time.Duration(1<<min(w.quick, 20)-1), 10*time.Minute)
	if w.pause > 0 {
		w.log.Warn("a partition stalled again soon after the last rejoin: a live member may hang; watching again after a pause",
			"kind", "stall_repeated", "group", w.group, "topic", w.topic, "pause", w.pause)
	}
	return true
}
