package stream

import (
	"context"
	"log/slog"
	"time"
)

// MonitorConfig configures Reader.Monitor.
type MonitorConfig struct {
	Every time.Duration // how often the group's progress is read (default 5 s)
	// Report, when set, gets every reading: the group's committed offset
	// and the log's start and end for each partition of the topic, or the
	// error that kept it from being read.
	Report func(map[int]PartitionProgress, error)
	// WentBack, when set, is called once per partition whose log went
	// back, after its offset was reset.
	WentBack func(partition int)
}

// Monitor reads the group's progress on the topic every cfg.Every until
// Close, and guards against a log that went back: a broker restarted
// without its data, or a topic deleted and created again. kafka-go would
// wait at the old offset until the new log grows past it and skip every
// record before; a commit landing from before the restart does the same
// to the next member. So when a partition's end is below the group's
// committed offset or below the end seen at the last reading, Monitor logs
// one warning naming the partition and the offsets, commits the
// partition's first retained offset for the group, and rejoins, so that
// every record of the new log is read (records read before the reset may
// be read again: at least once). A partition that vanished is logged
// once. Only the first call starts a monitor.
func (r *Reader) Monitor(cfg MonitorConfig) {
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Second
	}
	log := r.log()
	r.background(&r.stopMonitor, &r.monitored, func(ctx context.Context) {
		admin := r.cfg.Security.Admin(r.cfg.Brokers)
		defer admin.Close()
		t := time.NewTicker(cfg.Every)
		defer t.Stop()
		var last map[int]PartitionProgress
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			qctx, cancel := context.WithTimeout(ctx, max(cfg.Every, 5*time.Second))
			prog, err := admin.GroupProgress(qctx, r.cfg.Group, r.cfg.Topic)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if cfg.Report != nil {
				cfg.Report(prog, err)
			}
			if err != nil {
				continue // the clients' outage lines say why
			}
			var back []int
			for part, p := range prog {
				was, seen := last[part]
				if p.Committed > p.End || seen && p.End < was.End {
					log.Warn("the broker's log went back (restarted without its data, or the topic was recreated): reading this partition again from its first retained offset",
						"topic", r.cfg.Topic, "partition", part, "end", p.End, "end_before", was.End, "committed", p.Committed, "from", p.Start)
					back = append(back, part)
				}
			}
			for part := range last {
				if _, ok := prog[part]; !ok {
					log.Warn("a partition vanished from the topic", "topic", r.cfg.Topic, "partition", part, "partitions_now", len(prog))
				}
			}
			if len(back) > 0 && !r.reset(ctx, prog, back, log) {
				continue // read it again next time: last stays as it was
			}
			for _, part := range back {
				if cfg.WentBack != nil {
					cfg.WentBack(part)
				}
			}
			last = prog
		}
	})
}

// reset commits the first retained offset of each partition in parts for
// the group, through this member, and rejoins so that every member reads
// from the committed offsets again. It reports whether it did.
func (r *Reader) reset(ctx context.Context, prog map[int]PartitionProgress, parts []int, log *slog.Logger) bool {
	msgs := make([]Record, 0, len(parts))
	for _, part := range parts {
		// CommitMessages commits each message's offset + 1.
		msgs = append(msgs, Record{Topic: r.cfg.Topic, Partition: part, Offset: prog[part].Start - 1})
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.Commit(cctx, msgs...); err != nil {
		log.Warn("resetting the group's offsets after the log went back failed; trying again", "topic", r.cfg.Topic, "err", err)
		return false
	}
	if err := r.Rejoin(); err != nil {
		log.Warn("rejoining the group after resetting its offsets", "topic", r.cfg.Topic, "err", err)
	}
	return true
}
