package calib

import (
	"fmt"
	"math"
	"slices"

	"github.com/recon-ad/recon/pkg/ae"
)

// DefaultAlertRate is the share of normal records the default threshold
// lets alert.
const DefaultAlertRate = 0.005

// WhiteningTrim and WhiteningIters make the residual whitening robust to
// anomalies among the held-out records (ae.FitWhitening): it is refitted
// twice without the 5% of records scoring highest.
const (
	WhiteningTrim  = 0.05
	WhiteningIters = 2
)

// FenceSpreads is how far above the body of the scores the contamination
// fence lies, in powers of the body's spread: fence = Q90 (Q90/Q50)^5.
const FenceSpreads = 5

// AlertThreshold returns the threshold at which about rate of the normal
// records among scores (held-out scores, anomalies possibly among them)
// score above it. Records beyond a fence far above the body of the
// distribution, Q90 (Q90/Q50)^FenceSpreads (in log terms FenceSpreads
// times the Q50-Q90 spread above Q90), are taken for anomalies and left
// out; the threshold is the 1 - rate quantile of the rest. The fence
// follows the tail's heaviness: for chi-square-like scores with 30 degrees
// of freedom it lies near 4.9 Q90, for log-normal ones with sigma 1 at 600
// Q90 (7.7 sigma), so it drops clear anomalies (a few percent of the
// stream would otherwise lift the quantile into them and cap recall at
// rate over their share) and
// hardly any normal record. When half the scores or more are zero (exact
// reconstructions) no fence is drawn. When fewer than TailRecords of the
// rest lie above the quantile, the tail beyond the top TailRecords is
// taken as Pareto (exponential in log score) and the threshold
// extrapolated on it: heavier than a chi-square tail, so it errs towards
// fewer alerts (an exponential tail let 7 times the rate through on a
// trained model's scores, the order statistic 1 to 3 times, Pareto 0.8 to
// 1.6 times). It returns NaN for no scores.
func AlertThreshold(scores []float64, rate float64) float64 {
	if len(scores) == 0 {
		return math.NaN()
	}
	v := slices.Clone(scores)
	slices.Sort(v)
	if q50, q90 := quantileSorted(v, 0.5), quantileSorted(v, 0.9); q50 > 0 {
		fence := q90 * math.Pow(q90/q50, FenceSpreads)
		if n, _ := slices.BinarySearch(v, math.Nextafter(fence, math.Inf(1))); n > 0 {
			v = v[:n]
		}
	}
	if rate*float64(len(v)) >= TailRecords {
		return quantileSorted(v, 1-rate)
	}
	// Too few scores above the quantile to read it off: extrapolate a
	// Pareto tail (peaks over threshold, exponential in log score) fitted
	// to the top TailRecords scores.
	q := min(TailRecords/float64(len(v)), 0.5)
	u := quantileSorted(v, 1-q)
	var excess float64
	var k int
	for _, x := range v {
		if x > u {
			excess += math.Log(x / u)
			k++
		}
	}
	if k == 0 || !(u > 0) || q <= rate {
		return quantileSorted(v, 1-rate)
	}
	return u * math.Exp(excess/float64(k)*math.Log(q/rate))
}

// TailRecords is how many scores above it the threshold's quantile needs to
// be read off the held-out scores; with fewer (a small window, or a rate
// below 20 per window) the tail beyond is extrapolated.
const TailRecords = 20

func quantileSorted(v []float64, q float64) float64 { return ae.QuantileSorted(v, q) }

func quantile(s []float64, q float64) float64 { return ae.Quantile(s, q) }

// RuleText names the threshold rule in checkpoints: "alert-rate A".
func RuleText(rate float64) string { return fmt.Sprintf("alert-rate %g", rate) }
