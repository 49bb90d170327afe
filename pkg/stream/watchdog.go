package stream

import (
	"context"
	"log/slog"
	"time"
)

// WatchStuck checks a consumer group's progress on topic every after/3 and
// returns when a partition's committed offset has not moved for after
// while records wait in it, or when ctx ends. Such a partition is held by
// no working member: the group lost it, a member hangs, or (with kfake,
// the development broker) a member that died in the middle of joining is
// kept for ever. It logs one warning naming the partition, the member
// holding it and the group's state; the caller then rejoins the group,
// whose rebalance assigns every partition anew. It reports whether it
// found one.
//
// ready, when not nil, says whether the caller's own work is going on, so
// that a stall is the group's: a trainer passes "rounds are being
// accepted", since while its coordinator is down no trainer commits and
// rejoining would not help. While ready is false nothing is judged.
func WatchStuck(ctx context.Context, s Security, brokers []string, group, topic string, after time.Duration, ready func() bool, log *slog.Logger) bool {
	every := after / 3
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
				"group", group, "topic", topic, "partition", part, "committed", p.Committed, "end", p.End, "for", after,
				"held_by", holder, "group_state", state)
			return true
		}
	}
}
