"""Expected sentence-level error detection (`sentence_max_*`, `sentence_sum_*`), computed
independently of ueb: word rows with a sentence id (`group`, rows of a sentence not always
adjacent), an error flag and a score u; numpy forms each sentence's error (any word wrong) and
its max and sum of u, in order of each sentence's first row; scikit-learn's `roc_auc_score` and
`average_precision_score` (errors positive for `aupr_error`, correct positive on -u for
`aupr_success`) score them.

    python -m venv venv && venv/bin/pip install scikit-learn==1.9.1 numpy==2.4.6
    venv/bin/python make_sentences_fixture.py
"""

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def main():
    rng = np.random.default_rng(5)
    n_sent = 120
    lengths = rng.integers(1, 12, n_sent)
    group = np.repeat(np.arange(n_sent), lengths)
    # Swap a few neighbouring rows so that some sentences' rows are not all adjacent.
    for i in rng.choice(len(group) - 1, 20, replace=False):
        group[[i, i + 1]] = group[[i + 1, i]]
    n = len(group)
    errors = rng.random(n) < 0.08
    u = np.round(rng.random(n) + 0.5 * errors, 2)  # rounded: ties occur
    order = list(dict.fromkeys(group.tolist()))
    out = {"group": group.tolist(), "errors": errors.tolist(), "u": u.tolist()}
    for agg in ("max", "sum"):
        e = np.array([errors[group == g].any() for g in order])
        if agg == "max":
            s = np.array([u[group == g].max() for g in order])
        else:
            # Row order, left to right, as ueb sums.
            s = np.array([float(sum(u[group == g].tolist())) for g in order])
        out[agg] = {
            "errors": e.tolist(),
            "u": s.tolist(),
            "roc_auc": roc_auc_score(e, s),
            "aupr_error": average_precision_score(e, s),
            "aupr_success": average_precision_score(~e, -s),
        }
    path = Path(__file__).with_name("sentences.json")
    path.write_text(json.dumps(out) + "\n")
    print("wrote", path, {a: round(out[a]["roc_auc"], 4) for a in ("max", "sum")})


if __name__ == "__main__":
    main()
