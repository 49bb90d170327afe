package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"

	"github.com/recon-ad/recon/internal/adbench"
	"github.com/recon-ad/recon/internal/auc"
	"github.com/recon-ad/recon/internal/fit"
)

// adbenchEval runs both protocols on every set of dir with seeds seeds:
// recon's default offline fit against IsolationForest and KNN on the same
// splits.
func adbenchEval(ctx context.Context, dir, python, peers string, seeds, workers int, verbose bool, only string) error {
	sets, err := adbench.LoadDir(dir, "label")
	if err != nil {
		return err
	}
	if only != "" {
		var keep []*adbench.Set
		for _, s := range sets {
			for _, o := range strings.Split(only, ",") {
				if strings.Contains(s.Name, o) {
					keep = append(keep, s)
					break
				}
			}
		}
		sets = keep
	}
	for _, proto := range []adbench.Protocol{adbench.Contaminated, adbench.Clean} {
		var splits []adbench.Split
		for _, s := range sets {
			for seed := 1; seed <= seeds; seed++ {
				splits = append(splits, adbench.NewSplit(s, proto, uint64(seed)))
			}
		}
		peerScores, err := adbench.Peers(ctx, python, peers, splits)
		if err != nil {
			return err
		}
		rows := make([]splitResult, len(splits))
		errs := make([]error, len(splits))
		next := make(chan int)
		var wg sync.WaitGroup
		for range max(workers, 1) {
			wg.Go(func() {
				for i := range next {
					rows[i], errs[i] = fitSplit(ctx, splits[i], peerScores[i])
					if verbose && errs[i] == nil {
						r := rows[i]
						fmt.Fprintf(os.Stderr, "  %-18s %s seed %d: recon %.4f iforest %.4f knn %.4f far %.4f (epochs %d best %d)\n",
							splits[i].Set.Name, proto, splits[i].Seed, r.roc, r.ifRoc, r.knnRoc, r.far, r.epochs, r.best)
					}
				}
			})
		}
		for i := range splits {
			next <- i
		}
		close(next)
		wg.Wait()
		for _, e := range errs {
			if e != nil {
				return e
			}
		}
		fmt.Printf("%s protocol, %d seeds (ROC-AUC, PR-AUC; FAR and recall at recon's threshold; IForest's recall at recon's FAR)\n", proto, seeds)
		fmt.Printf("  %-20s %7s %7s %7s %7s %7s %7s %7s %7s %7s\n", "set", "recon", "iforest", "knn", "pr", "if-pr", "far", "recall", "if-rec", "epochs")
		var mean [9]float64
		for i := 0; i < len(rows); i += seeds {
			var m [9]float64
			for _, r := range rows[i : i+seeds] {
				for j, v := range r.vec() {
					m[j] += v / float64(seeds)
				}
			}
			fmt.Printf("  %-20s %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.1f\n", splits[i].Set.Name, m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8])
			for j := range m {
				mean[j] += m[j] / float64(len(sets))
			}
		}
		fmt.Printf("  %-20s %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.1f\n\n", "mean", mean[0], mean[1], mean[2], mean[3], mean[4], mean[5], mean[6], mean[7], mean[8])
	}
	return nil
}

type splitResult struct {
	roc, pr, ifRoc, ifPr, knnRoc float64
	far, recall, ifRecall        float64
	epochs, best                 int
}

func (r splitResult) vec() [9]float64 {
	return [9]float64{r.roc, r.ifRoc, r.knnRoc, r.pr, r.ifPr, r.far, r.recall, r.ifRecall, float64(r.epochs)}
}

func fitSplit(ctx context.Context, sp adbench.Split, peer adbench.PeerScores) (splitResult, error) {
	p := sp.Set.Width()
	cfg := base
	cfg.Seed = sp.Seed
	res, err := fit.Fit(ctx, cfg, sp.Rows(sp.Train), p, nil)
	if err != nil {
		return splitResult{}, fmt.Errorf("%s seed %d: %w", sp.Set.Name, sp.Seed, err)
	}
	test := sp.Rows(sp.Test)
	labels := sp.Labels(sp.Test)
	scores := res.Score(test)
	var r splitResult
	r.epochs, r.best = res.Epochs, res.BestEpoch
	if r.roc, err = auc.ROC(scores, labels); err != nil {
		return r, err
	}
	r.pr, _ = auc.PR(scores, labels)
	r.ifRoc, _ = auc.ROC(peer.IForest, labels)
	r.ifPr, _ = auc.PR(peer.IForest, labels)
	r.knnRoc, _ = auc.ROC(peer.KNN, labels)
	r.far, r.recall = adbench.Alarms(scores, labels, res.Threshold)
	r.ifRecall = adbench.RecallAt(peer.IForest, labels, r.far)
	if math.IsNaN(r.far) {
		r.far = 0
	}
	return r, nil
}
