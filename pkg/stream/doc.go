// Package stream is recon's Kafka plumbing on segmentio/kafka-go; it knows
// nothing of autoencoders. Reader hands out consumer-group batches bounded
// by size and time and commits only what the caller finished (at least
// once: a crash re-delivers, nothing is lost); Writer produces with acks
// from all in-sync replicas and a 5 ms batch timeout; EnsureTopics creates
// topics. Both speak Record, this package's own record type (topic,
// partition, offset, key, value, headers, time): kafka-go's types stay
// inside it, and ClassifyWrite says what a writer's error means for a
// record (retry, give up on the record, or fix the configuration).
// Integration tests run against an in-process kfake broker, or a
// real cluster when RECON_TEST_BROKERS is set.
//
// The record codecs: a record's value is a
// JSON object of named numbers, a JSON array of numbers, or one CSV line,
// decoded into a feature vector in the configured order. Every bad record is
// a *DecodeError whose Reason names the dead-letter reason and whose Detail
// names the field or position; non-finite numbers are refused. The JSON
// array and CSV decoders parse in place without allocating per number; the
// object decoder uses encoding/json, since keys may be escaped and unused
// keys may hold any JSON value.
package stream
