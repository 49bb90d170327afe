// Command benchtrain measures distributed training on loopback: a
// coordinator and N trainer workers in one process, talking real gRPC over
// 127.0.0.1, training the 30-16-4-16-30 ReLU model. For each N it reports
// round latency (median, p99), training samples/s, and weak-scaling
// efficiency: samples/s with N workers over N times one worker's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/round"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

func main() {
	fs := flag.NewFlagSet("benchtrain", flag.ContinueOnError)
	workers := fs.String("workers", "1,2,4", "worker counts to run, comma-separated")
	batch := fs.Int("batch", 1024, "records per worker per round")
	rounds := fs.Int("rounds", 200, "rounds measured per configuration (after 20 warm-up rounds)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this `file`")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: benchtrain [flags]\n\nDistributed training throughput on loopback gRPC (30-16-4-16-30 ReLU, Adam).\n\n")
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, os.Args[1:]); err != nil {
		cli.Exit("benchtrain", err)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtrain:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "benchtrain:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var ns []int
	for _, f := range strings.Split(*workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "benchtrain: -workers %q: want positive counts\n", *workers)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	fmt.Printf("benchtrain: 30-16-4-16-30 ReLU (linear output), Adam, batch %d per worker, %d rounds, GOMAXPROCS %d, kernels: %s\n",
		*batch, *rounds, runtime.GOMAXPROCS(0), ae.Kernels()+" until the workers time each set on the model")
	fmt.Printf("%8s %12s %12s %14s %12s\n", "workers", "median ms", "p99 ms", "samples/s", "efficiency")
	var base float64
	for _, n := range ns {
		med, p99, sps, err := run(n, *batch, *rounds)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtrain:", err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		if n == ns[0] {
			base = sps / float64(n)
		}
		fmt.Printf("%8d %12.3f %12.3f %14.0f %11.0f%%\n", n, ms(med), ms(p99), sps, 100*sps/(float64(n)*base))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// run trains with n workers and returns round latency percentiles and samples/s.
func run(n, batch, rounds int) (med, p99 time.Duration, sps float64, err error) {
	const warm = 20
	dir, err := os.MkdirTemp("", "benchtrain")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	store, err := checkpoint.Open(filepath.Join(dir, "c.db"), checkpoint.Options{})
	if err != nil {
		return 0, 0, 0, err
	}
	defer store.Close()
	var (
		mu      sync.Mutex
		lat     []time.Duration
		samples int
		t0, t1  time.Time
	)
	spec := ae.Spec{Input: 30, Hidden: []int{16}, Code: 4, Activation: ae.ReLU, CodeActivation: ae.ReLU, Output: ae.Linear}
	cfg := coordinator.Config{Spec: spec, Batch: batch, MinWorkers: n, Deadline: time.Minute, MaxRounds: uint64(warm + rounds),
		CheckpointRounds: 1 << 30,
		OnRound: func(res *round.Result, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case res.Round == warm:
				t0 = time.Now()
			case res.Round > warm:
				lat = append(lat, d)
				samples += res.Samples
				t1 = time.Now()
			}
		}}
	log := slog.New(slog.DiscardHandler)
	srv, err := coordinator.New(cfg, store, log, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	gs := grpc.NewServer()
	reconv1.RegisterCoordinatorServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	werrs := make([]error, n)
	for i := 0; i < n; i++ {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			cancel()
			return 0, 0, 0, err
		}
		// Records generated up front and cycled: the benchmark measures
		// training, not the data generator.
		data := make([]float64, 64*1024*30)
		if _, err := trainer.NewSynth(1, uint64(i+1), 30, 3, 0.4, 0).Read(data); err != nil {
			cancel()
			return 0, 0, 0, err
		}
		w, err := trainer.New(trainer.Config{ID: fmt.Sprintf("w%d", i), Conn: conn, Log: log, Seed: uint64(i + 1),
			Source: trainer.NewSlice(data, 30, true)})
		if err != nil {
			cancel()
			return 0, 0, 0, err
		}
		wg.Go(func() { defer conn.Close(); werrs[i] = w.Run(ctx) })
	}
	err = srv.Run(context.Background())
	cancel()
	wg.Wait()
	if err == nil {
		err = errors.Join(werrs...)
	}
	if err != nil {
		return 0, 0, 0, err
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0, 0, 0, fmt.Errorf("%d workers: no rounds measured", n)
	}
	med = lat[len(lat)/2]
	p99 = lat[min(len(lat)-1, int(0.99*float64(len(lat))))]
	return med, p99, float64(samples) / t1.Sub(t0).Seconds(), nil
}
