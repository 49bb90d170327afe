package main

import (
	"flag"
	"reflect"
	"testing"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/coordinator"
)

// TestFlagDefaultsAreTheComponents: with no flags given, the config and
// retention the flags fill are exactly coordinator.DefaultConfig and
// checkpoint.DefaultRetention. A flag registered with a default of its own
// (a literal, not the field's value) sets its field to that literal at
// registration, and differs here as soon as the two drift apart.
func TestFlagDefaultsAreTheComponents(t *testing.T) {
	cfg, ret := coordinator.DefaultConfig(), checkpoint.DefaultRetention()
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	addConfigFlags(fs, &cfg, &ret)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := coordinator.DefaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("the flags fill\n%+v\nwant coordinator.DefaultConfig\n%+v", cfg, want)
	}
	if want := checkpoint.DefaultRetention(); ret != want {
		t.Errorf("the flags fill retention %+v, want checkpoint.DefaultRetention %+v", ret, want)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n < 25 {
		t.Errorf("%d flags registered; the config has more", n)
	}
}
