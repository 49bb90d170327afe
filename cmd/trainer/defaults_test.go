package main

import (
	"flag"
	"reflect"
	"testing"

	"github.com/recon-ad/recon/internal/trainer"
)

// TestFlagDefaultsAreTheComponents: with no flags given, the worker and
// Kafka source configs the flags fill are exactly trainer.DefaultConfig and
// trainer.DefaultKafkaConfig. A flag registered with a default of its own
// (a literal, not the field's value) sets its field to that literal at
// registration, and differs here as soon as the two drift apart.
func TestFlagDefaultsAreTheComponents(t *testing.T) {
	cfg, kafka := trainer.DefaultConfig(), trainer.DefaultKafkaConfig()
	fs := flag.NewFlagSet("trainer run", flag.ContinueOnError)
	addWorkerFlags(fs, &cfg, &kafka)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := trainer.DefaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("the flags fill\n%+v\nwant trainer.DefaultConfig\n%+v", cfg, want)
	}
	if want := trainer.DefaultKafkaConfig(); !reflect.DeepEqual(kafka, want) {
		t.Errorf("the flags fill\n%+v\nwant trainer.DefaultKafkaConfig\n%+v", kafka, want)
	}
}
