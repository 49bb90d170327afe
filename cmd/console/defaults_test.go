package main

import (
	"flag"
	"reflect"
	"testing"

	"github.com/recon-ad/recon/internal/console"
)

// TestFlagDefaultsAreTheComponents: with no flags given, the feed config
// the flags fill is exactly console.DefaultFeedConfig. A flag registered
// with a default of its own (a literal, not the field's value) sets its
// field to that literal at registration, and differs here as soon as the
// two drift apart.
func TestFlagDefaultsAreTheComponents(t *testing.T) {
	cfg := console.DefaultFeedConfig()
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	addFeedFlags(fs, &cfg)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := console.DefaultFeedConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("the flags fill\n%+v\nwant console.DefaultFeedConfig\n%+v", cfg, want)
	}
}
