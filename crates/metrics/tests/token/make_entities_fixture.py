"""Expected entity-level precision, recall and F1 (`entity_precision`, `entity_recall`,
`entity_f1`) and the entities themselves, computed independently of ueb by seqeval 1.2.2 in its
default mode (conlleval's span rules): `get_entities` per sentence and the micro-averaged
`precision_score`, `recall_score` and `f1_score` over the sentences.

Cases: hand-written sentences for the rules (an `I-` without its `B-`, `B-X B-X`, a type change
inside a span, a hyphenated type, IOBES tags, empty predictions), then random gold/predicted
pairs over WNUT-17's and CoNLL-2003's tags, where the prediction copies the gold tag or draws
another, so that partial, shifted and mistyped entities all occur.

    python -m venv venv && venv/bin/pip install seqeval==1.2.2 scikit-learn==1.9.1 numpy==2.4.6
    venv/bin/python make_entities_fixture.py
"""

import json
import warnings
from pathlib import Path

import numpy as np
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

WNUT = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group",
        "I-group", "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]
CONLL = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

HAND = [
    ["I-PER", "I-PER", "O", "B-LOC"],
    ["B-PER", "B-PER", "I-PER", "O"],
    ["B-PER", "I-LOC", "I-LOC", "O", "I-ORG"],
    ["B-creative-work", "I-creative-work", "I-group", "B-group"],
    ["S-PER", "B-LOC", "E-LOC", "E-LOC", "I-LOC", "S-MISC", "I-MISC"],
    ["O", "O", "O"],
    [],
    ["B-ORG"],
]
# Predictions for the hand-written gold sentences.
HAND_PRED = [
    ["B-PER", "I-PER", "O", "B-LOC"],
    ["B-PER", "I-PER", "I-PER", "O"],
    ["B-PER", "B-LOC", "I-LOC", "O", "B-ORG"],
    ["B-creative-work", "I-creative-work", "B-group", "I-group"],
    ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "S-MISC", "B-MISC"],
    ["O", "B-MISC", "O"],
    [],
    ["O"],
]


def random_case(rng, tags, n_sentences):
    gold, pred = [], []
    for _ in range(n_sentences):
        n = int(rng.integers(1, 16))
        g = [tags[0] if rng.random() < 0.5 else tags[int(rng.integers(0, len(tags)))] for _ in range(n)]
        p = [t if rng.random() < 0.7 else tags[int(rng.integers(0, len(tags)))] for t in g]
        gold.append(g)
        pred.append(p)
    return gold, pred


def scores(gold, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "entity_precision": precision_score(gold, pred),
            "entity_recall": recall_score(gold, pred),
            "entity_f1": f1_score(gold, pred),
        }


def main():
    rng = np.random.default_rng(17)
    cases = [{"name": "hand", "gold": HAND, "predicted": HAND_PRED}]
    for name, tags, n in [("wnut17", WNUT, 300), ("conll2003", CONLL, 300), ("no_entities", ["O"], 5)]:
        gold, pred = random_case(rng, tags, n)
        cases.append({"name": name, "gold": gold, "predicted": pred})
    # Nothing predicted where there are entities: precision and F1 are 0 by seqeval's rule.
    cases.append({"name": "nothing_predicted", "gold": [["B-PER", "I-PER"], ["O"]], "predicted": [["O", "O"], ["O"]]})
    for case in cases:
        case.update(scores(case["gold"], case["predicted"]))
        case["gold_entities"] = [[list(e) for e in get_entities(s)] for s in case["gold"]]
    path = Path(__file__).with_name("entities.json")
    path.write_text(json.dumps({"cases": cases}) + "\n")
    print("wrote", path, [(c["name"], round(c["entity_f1"], 4)) for c in cases])


if __name__ == "__main__":
    main()
