// Package stream is recon's Kafka plumbing; it knows nothing of
// autoencoders. So far it holds the record codecs: a record's value is a
// JSON object of named numbers, a JSON array of numbers, or one CSV line,
// decoded into a feature vector in the configured order. Every bad record is
// a *DecodeError whose Reason names the dead-letter reason and whose Detail
// names the field or position; non-finite numbers are refused. The JSON
// array and CSV decoders parse in place without allocating per number; the
// object decoder uses encoding/json, since keys may be escaped and unused
// keys may hold any JSON value.
package stream
