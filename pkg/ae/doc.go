// Package ae is recon's autoencoder mathematics: models, objectives and
// their gradients, optimizers, scoring, a feature normalizer and the PCA
// reference a linear autoencoder is checked against. It is built on gonum and
// does no I/O, logging or concurrency of its own.
//
// # Models
//
// A Spec gives the shape (input width p, encoder hidden widths, code width
// k; the decoder mirrors the encoder), the activations (linear, ReLU,
// sigmoid, tanh) of the hidden layers, the code layer and the output, the
// loss (squared error, or binary cross-entropy for inputs in [0,1]), tied or
// untied decoder weights, and one Variant:
//
//   - Plain: mean over the batch of the reconstruction loss.
//   - Denoising: the encoder sees x + sigma*eps or x with entries zeroed with
//     probability q; the target is the clean x. Scoring uses the clean input.
//   - SparseL1: plus L1 * mean_i ||z_i||_1.
//   - SparseKL: plus beta/(1-m) * sum_j KL(rho || rho_hat_j), the code
//     activations in (0,1), with rho_hat_j = m*running_j + (1-m)*batch mean_j.
//     The running estimate (State.RhoHat) is advanced after each step; the
//     factor 1/(1-m) keeps the penalty's gradient at weight beta whatever the
//     momentum m.
//   - Contractive: plus lambda * mean_i ||J_f(x_i)||_F^2, in closed form for a
//     one-layer sigmoid encoder, by exact Jacobian propagation otherwise.
//   - Variational: mean and log-variance heads, z = mu + sigma*eps, objective
//     reconstruction + w * KL(q(z|x) || N(0, I)) in closed form, with w rising
//     linearly from 0 to Beta over Warmup steps. With squared error the
//     reconstruction term is a Gaussian decoder of variance 1/2.
//
// New refuses an overcomplete plain model (k >= p), which would learn the
// identity map; every other variant is a regularizer and may be overcomplete.
//
// # Parameters and gradients
//
// A Model's parameters are one flat []float64 (layout documented on Model),
// and Gradient writes the gradient of a batch's objective into a vector of
// the same length. The objective is a mean over the batch, so the
// sample-weighted average of workers' gradients is the gradient of the union
// batch (for SparseKL, up to its batch-level rho_hat). Randomness (noise,
// the variational draw) comes from a caller-supplied *rand.Rand, so a seed
// reproduces a run. Optimizers (SGD with momentum, Adam) work on flat
// vectors and save and restore their state as a flat vector. Trainer strings
// gradient, step and state advance together.
//
// Every objective's gradient is checked against central finite differences
// for every variant, activation, loss and weight tying (grad_test.go).
//
// # Scoring
//
// Score writes ||x - x_hat||^2 per record, ScoreFeatures also the
// per-feature terms (x_l - x_hat_l)^2 that explain a score, Reconstruct,
// Encode and Decode the maps themselves. The variational model scores the
// decoding of its mean code; NegELBO gives a one-sample negative ELBO
// instead. Normalizer standardizes features with Welford statistics that
// merge exactly across shards.
//
// # Conventions
//
// Batches are whole records, row-major, in a flat []float64. Destinations
// come first and belong to the caller; a length or dimension mismatch is a
// programming error and panics with an "ae: " prefix, while bad data (a
// non-finite value) is an error value where the package can see it
// (Normalizer.Observe) and gives a non-finite score otherwise. A Model keeps
// scratch buffers, so steady-state training and scoring do not allocate and
// a Model is not safe for concurrent use: Clone one per goroutine.
//
// # Speed
//
// Internally a batch is processed feature-major (one row per feature, the
// batch along the row), so every inner loop runs along the batch. The
// default build uses portable Go kernels. Built with GOEXPERIMENT=simd on
// amd64 (Go 1.26), it uses AVX2/FMA and AVX-512 kernels from simd/archsimd
// when the CPU has them, which roughly doubles training and quadruples
// scoring throughput; results then agree with the portable build to
// rounding, not bit for bit.
package ae
