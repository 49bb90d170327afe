package exp

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
)

func gen(n, p, rank int, seed uint64) ([]float64, []string) {
	basis := synth.Basis(rand.New(rand.NewPCG(1, 0xba5e)), rank, p)
	rng := rand.New(rand.NewPCG(seed, 0x10ad))
	x := make([]float64, n*p)
	truth := make([]string, n)
	kinds := []string{"spike", "off-subspace", "scaled"}
	for i := 0; i < n; i++ {
		rec := x[i*p : i*p+p]
		synth.Sample(rng, rec, basis, rank, 0.4)
		truth[i] = "normal"
		if rng.Float64() < 0.01 {
			truth[i] = kinds[rng.IntN(3)]
			switch truth[i] {
			case "spike":
				rec[rng.IntN(p)] += 8 + 4*rng.Float64()
			case "off-subspace":
				for j := range rec {
					rec[j] += 2.5 * rng.NormFloat64()
				}
			case "scaled":
				for j := range rec {
					rec[j] *= 4
				}
			}
		}
	}
	return x, truth
}

func TestExp(t *testing.T) {
	p := 30
	x, _ := gen(40000, p, 3, 42)
	y, truth := gen(50000, p, 3, 7)
	for _, n := range []int{10000, 20000, 40000} {
		for _, b := range []int{64, 256} {
			for _, lr := range []float64{1e-3, 3e-3, 1e-2} {
				cfg := fit.Default()
				cfg.Spec.Output = ae.Linear
				cfg.Batch, cfg.LR, cfg.Epochs = b, lr, 1
				res, err := fit.Fit(context.Background(), cfg, x[:n*p], p, nil)
				if err != nil {
					t.Fatal(err)
				}
				z := make([]float64, len(y))
				for i := 0; i < len(truth); i++ {
					res.Normalizer.Transform(z[i*p:i*p+p], y[i*p:i*p+p])
				}
				s := make([]float64, len(truth))
				res.Model.Score(s, z)
				q := func(f float64) float64 { return fit.Quantile(s, f) }
				th := q(.5) * math.Pow(q(.75)/q(.25), 4/1.349)
				var tp, fp, fn int
				miss := map[string]int{}
				for i := range s {
					a := truth[i] != "normal"
					switch {
					case a && s[i] > th:
						tp++
					case a:
						fn++
						miss[truth[i]]++
					case s[i] > th:
						fp++
					}
				}
				fmt.Printf("n=%d b=%d lr=%v rounds=%d: th %.2f median %.2f precision %.3f recall %.3f missed %v\n", n, b, lr, n*8/10/b, th, q(.5),
					float64(tp)/float64(tp+fp), float64(tp)/float64(tp+fn), miss)
			}
		}
	}
}
