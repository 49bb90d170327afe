// Package pipeline holds the in-process integration tests of the whole
// recon pipeline on an embedded Kafka broker: a coordinator, trainer workers
// consuming the events topic and scorer replicas producing alerts, dead
// letters and scores. It has no code of its own.
package pipeline
