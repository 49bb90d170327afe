// Command devkafka is recon's embedded Kafka-protocol broker for one
// machine: franz-go's kfake with a persistent data directory, the recon
// topics created at start, and a graceful shutdown that persists its state.
// Real Kafka clients (kafka-go, kcat, librdkafka) work against it. It is for
// development and demos, never for deploy/.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/recon-ad/recon/internal/cli"
)

func main() {
	cli.Exit("devkafka", run(cli.Signals("devkafka"), os.Args[1:]))
}

// topicSpec is one --topics entry.
type topicSpec struct {
	name       string
	partitions int32
}

func parseTopics(s string) ([]topicSpec, error) {
	var out []topicSpec
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, parts, found := strings.Cut(f, ":")
		n := 1
		if found {
			var err error
			if n, err = strconv.Atoi(parts); err != nil || n < 1 || n > 1024 {
				return nil, cli.Usagef("--topics %q: partitions of %q must be 1..1024", s, name)
			}
		}
		if name == "" {
			return nil, cli.Usagef("--topics %q: empty topic name", s)
		}
		out = append(out, topicSpec{name, int32(n)})
	}
	return out, nil
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("devkafka", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: devkafka [flags]

Runs a one-node Kafka-protocol broker (franz-go's kfake) that keeps its data in
--data-dir across restarts, creates the topics in --topics, prints the bootstrap
address, and stops cleanly on SIGTERM or Ctrl-C. For development only.`)
	listen := fs.String("listen", "127.0.0.1:9092", "`address` to listen on (host:port)")
	dataDir := fs.String("data-dir", "devkafka-data", "`directory` that keeps topics and offsets across restarts")
	topics := fs.String("topics", "recon-events:4,recon-alerts:1,recon-dlq:1,recon-scores:4", "topics to create, as `name:partitions` comma-separated")
	syncWrites := fs.Bool("sync-writes", false, "fsync every produced batch (slower; nothing lost on a crash)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		return cli.Usagef("--listen %q: %v", *listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return cli.Usagef("--listen %q: bad port", *listen)
	}
	ts, err := parseTopics(*topics)
	if err != nil {
		return err
	}
	opts := []kfake.Opt{
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, portStr))
		}),
		kfake.DataDir(*dataDir),
		kfake.AllowAutoTopicCreation(),
	}
	for _, t := range ts {
		opts = append(opts, kfake.SeedTopics(t.partitions, t.name))
	}
	if *syncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", *dataDir, err)
	}
	entries, _ := os.ReadDir(abs) // absent or empty: a new broker
	fresh := len(entries) == 0
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	var names []string
	for _, t := range ts {
		names = append(names, fmt.Sprintf("%s(%d)", t.name, t.partitions))
	}
	fmt.Printf("devkafka: bootstrap %s; topics %s; data in %s\n", strings.Join(c.ListenAddrs(), ","), strings.Join(names, " "), abs)
	if fresh {
		// Said loudly: a broker started from another directory, or with
		// its data deleted, has none of the records, offsets or groups
		// clients expect; their offsets are now ahead of its logs.
		fmt.Printf("devkafka: STARTING EMPTY: %s held no data (a new broker: no records, no committed offsets). "+
			"If you meant to resume, stop and pass --data-dir with the directory used before.\n", abs)
	} else {
		fmt.Printf("devkafka: resuming from the data in %s\n", abs)
	}
	<-ctx.Done()
	c.Close()
	fmt.Println("devkafka: stopped; state saved in", *dataDir)
	return nil
}
