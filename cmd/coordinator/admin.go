package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/recon-ad/recon/internal/cli"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// admin runs the operator subcommands that talk to a running coordinator:
// checkpoints (list the stored versions) and rollback (train on from an
// older version, published as a new one and pinned).
func admin(ctx context.Context, name string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("coordinator "+name, flag.ContinueOnError)
	var what string
	switch name {
	case "checkpoints":
		what = "usage: coordinator checkpoints [flags]\n\nLists the checkpoints a running coordinator holds: version, round, threshold,\npinned (kept whatever their age), and an error for an entry that does not verify.\n"
	case "rollback":
		what = "usage: coordinator rollback --version N [flags]\n\nMakes a running coordinator train on from stored version N: its parameters are\npublished at once as a new, higher version (scorers take it as usual), and N is\npinned, so retention never prunes it.\n"
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), what+"\nFlags:\n")
		fs.PrintDefaults()
	}
	addr := fs.String("coordinator", "127.0.0.1:7070", "coordinator gRPC `address`")
	version := fs.Uint64("version", 0, "rollback: the stored `version` to train on from")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	tlsFlags := cli.AddClientTLSFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if name == "rollback" && *version == 0 {
		return cli.Usagef("--version is required (see coordinator checkpoints)")
	}
	creds, err := tlsFlags.DialOption()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*addr, creds)
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", *addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := reconv1.NewCoordinatorClient(conn)
	if name == "checkpoints" {
		resp, err := c.ListCheckpoints(ctx, &reconv1.ListCheckpointsRequest{}, grpc.WaitForReady(true))
		if err != nil {
			return fmt.Errorf("coordinator %s: %w", *addr, err)
		}
		fmt.Fprintf(stdout, "%10s %12s %14s  %s\n", "version", "round", "threshold", "")
		for _, ci := range resp.GetCheckpoints() {
			note := ""
			if ci.GetPinned() {
				note = "pinned"
			}
			if ci.GetError() != "" {
				note += " DAMAGED: " + ci.GetError()
			}
			fmt.Fprintf(stdout, "%10d %12d %14.6g  %s\n", ci.GetVersion(), ci.GetRound(), ci.GetThreshold(), note)
		}
		return nil
	}
	resp, err := c.Rollback(ctx, &reconv1.RollbackRequest{Version: *version}, grpc.WaitForReady(true))
	if status.Code(err) == codes.NotFound {
		return cli.Permanent(fmt.Errorf("rollback: version %d is not stored (see coordinator checkpoints)", *version))
	}
	if err != nil {
		return fmt.Errorf("rollback to %d: %w", *version, err)
	}
	fmt.Fprintf(stdout, "rolled back to version %d: published as version %d; %d is pinned\n", *version, resp.GetVersion(), *version)
	return nil
}
