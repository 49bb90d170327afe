// Package cli is the command-line plumbing recon's commands share: RECON_*
// environment defaults for flags, the model flags, and one-line errors with
// conventional exit codes. It holds no logic of its own beyond parsing.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/pkg/ae"
)

// Exit codes.
const (
	ExitError = 1 // the command failed
	ExitUsage = 2 // bad flags or arguments, or a permanent refusal (ErrPermanent)
)

// ErrUsage marks an error as a usage error (exit code 2).
var ErrUsage = errors.New("usage")

// Usagef returns a usage error with the formatted message.
func Usagef(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, a...)...)
}

// ErrPermanent marks an error that retrying cannot cure: a configuration
// the brokers or the coordinator refuse (a missing topic, a schema that
// does not match). Exit gives it exit code 2, like a usage error.
var ErrPermanent = errors.New("permanent")

// Permanent marks err as permanent (errors.Is(err, ErrPermanent)); its
// message is err's own.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ error }

// Unwrap returns the error marked permanent.
func (p permanentError) Unwrap() error { return p.error }

// Is matches ErrPermanent.
func (p permanentError) Is(target error) bool { return target == ErrPermanent }

// Exit prints err as one line prefixed by the command name and exits with
// ExitUsage for usage errors, ExitError otherwise. A nil err, or
// flag.ErrHelp (Parse printed the help asked for), exits 0.
func Exit(cmd string, err error) { os.Exit(exitCode(os.Stderr, cmd, err)) }

// exitCode is Exit's status for err, after writing its line to w.
func exitCode(w io.Writer, cmd string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(w, "%s: %v\n", cmd, err)
	if errors.Is(err, ErrUsage) || errors.Is(err, ErrPermanent) {
		return ExitUsage
	}
	return ExitError
}

// EnvName returns the environment variable that sets flag name: RECON_
// and the name upper-cased with dashes as underscores (--noise-sigma is
// RECON_NOISE_SIGMA).
func EnvName(name string) string {
	return "RECON_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs after applying RECON_* environment variables as
// defaults: a flag given on the command line wins over its variable. A bad
// value in either is a usage error naming its source.
func Parse(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = Usagef("%s=%q: %v", EnvName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return err
	}
	// Parse quietly: a bad flag is one line (from Exit), help is the usage.
	fs.SetOutput(io.Discard)
	err = fs.Parse(args)
	fs.SetOutput(os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return flag.ErrHelp // the caller returns it; Exit exits 0
	}
	if err != nil {
		return fmt.Errorf("%w: %w (see %s -h)", ErrUsage, err, fs.Name())
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// ModelFlags are the flags that describe an autoencoder.
type ModelFlags struct {
	variant, hidden, act, codeAct, output, loss, noise *string
	code, warmup                                       *int
	tied                                               *bool
	sigma, mask, l1, rho, sparseBeta, contractive      *float64
	beta, trim                                         *float64
}

// AddModelFlags registers the model flags on fs, with fit.Default's model
// as the defaults.
func AddModelFlags(fs *flag.FlagSet) *ModelFlags {
	return AddModelFlagsWith(fs, fit.Default().Spec)
}

// AddModelFlagsWith registers the model flags on fs with def's hidden and
// output activations as the defaults.
func AddModelFlagsWith(fs *flag.FlagSet, def ae.Spec) *ModelFlags {
	return &ModelFlags{
		variant:     fs.String("variant", "plain", "autoencoder `variant`: plain, denoising, sparse-l1, sparse-kl, contractive, variational"),
		hidden:      fs.String("hidden", "auto", "encoder hidden layer `widths`, comma-separated, outermost first; \"\" for none; auto: one layer of clamp(p, 16, 128)"),
		code:        fs.Int("code", 0, "code (bottleneck) `width` k; 0 (auto): the elbow of the data's spectrum (the k where the share of variance kept most exceeds k/p), or clamp(p/8, 2, 16) where it cannot be measured"),
		act:         fs.String("activation", def.Activation.String(), "hidden layer `activation`: linear, relu, sigmoid, tanh"),
		codeAct:     fs.String("code-activation", "", "code layer `activation` (default: as --activation; sigmoid for sparse-kl)"),
		output:      fs.String("output", def.Output.String(), "output layer `activation`"),
		loss:        fs.String("loss", "mse", "reconstruction `loss`: mse, or bce for inputs in [0,1] (needs --output sigmoid)"),
		tied:        fs.Bool("tied", false, "tie decoder weights to the encoder's transposes"),
		trim:        fs.Float64("trim", def.Trim, "share of each batch's records with the largest reconstruction error left out of the gradient, so anomalies in the training data are not learned (0: none; at most 0.5)"),
		noise:       fs.String("noise", "gaussian", "denoising corruption: gaussian or masking"),
		sigma:       fs.Float64("noise-sigma", 0.1, "denoising: Gaussian noise standard deviation"),
		mask:        fs.Float64("mask-prob", 0.2, "denoising: probability of zeroing an input"),
		l1:          fs.Float64("l1", 1e-3, "sparse-l1: weight of the code's L1 norm"),
		rho:         fs.Float64("rho", 0.05, "sparse-kl: target mean code activation"),
		sparseBeta:  fs.Float64("sparse-beta", 3, "sparse-kl: weight of the KL sparsity penalty"),
		contractive: fs.Float64("contractive", 0.1, "contractive: weight of the encoder Jacobian's squared norm"),
		beta:        fs.Float64("beta", 1, "variational: weight of the KL term"),
		warmup:      fs.Int("warmup", 0, "variational: steps over which the KL weight rises from 0 to --beta"),
	}
}

// Spec returns the spec the flags describe, and whether its hidden layers
// or code width are left to the automatic architecture.
func (f *ModelFlags) Spec() (spec ae.Spec, auto bool, err error) {
	if spec.Variant, err = ae.ParseVariant(*f.variant); err != nil {
		return spec, false, Usagef("--variant: %v", err)
	}
	if spec.Activation, err = ae.ParseActivation(*f.act); err != nil {
		return spec, false, Usagef("--activation: %v", err)
	}
	spec.CodeActivation = spec.Activation
	if spec.Variant == ae.SparseKL {
		spec.CodeActivation = ae.Sigmoid
	}
	if *f.codeAct != "" {
		if spec.CodeActivation, err = ae.ParseActivation(*f.codeAct); err != nil {
			return spec, false, Usagef("--code-activation: %v", err)
		}
	}
	if spec.Output, err = ae.ParseActivation(*f.output); err != nil {
		return spec, false, Usagef("--output: %v", err)
	}
	if spec.Loss, err = ae.ParseLoss(*f.loss); err != nil {
		return spec, false, Usagef("--loss: %v", err)
	}
	switch *f.noise {
	case "gaussian":
		spec.Noise = ae.GaussianNoise
	case "masking":
		spec.Noise = ae.MaskingNoise
	default:
		return spec, false, Usagef("--noise %q: want gaussian or masking", *f.noise)
	}
	if *f.hidden == "auto" {
		auto = true
	} else {
		spec.Hidden = []int{}
		for _, s := range strings.Split(*f.hidden, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			h, err := strconv.Atoi(s)
			if err != nil || h < 1 {
				return spec, false, Usagef("--hidden %q: widths must be positive integers", *f.hidden)
			}
			spec.Hidden = append(spec.Hidden, h)
		}
	}
	if *f.code < 0 {
		return spec, false, Usagef("--code %d: must not be negative", *f.code)
	}
	spec.Code = *f.code
	if spec.Code == 0 {
		auto = true
	}
	spec.Tied = *f.tied
	spec.NoiseSigma, spec.MaskProb, spec.L1 = *f.sigma, *f.mask, *f.l1
	spec.SparseRho, spec.SparseBeta = *f.rho, *f.sparseBeta
	spec.Contractive, spec.Beta, spec.Warmup = *f.contractive, *f.beta, *f.warmup
	if !(*f.trim >= 0 && *f.trim <= ae.MaxTrim) {
		return spec, false, Usagef("--trim %v: must be in [0, %v]", *f.trim, ae.MaxTrim)
	}
	spec.Trim = *f.trim
	return spec, auto, nil
}

// SetLinear makes the flags describe a linear autoencoder with the plain
// (untrimmed) objective unless the user set those flags: sweep-k's
// default, whose training errors are compared with PCA's closed form.
func (f *ModelFlags) SetLinear(fs *flag.FlagSet) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for name, val := range map[string]string{"hidden": "", "activation": "linear", "code-activation": "linear", "output": "linear", "trim": "0"} {
		if !set[name] {
			if err := fs.Set(name, val); err != nil {
				panic("cli: SetLinear: " + err.Error()) // fs lacks the model flags
			}
		}
	}
}

// Command is one subcommand of a multi-command binary.
type Command struct {
	Name string                                         // as typed after the binary
	Run  func(ctx context.Context, args []string) error // the rest of the arguments
}

// Dispatch runs the subcommand named by os.Args[1] with a context ended by
// SIGINT or SIGTERM (see Signals), printing usage for no command or -h, and exits with
// Exit's conventions.
func Dispatch(binary, usage string, cmds ...Command) {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprint(os.Stderr, usage)
		if len(os.Args) < 2 {
			os.Exit(ExitUsage)
		}
		return
	}
	ctx := Signals(binary)
	var names []string
	for _, c := range cmds {
		if c.Name == os.Args[1] {
			Exit(binary+" "+c.Name, c.Run(ctx, os.Args[2:]))
		}
		names = append(names, c.Name)
	}
	Exit(binary, Usagef("unknown command %q (want %s)", os.Args[1], strings.Join(names, ", ")))
}

// Signals returns a context ended by the first SIGINT or SIGTERM: the
// process then shuts down gracefully (final checkpoint, committed offsets).
// A second signal during that shutdown is acknowledged on standard error
// and otherwise ignored, so the graceful work still finishes; a third exits
// at once with status 130, losing what was unfinished.
func Signals(binary string) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 3)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		for n := 1; ; n++ {
			sig := <-ch
			switch n {
			case 1:
				cancel()
			case 2:
				fmt.Fprintf(os.Stderr, "%s: %v again: already shutting down (once more to exit at once)\n", binary, sig)
			default:
				fmt.Fprintf(os.Stderr, "%s: %v a third time: exiting without finishing shutdown\n", binary, sig)
				os.Exit(130)
			}
		}
	}()
	return ctx
}

// Strings is a flag of comma-separated values (flag.Value), such as
// --brokers a:9092,b:9092: setting it replaces the list, so that a
// default is not appended to. Register it over a config's field with
// fs.Var((*cli.Strings)(&cfg.Brokers), ...): its default is the field's.
type Strings []string

// String returns the values comma-separated.
func (s *Strings) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

// Set replaces the list with v's comma-separated values, trimmed; empty
// ones are dropped.
func (s *Strings) Set(v string) error {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	*s = out
	return nil
}

// SetUsage makes fs's -h print text (the usage lines, a blank line and
// what the command does), then "Flags:" and the flags with their defaults.
func SetUsage(fs *flag.FlagSet, text string) {
	fs.Usage = func() {
		_, _ = fmt.Fprint(fs.Output(), strings.TrimRight(text, "\n")+"\n\nFlags:\n")
		fs.PrintDefaults()
	}
}
