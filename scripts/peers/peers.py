#!/usr/bin/python3
"""Peer detectors for recon's evaluations, on the splits recon writes.

Usage: peers.py DIR

DIR holds one sub-directory per split with train.csv and test.csv (no header,
numbers only, row-major). For each split the script fits

  iforest: scikit-learn IsolationForest(n_estimators=100, random_state=seed)
           on the raw training rows;
  knn:     the distance to the 5th nearest training row (the row itself
           excluded when scoring the training rows), on rows standardized
           with the training rows' mean and standard deviation (scale 1 for
           a constant column, as StandardScaler does);

and writes iforest.txt and knn.txt beside them: one test score per line,
higher is more anomalous. The seed is read from the file "seed".
"""
import os
import sys

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler


def main(root):
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            continue
        train = np.loadtxt(os.path.join(d, "train.csv"), delimiter=",", ndmin=2)
        test = np.loadtxt(os.path.join(d, "test.csv"), delimiter=",", ndmin=2)
        with open(os.path.join(d, "seed")) as f:
            seed = int(f.read().strip())
        forest = IsolationForest(n_estimators=100, random_state=seed).fit(train)
        np.savetxt(os.path.join(d, "iforest.txt"), -forest.score_samples(test))
        scaler = StandardScaler().fit(train)
        nn = NearestNeighbors(n_neighbors=5).fit(scaler.transform(train))
        dist, _ = nn.kneighbors(scaler.transform(test))
        np.savetxt(os.path.join(d, "knn.txt"), dist[:, -1])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: peers.py DIR")
    main(sys.argv[1])
