// Package synth generates the synthetic data recon's tests, demos and load
// generator use: records near a low-rank subspace plus Gaussian noise, the
// kind whose intrinsic dimension an autoencoder should find.
//
// Every function takes its random source from the caller, so a seed fixes
// the data.
package synth
