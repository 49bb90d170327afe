// Command eval measures recon's anomaly ranking on labelled public data with
// the default offline configuration (make eval):
//
//   - breast cancer (scikit-learn's copy, Debian python3-sklearn): benign
//     normal, malignant anomalous;
//   - Fashion-MNIST (Debian dataset-fashion-mnist): each class in turn
//     normal, the test set's other classes anomalous.
//
// Protocol: standardize on training rows; train on a seeded 60% of the
// normal rows; test on the other 40% of normals plus all anomalies; ROC-AUC
// and PR-AUC with anomaly as positive; mean over seeds.
package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/recon-ad/recon/internal/auc"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/table"
)

func main() {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	var (
		bcPath  = fs.String("breast-cancer", "/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv", "scikit-learn's breast_cancer.csv")
		fmDir   = fs.String("fashion-mnist", "/usr/share/datasets/fashion-mnist", "directory of the Fashion-MNIST idx .gz files")
		seeds   = fs.Int("seeds", 5, "seeds to average over")
		sets    = fs.String("sets", "breast-cancer,fashion-mnist", "data sets to run, comma-separated")
		classes = fs.String("classes", "", "Fashion-MNIST classes to run (default all ten), comma-separated")
		workers = fs.Int("workers", runtime.NumCPU(), "fits to run at once")
		verbose = fs.Bool("v", false, "print every fit")
		epochs  = fs.Int("epochs", 0, "most epochs (0: automatic)")
		lr      = fs.Float64("lr", 0, "learning rate (0: the default)")
		batch   = fs.Int("batch", 0, "batch size (0: the default)")
		abDir   = fs.String("adbench", "../shared/data/adbench", "`directory` of labelled CSV sets (a label column, 1 anomaly) for --sets adbench")
		abOnly  = fs.String("only", "", "with --sets adbench: only the sets whose names contain one of these, comma-separated")
		python  = fs.String("python", "/usr/bin/python3", "Python with scikit-learn, for the peer detectors")
		peers   = fs.String("peers", "scripts/peers/peers.py", "the peer detectors' script")
	)
	streamCfg := addStreamFlags(fs)
	// The model flags are trainer fit's, with fit.Default's model as their
	// defaults: with none given, eval measures the default configuration.
	model := cli.AddModelFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: eval [flags]\n\nRanks anomalies on labelled public data with recon's default offline model\n(or the model the flags describe) and prints ROC-AUC and PR-AUC per data set.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, os.Args[1:]); err != nil {
		cli.Exit("eval", err)
	}
	spec, auto, err := model.Spec()
	if err != nil {
		cli.Exit("eval", err)
	}
	base = fit.Default()
	base.Spec, base.Auto = spec, auto
	if *epochs > 0 {
		base.Epochs = *epochs
	}
	if *lr > 0 {
		base.LR = *lr
	}
	if *batch > 0 {
		base.Batch = *batch
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	for _, s := range strings.Split(*sets, ",") {
		var err error
		switch s {
		case "breast-cancer":
			err = breastCancer(ctx, *bcPath, *seeds, *workers, *verbose)
		case "adbench":
			err = adbenchEval(ctx, *abDir, *python, *peers, *seeds, *workers, *verbose, *abOnly)
		case "adbench-stream":
			err = streamEval(ctx, streamCfg, *abDir, *python, *peers, *abOnly)
		case "fashion-mnist":
			err = fashion(ctx, *fmDir, *classes, *seeds, *workers, *verbose)
		default:
			err = fmt.Errorf("unknown data set %q", s)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "eval:", err)
			os.Exit(1)
		}
	}
}

// base is the configuration every fit uses: fit.Default unless overridden.
var base fit.Config

// job is one protocol run: normals and anomalies (row-major, width p).
type job struct {
	name              string
	seed              uint64
	normal, anomalous []float64
	p                 int
}

type outcome struct {
	job      job
	roc, pr  float64
	epochs   int
	elapsed  time.Duration
	trainRow int
}

func run(ctx context.Context, j job) (outcome, error) {
	p := j.p
	n := len(j.normal) / p
	rng := rand.New(rand.NewPCG(j.seed, 0xe7a1))
	perm := rng.Perm(n)
	nTrain := int(0.6 * float64(n))
	train := make([]float64, 0, nTrain*p)
	for _, r := range perm[:nTrain] {
		train = append(train, j.normal[r*p:(r+1)*p]...)
	}
	cfg := base
	cfg.Seed = j.seed
	res, err := fit.Fit(ctx, cfg, train, p, nil)
	if err != nil {
		return outcome{}, err
	}
	test := make([]float64, 0, (n-nTrain)*p+len(j.anomalous))
	var pos []bool
	for _, r := range perm[nTrain:] {
		test = append(test, j.normal[r*p:(r+1)*p]...)
		pos = append(pos, false)
	}
	test = append(test, j.anomalous...)
	for range len(j.anomalous) / p {
		pos = append(pos, true)
	}
	// The score the scorer gives: standardized, reconstructed, the
	// residuals whitened (not the plain squared error).
	scores := res.Score(test)
	roc, err := auc.ROC(scores, pos)
	if err != nil {
		return outcome{}, err
	}
	pr, err := auc.PR(scores, pos)
	if err != nil {
		return outcome{}, err
	}
	return outcome{job: j, roc: roc, pr: pr, epochs: res.Epochs, elapsed: res.Elapsed, trainRow: nTrain}, nil
}

// runAll runs jobs on workers goroutines and returns outcomes in job order.
func runAll(ctx context.Context, jobs []job, workers int, verbose bool) ([]outcome, error) {
	out := make([]outcome, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for i := range next {
				out[i], errs[i] = run(ctx, jobs[i])
				if verbose && errs[i] == nil {
					o := out[i]
					fmt.Fprintf(os.Stderr, "  %-28s seed %d: ROC-AUC %.4f PR-AUC %.4f (%d rows, %d epochs, %v)\n",
						o.job.name, o.job.seed, o.roc, o.pr, o.trainRow, o.epochs, o.elapsed.Round(time.Millisecond))
				}
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, errors.Join(errs...)
}

func breastCancer(ctx context.Context, path string, seeds, workers int, verbose bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("breast cancer data: %w (apt-get install python3-sklearn)", err)
	}
	defer f.Close()
	// The first line is "569,30,malignant,benign"; then 30 features and the
	// target (0 malignant, 1 benign).
	t, err := table.Read(f, table.Options{Skip: 1, Header: table.HeaderNo, Label: "30"})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var normal, anomalous []float64
	for r := 0; r < t.Rows; r++ {
		row := t.X[r*t.Width() : (r+1)*t.Width()]
		if t.Labels[r] == "1" {
			normal = append(normal, row...)
		} else {
			anomalous = append(anomalous, row...)
		}
	}
	var jobs []job
	for s := 1; s <= seeds; s++ {
		jobs = append(jobs, job{name: "breast-cancer", seed: uint64(s), normal: normal, anomalous: anomalous, p: t.Width()})
	}
	fmt.Printf("breast cancer: %d benign (normal), %d malignant (anomalous), %d features; %d seeds\n",
		len(normal)/t.Width(), len(anomalous)/t.Width(), t.Width(), seeds)
	out, err := runAll(ctx, jobs, workers, verbose)
	if err != nil {
		return err
	}
	var roc, pr float64
	fmt.Printf("  %-6s %8s %8s %7s\n", "seed", "ROC-AUC", "PR-AUC", "epochs")
	for _, o := range out {
		fmt.Printf("  %-6d %8.4f %8.4f %7d\n", o.job.seed, o.roc, o.pr, o.epochs)
		roc += o.roc
		pr += o.pr
	}
	fmt.Printf("  %-6s %8.4f %8.4f   (target ROC-AUC >= 0.96, IsolationForest's mean)\n\n", "mean", roc/float64(len(out)), pr/float64(len(out)))
	return nil
}

var fashionNames = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

func fashion(ctx context.Context, dir, classList string, seeds, workers int, verbose bool) error {
	trainX, trainY, err := readIDX(dir, "train")
	if err != nil {
		return err
	}
	testX, testY, err := readIDX(dir, "t10k")
	if err != nil {
		return err
	}
	const p = 28 * 28
	classes := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if classList != "" {
		classes = nil
		for _, s := range strings.Split(classList, ",") {
			var c int
			if _, err := fmt.Sscan(s, &c); err != nil || c < 0 || c > 9 {
				return fmt.Errorf("class %q: want 0..9", s)
			}
			classes = append(classes, c)
		}
	}
	var jobs []job
	for _, c := range classes {
		var normal, anomalous []float64
		for i, y := range trainY {
			if int(y) == c {
				normal = append(normal, trainX[i*p:(i+1)*p]...)
			}
		}
		for i, y := range testY {
			if int(y) != c {
				anomalous = append(anomalous, testX[i*p:(i+1)*p]...)
			}
		}
		for s := 1; s <= seeds; s++ {
			jobs = append(jobs, job{name: fmt.Sprintf("%d %s", c, fashionNames[c]), seed: uint64(s), normal: normal, anomalous: anomalous, p: p})
		}
	}
	fmt.Printf("Fashion-MNIST: per class, its training images normal, the test set's other classes anomalous; %d seeds\n", seeds)
	out, err := runAll(ctx, jobs, workers, verbose)
	if err != nil {
		return err
	}
	fmt.Printf("  %-16s %8s %8s\n", "class", "ROC-AUC", "PR-AUC")
	var roc, pr float64
	for i := 0; i < len(out); i += seeds {
		var r, q float64
		for _, o := range out[i : i+seeds] {
			r += o.roc
			q += o.pr
		}
		r /= float64(seeds)
		q /= float64(seeds)
		roc += r
		pr += q
		fmt.Printf("  %-16s %8.4f %8.4f\n", out[i].job.name, r, q)
	}
	k := float64(len(out) / seeds)
	fmt.Printf("  %-16s %8.4f %8.4f   (target ROC-AUC >= 0.92; IsolationForest 0.917, PyTorch 784-128-32-128-784 AE 0.902)\n\n", "mean", roc/k, pr/k)
	return nil
}

// readIDX reads Fashion-MNIST's <prefix>-images-idx3-ubyte.gz and labels,
// scaling pixels to [0,1].
func readIDX(dir, prefix string) (x []float64, y []byte, err error) {
	read := func(name string, wantMagic uint32) ([]uint32, []byte, error) {
		f, err := os.Open(dir + "/" + name)
		if err != nil {
			return nil, nil, fmt.Errorf("Fashion-MNIST: %w (apt-get install dataset-fashion-mnist)", err)
		}
		defer f.Close()
		z, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		var magic uint32
		if err := binary.Read(z, binary.BigEndian, &magic); err != nil {
			return nil, nil, fmt.Errorf("%s: bad idx magic %d (%w)", name, magic, err)
		}
		if magic != wantMagic {
			return nil, nil, fmt.Errorf("%s: bad idx magic %d", name, magic)
		}
		dims := make([]uint32, wantMagic&0xff)
		if err := binary.Read(z, binary.BigEndian, dims); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		data, err := io.ReadAll(z)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		size := 1
		for _, d := range dims {
			size *= int(d)
		}
		if len(data) != size {
			return nil, nil, fmt.Errorf("%s: %d bytes of data, dimensions %v need %d", name, len(data), dims, size)
		}
		return dims, data, nil
	}
	dims, px, err := read(prefix+"-images-idx3-ubyte.gz", 2051)
	if err != nil {
		return nil, nil, err
	}
	_, y, err = read(prefix+"-labels-idx1-ubyte.gz", 2049)
	if err != nil {
		return nil, nil, err
	}
	if int(dims[0]) != len(y) {
		return nil, nil, fmt.Errorf("%s: %d images, %d labels", prefix, dims[0], len(y))
	}
	x = make([]float64, len(px))
	for i, b := range px {
		x[i] = float64(b) / 255
	}
	return x, y, nil
}
