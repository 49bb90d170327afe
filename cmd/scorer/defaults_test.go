package main

import (
	"flag"
	"reflect"
	"testing"

	"github.com/recon-ad/recon/internal/scorer"
)

// TestFlagDefaultsAreTheComponents: with no flags given, the replica config
// the flags fill is exactly scorer.DefaultReplicaConfig. A flag registered
// with a default of its own (a literal, not the field's value) sets its
// field to that literal at registration, and differs here as soon as the
// two drift apart.
func TestFlagDefaultsAreTheComponents(t *testing.T) {
	cfg := scorer.DefaultReplicaConfig()
	fs := flag.NewFlagSet("scorer run", flag.ContinueOnError)
	addReplicaFlags(fs, &cfg)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := scorer.DefaultReplicaConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("the flags fill\n%+v\nwant scorer.DefaultReplicaConfig\n%+v", cfg, want)
	}
	// Setting a list flag replaces its default rather than adding to it.
	if err := fs.Parse([]string{"--brokers", "a:9092, b:9092", "--format", "csv"}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Brokers, []string{"a:9092", "b:9092"}) || cfg.Format.String() != "csv" {
		t.Errorf("--brokers a:9092,b:9092 --format csv: %v %v", cfg.Brokers, cfg.Format)
	}
	if err := fs.Parse([]string{"--format", "xml"}); err == nil {
		t.Error("--format xml accepted")
	}
}
