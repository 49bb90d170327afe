// Package e2e holds recon's end-to-end tests: the real binaries as separate
// processes on loopback ports, with faults injected while a stream flows
// (kill -9 of a scorer, a trainer and the coordinator, a devkafka restart).
// `make e2e` runs them (build tag e2e: they are kept out of make test's
// parallel, race-enabled run), and so does CI. It has no code of its own.
package e2e
