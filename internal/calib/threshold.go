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
// 1.6 times). The threshold is at most bodyBound, the quantile
// extrapolated from the body (Q80 to Q97) alone: anomalies a few times the
// normal scores, below the fence and more common than rate, would
// otherwise set it among themselves (thyroid in ADBench: a false-alarm
// rate of 0.06% for 0.5%). It returns NaN for no scores.
func AlertThreshold(scores []float64, rate float64) float64 {
	if len(scores) == 0 {
		return math.NaN()
	}
	all := slices.Clone(scores)
	slices.Sort(all)
	return min(fencedQuantile(all, rate), bodyBound(all, rate))
}

// fencedQuantile is the 1 - rate quantile of sorted scores v below the
// contamination fence, extrapolated on a Pareto tail when too few lie
// above it.
func fencedQuantile(v []float64, rate float64) float64 {
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

// BodyLow and BodyHigh are the quantiles between which bodyBound fits its
// tail: above the median, below the top 3% where contamination lives.
const (
	BodyLow  = 0.80
	BodyHigh = 0.97
)

// bodyBound extrapolates the 1 - rate quantile of sorted scores v from
// their body alone: a Pareto tail through the BodyLow and BodyHigh
// quantiles, P(S > s) = (1 - BodyHigh) (s / Q_BodyHigh)^-alpha. Anomalies
// that sit above the normal records' tail but below the fence (a few
// percent of the stream, each only a few times the normal scores: the
// usual case on real data) would otherwise set the threshold among
// themselves. It is +Inf when rate is not below 1 - BodyHigh or the body
// has no spread.
func bodyBound(v []float64, rate float64) float64 {
	if rate >= 1-BodyHigh {
		return math.Inf(1)
	}
	a, b := quantileSorted(v, BodyLow), quantileSorted(v, BodyHigh)
	if !(a > 0 && b > a) {
		return math.Inf(1)
	}
	alpha := math.Log((1-BodyLow)/(1-BodyHigh)) / math.Log(b/a)
	return b * math.Pow((1-BodyHigh)/rate, 1/alpha)
}

// TailRecords is how many scores above it the threshold's quantile needs to
// be read off the held-out scores; with fewer (a small window, or a rate
// below 20 per window) the tail beyond is extrapolated.
const TailRecords = 20

func quantileSorted(v []float64, q float64) float64 { return ae.QuantileSorted(v, q) }

func quantile(s []float64, q float64) float64 { return ae.Quantile(s, q) }

// RuleText names the threshold rule in checkpoints: "alert-rate A".
func RuleText(rate float64) string { return fmt.Sprintf("alert-rate %g", rate) }
