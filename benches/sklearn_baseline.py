#!/usr/bin/env python3
"""scikit-learn baseline for the softmax head, on the very features `benches/head.rs` uses.

Run the Rust side first (it writes target/head_bench/), then this, in the same session:

    cargo bench --bench head -- --quick
    python benches/sklearn_baseline.py            # needs numpy and scikit-learn

It times LogisticRegressionCV (the same C = 1/l2 grid, 5 stratified folds, multinomial lbfgs,
scikit-learn's default max_iter=100 and tol=1e-4, log-loss scoring) and one LogisticRegression fit
at the chosen C, on the same standardised features the Rust head trains on, and prints one JSON
object. `--raw` skips the standardisation (as a user calling scikit-learn naively would).
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "head_bench"))
    ap.add_argument("--raw", action="store_true", help="do not standardise the features")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--scoring", default="neg_log_loss", help="LogisticRegressionCV scoring (default neg_log_loss)")
    args = ap.parse_args()

    from sklearn import __version__ as skv
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    meta = json.load(open(os.path.join(args.dir, "meta.json")))
    n, d = meta["n"], meta["d"]
    x = np.fromfile(os.path.join(args.dir, "features.f32"), dtype="<f4").reshape(n, d).astype(np.float64)
    y = np.fromfile(os.path.join(args.dir, "labels.u32"), dtype="<u4").astype(np.int64)
    if not args.raw:
        sd = x.std(axis=0)
        sd[sd <= 1e-6 * np.maximum(np.abs(x.mean(axis=0)), 1e-6)] = 1.0
        x = (x - x.mean(axis=0)) / sd
    cs = meta["C_grid"]

    try:
        from threadpoolctl import threadpool_info
        threads = sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()})
    except ImportError:
        threads = "threadpoolctl not installed"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        cv = StratifiedKFold(n_splits=meta["folds"], shuffle=True, random_state=0)
        t = time.perf_counter()
        model = LogisticRegressionCV(Cs=cs, cv=cv, solver="lbfgs", scoring=args.scoring,
                                     max_iter=args.max_iter, tol=args.tol)
        model.fit(x, y)
        cv_s = time.perf_counter() - t
        cv_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    chosen_c = float(np.atleast_1d(model.C_)[0])
    # scores_: {class: array (folds, Cs)}; identical for every class in the multinomial case.
    scores = next(iter(model.scores_.values())).mean(axis=0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t = time.perf_counter()
        single = LogisticRegression(C=chosen_c, solver="lbfgs", max_iter=args.max_iter, tol=args.tol).fit(x, y)
        single_s = time.perf_counter() - t
        single_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)

    one = x[:1]
    reps = 2000
    t = time.perf_counter()
    for _ in range(reps):
        single.predict_proba(one)
    predict_one_us = (time.perf_counter() - t) / reps * 1e6

    out = {
        "sklearn": skv,
        "threads": threads,
        "standardised": not args.raw,
        "tol": args.tol,
        "max_iter": args.max_iter,
        "scoring": args.scoring,
        "C_grid": cs,
        "mean_cv_score_per_C": [round(float(s), 4) for s in scores],
        "chosen_C": chosen_c,
        "cv_fit_s": round(cv_s, 3),
        "cv_convergence_warnings": cv_warnings,
        "single_fit_s": round(single_s, 3),
        "single_fit_iterations": int(np.max(single.n_iter_)),
        "single_convergence_warnings": single_warnings,
        "predict_proba_one_us": round(predict_one_us, 1),
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
