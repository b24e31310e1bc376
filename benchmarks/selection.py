"""Choosing K without labels, measured: every label-free selection criterion (lightning_modules.clustering
.SELECTION_CRITERIA, the code the sweep's select_clustering runs) on data sets whose number of classes is known.

    .venv/bin/python -m benchmarks.selection [--quick | --rescore]

The first draw (35 data sets): digits and class subsets of it (K 3 to 10), long-tailed digits (largest / smallest 10
and 100), a coarse grouping of the digits (K = 3: labels of groups of digits), digits through `random/256` features;
scikit-learn's wine, breast cancer and iris (standardised); the registered `synthetic` source as frozen-backbone-like
tables — L2-normalised, anisotropic Gaussian mixtures in 384 dimensions with K in {5, 10, 20, 50, 100}, balanced or
long-tailed (ratio 10), class centres spread 0.6 or 0.3 (k-means finds ACC 0.35 to 0.99 at the true K). On each,
k-means (the platform's LloydKMeans, 2 seeds) at K on a log grid from 2 to 4 x the true K (the true K included), and
on TEMI_DATASETS TEMI too (the demo's TEMI settings, config/config.yaml; one seed): every criterion picks a method and
K; the labels then give each pick's ACC and NMI regret against the best configuration in hindsight, and K̂ / K.
The fresh draw (18 data sets, fresh_benchmarks) is measured the same way, k-means only.

Candidates for the default: every registered criterion, each run-level one with a parsimony rule (criteria.
Parsimonious at TOLERANCES), the mean rank of every pair of them (criteria.MeanRank) and, from the second stage, the
voted picks of every pair and triple (criteria.VotedPick: the largest K, or the median of three).

No tuning on the test, in two stages (conclude). First: the first draw's data sets split in two halves by a fixed
seed (SPLIT_SEED) before any result, the default of the family without voted picks chosen on one half, measured on
the other (it missed the target). Second, after that half had been seen: the family with voted picks, its default
chosen on the whole first draw and measured on a fresh draw of data sets (fresh_benchmarks, FRESH_SEED), declared
before it ran. The protocol itself is measured too: the choice over 1,000 random halvings of the first draw (how much
an outcome owes its split), and the best any one criterion of the family does on it, chosen in hindsight.

Results: benchmarks/selection.json (the committed table, with every data set's configuration table so candidates
can be re-scored without clustering again; `--rescore` concludes again from its picks; `--quick`, a few small data
sets for the tests, writes results/bench/selection-quick.json).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from itertools import combinations
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import normalized_mutual_info_score

from lightning_modules.clustering import SELECTION_CRITERIA, estimator_params
from lightning_modules.clustering.criteria import Criterion, MeanRank, Parsimonious, RunView, VotedPick, disagreement
from lightning_modules.clustering.kmeans import LloydKMeans
from lightning_modules.clustering.selection import configuration_scores, regret
from lightning_modules.metrics.clustering import effective_clusters, knn_agreement

RESULT = Path(__file__).with_name("selection.json")
QUICK_RESULT = Path("results/bench/selection-quick.json")
SPLIT_SEED = 2026  # fixed before any result: which data sets choose the default, which measure it
FRESH_SEED = 2027  # the second stage's data sets (fresh_benchmarks), drawn after the first stage was concluded
SPLIT_REPEATS = 1000  # random halvings beside the declared one: how much the protocol's outcome owes its split
SEEDS = (0, 1)
GRID_POINTS = 8
AGREEMENT_NEIGHBOURS = 10  # as the clustering runs measure it (lightning_modules.clustering.run)
SAMPLE_ROWS = 2000
TEMI_DATASETS = ("digits", "digits-lt10")  # the claims sweep's settings where TEMI runs
TEMI_SEEDS = (0,)  # one seed (2 min of the 10-minute budget): stability does not score TEMI's configurations
TOLERANCES = (0.05, 0.1, 0.2)  # the parsimony rule's, as shares of a method's range of scores
TARGET = {"mean_acc_regret": 0.03, "median_abs_log_ratio": math.log(1.5)}


@dataclass(frozen=True)
class Benchmark:
    name: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]]  # -> (features, labels)


def _digits(**options) -> Callable:
    def load():
        from lightning_modules.data import load_dataset

        data = load_dataset("digits", "all", options)
        return np.asarray(data.images, dtype=np.float32).reshape(len(data), -1) / 16.0, data.labels
    return load


def _random_features(dims: int) -> Callable:
    def load():
        import torch

        from lightning_modules.backbones import build_from_entry

        x, labels = _digits()()
        model, _ = build_from_entry({"spec": f"random/{dims}"})
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy(), labels
    return load


def _sklearn(name: str) -> Callable:
    def load():
        import sklearn.datasets
        from sklearn.preprocessing import StandardScaler

        data = getattr(sklearn.datasets, f"load_{name}")()
        return StandardScaler().fit_transform(data.data).astype(np.float32), data.target
    return load


def _synthetic(k: int, ratio: float, separation: float, **options) -> Callable:
    def load():
        from lightning_modules.data import load_dataset

        data = load_dataset("synthetic", "all", {"n_classes": k, "dims": 384, "samples_per_class": max(20, 1500 // k),
                                                 "separation": separation, "imbalance_ratio": ratio, "anisotropy": 2.0,
                                                 "normalise": True, "seed": k, **options})
        return np.asarray(data.images), data.labels
    return load


COARSE = {"round": [0, 6, 8, 9], "straight": [1, 4, 7], "curved": [2, 3, 5]}


def benchmarks() -> list[Benchmark]:
    items = [Benchmark("digits", _digits()), Benchmark("digits-random256", _random_features(256)),
             Benchmark("digits-lt10", _digits(imbalance={"ratio": 10, "seed": 0})),
             Benchmark("digits-lt100", _digits(imbalance={"ratio": 100, "seed": 0})),
             Benchmark("digits-coarse3", _digits(coarse_groups=COARSE, granularity="coarse"))]
    for classes in ([0, 1, 2], [3, 5, 8], [1, 4, 7, 9], [0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [0, 2, 4, 6, 8, 9], [1, 2, 3, 4, 5, 6, 7]):
        items.append(Benchmark(f"digits-{''.join(map(str, classes))}", _digits(classes=classes)))
    items += [Benchmark(name, _sklearn(name)) for name in ("wine", "breast_cancer", "iris")]
    for k in (5, 10, 20, 50, 100):
        for ratio in (1.0, 10.0):
            for separation in (0.6, 0.3):  # the class centres' spread: k-means' difficulty varies with it and K
                items.append(Benchmark(f"mixture-k{k}-r{ratio:g}-sep{separation:g}", _synthetic(k, ratio, separation)))
    return items


def fresh_benchmarks(seed: int = FRESH_SEED) -> list[Benchmark]:
    """The second stage's test: data sets drawn by `seed`, declared before any of them was run — digits' class
    subsets of 3, 4, 6 and 8 classes and a long tail of ratio 20 (new draws), digits through `random/512`; mixtures
    with K in {3, 8, 15, 30, 70} (none of the first draw's), balanced or long-tailed (ratio 5), spread, anisotropy and
    dimension drawn at random, and two with classes grouped in superclasses (K is the classes')."""
    rng = np.random.default_rng(seed)
    items = []
    for size in (3, 4, 6, 8):
        classes = sorted(rng.choice(10, size, replace=False).tolist())
        items.append(Benchmark(f"fresh-digits-{''.join(map(str, classes))}", _digits(classes=classes)))
    items += [Benchmark("fresh-digits-lt20", _digits(imbalance={"ratio": 20, "seed": int(rng.integers(1, 1000))})),
              Benchmark("fresh-digits-random512", _random_features(512))]
    for k in (3, 8, 15, 30, 70):
        for ratio in (1.0, 5.0):
            separation, anisotropy = round(float(rng.uniform(0.3, 0.6)), 2), round(float(rng.uniform(1.0, 3.0)), 1)
            dims = int(rng.choice([256, 384, 768]))
            items.append(Benchmark(f"fresh-mixture-k{k}-r{ratio:g}-sep{separation:g}-d{dims}",
                                   _synthetic(k, ratio, separation, anisotropy=anisotropy, dims=dims,
                                              seed=int(rng.integers(1000, 10**6)))))
    for k, groups in ((12, 3), (40, 8)):
        separation = round(float(rng.uniform(0.3, 0.6)), 2)
        items.append(Benchmark(f"fresh-hierarchy-k{k}-g{groups}-sep{separation:g}",
                               _synthetic(k, 1.0, separation, n_superclasses=groups,
                                          seed=int(rng.integers(1000, 10**6)))))
    return items


def k_grid(k_true: int) -> list[int]:
    """A log grid from 2 to 4 x the true K, the true K included."""
    return sorted(set(np.round(np.geomspace(2, 4 * k_true, GRID_POINTS)).astype(int).tolist()) | {k_true})


def temi_settings() -> dict:
    """The demo's TEMI settings (config/config.yaml, its defaults filled in), as its sweep runs them."""
    import yaml

    from lightning_modules.core.project import ROOT
    from lightning_modules.workflow.config import validate_config

    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    return estimator_params(config["clustering"]["methods"]["temi"])


def fit(method: str, x: np.ndarray, k: int, seed: int, neighbours: np.ndarray) -> np.ndarray:
    if method == "kmeans":
        return LloydKMeans(k, seed=seed, max_iter=100).fit(x).labels_
    from lightning_modules.clustering.heads.estimator import TEMIClustering

    return TEMIClustering(k, seed=seed, **{**temi_settings(), "progress": False}).fit(x, neighbours).labels_


def method_views(x: np.ndarray, ks: list[int], methods=("kmeans",), sample_seed: int = 0):
    """Each method at every K and seed as the selection sees the runs (RunView on one sample of rows), and each
    run's assignments (for the regret)."""
    from lightning_modules.search.neighbours import knn_graph
    from lightning_modules.search.rows import l2_normalise

    graph_k = max(AGREEMENT_NEIGHBOURS, 50 if "temi" in methods else 0)  # TEMI samples from 50 (the demo's graph)
    neighbours = np.asarray(knn_graph(x, k=graph_k)[0])
    rows = np.sort(np.random.default_rng(sample_seed).permutation(len(x))[:SAMPLE_ROWS])
    unit = l2_normalise(x[rows])
    views, assignments = [], {}
    for method in methods:
        for k in ks:
            for seed in TEMI_SEEDS if method == "temi" else SEEDS:
                labels = fit(method, x, k, seed, neighbours)
                assignments[(method, k, seed)] = labels
                views.append(RunView(method=method, k=k, seed=seed, assignments=labels, rows=rows, x=unit,
                                     knn_agreement=knn_agreement(labels, neighbours[:, :AGREEMENT_NEIGHBOURS]),
                                     effective_clusters=effective_clusters(labels)))
    return views, assignments


def candidates() -> dict[str, Criterion]:
    """The family the default is chosen from, beyond the registered criteria (see the module's docstring; the first
    stage's is the same without the voted picks)."""
    plain = [name for name in SELECTION_CRITERIA.names()
             if not SELECTION_CRITERIA.get(name).table_level and SELECTION_CRITERIA.get(name).pick is Criterion.pick]
    registered = {(kind, frozenset(SELECTION_CRITERIA.get(name).OF)) for name in SELECTION_CRITERIA.names()
                  for kind in (MeanRank, VotedPick) if issubclass(SELECTION_CRITERIA.get(name), kind)}
    family: dict[str, Criterion] = {f"{base}@{t:g}": Parsimonious(base, t) for base in plain for t in TOLERANCES}
    family.update({f"{a}+{b}": MeanRank(a, b) for a, b in combinations(plain, 2)
                   if (MeanRank, frozenset((a, b))) not in registered})  # a registered one is scored under its name
    family.update({f"largest:{'+'.join(of)}": VotedPick(*of, rule="largest") for size in (2, 3)
                   for of in combinations(plain, size) if (VotedPick, frozenset(of)) not in registered})
    family.update({f"median:{'+'.join(of)}": VotedPick(*of, rule="median") for of in combinations(plain, 3)})
    return family


def evaluate(benchmark: Benchmark) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per criterion and candidate: its pick, ACC and NMI (means over seeds) and the regrets; and the
    configuration table it was picked from."""
    x, labels = benchmark.load()
    k_true = len(np.unique(labels))
    methods = ("kmeans", "temi") if benchmark.name in TEMI_DATASETS else ("kmeans",)
    views, assignments = method_views(x, k_grid(k_true), methods)
    # ACC as one-to-one matched accuracy at every K: the platform's ACC is undefined above the classes, and a pick
    # there must cost what its unmatched clusters get wrong
    labelled = pd.DataFrame([{"method": method, "k": k, "seed": seed, "acc": 1 - disagreement(labels, found),
                              "nmi": normalized_mutual_info_score(labels, found)}
                             for (method, k, seed), found in assignments.items()])
    table, instances = configuration_scores(views, labelled)
    family = candidates()
    table = pd.concat([table, pd.DataFrame({name: candidate.score_table(table) for name, candidate in family.items()})],
                      axis=1)
    picks = regret(table, {**instances, **family}, [*SELECTION_CRITERIA.names(), *family])
    picks["dataset"], picks["k_true"], picks["n"] = benchmark.name, k_true, len(x)
    picks["registered"] = picks.criterion.isin(SELECTION_CRITERIA.names())
    picks["abs_log_ratio"] = np.abs(np.log(picks.k.astype(float) / k_true))
    return picks, table.drop(columns=list(family)).assign(dataset=benchmark.name)


def split(names: list[str], seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(development, held-out): the data sets in two halves by `seed`."""
    order = np.random.default_rng(seed).permutation(len(names))
    half = len(names) // 2
    return sorted(names[i] for i in order[:half]), sorted(names[i] for i in order[half:])


def summary(picks: pd.DataFrame) -> pd.DataFrame:
    grouped = picks.groupby("criterion")
    return pd.DataFrame({
        "mean_acc_regret": grouped.acc_regret.mean(), "worst_acc_regret": grouped.acc_regret.max(),
        "mean_nmi_regret": grouped.nmi_regret.mean(), "worst_nmi_regret": grouped.nmi_regret.max(),
        "median_abs_log_ratio": grouped.abs_log_ratio.median(),
        "share_k_exact": grouped.apply(lambda g: float((g.k == g.k_true).mean()), include_groups=False),
    }).sort_values(["mean_acc_regret", "mean_nmi_regret"])


def meets_target(on_held_out: pd.Series) -> bool:
    return bool(on_held_out.mean_acc_regret <= TARGET["mean_acc_regret"]
                and on_held_out.median_abs_log_ratio <= TARGET["median_abs_log_ratio"])


def protocol_spread(picks: pd.DataFrame, repeats: int = SPLIT_REPEATS) -> dict:
    """The protocol itself measured: over `repeats` random halvings (seeds 0 to repeats - 1), the default chosen on
    one half as main() chooses it and its numbers on the other; and the best any one criterion of the family does on
    every data set, chosen in hindsight — a criterion family whose best misses the target there cannot meet it on a
    held-out half but by the luck of the split."""
    table = picks.pivot(index="dataset", columns="criterion")  # one pick per data set and criterion
    acc, nmi, log_ratio = (table[column].to_numpy() for column in ("acc_regret", "nmi_regret", "abs_log_ratio"))
    criteria, names = table["acc_regret"].columns, list(table.index)
    outcomes = []
    for seed in range(repeats):
        development, held_out = (table.index.get_indexer(half) for half in split(names, seed))
        # summary()'s order (mean ACC regret, then mean NMI regret), on arrays: 1,000 halvings in a second
        column = np.lexsort((nmi[development].mean(0), acc[development].mean(0)))[0]
        held = pd.Series({"mean_acc_regret": acc[held_out, column].mean(),
                          "median_abs_log_ratio": np.median(log_ratio[held_out, column])})
        outcomes.append({"default": criteria[column], **held, "met": meets_target(held)})
    outcomes = pd.DataFrame(outcomes)
    quantiles = (0.05, 0.5, 0.95)
    everywhere = summary(picks)
    best = everywhere.iloc[0]
    return {
        "repeats": repeats,
        "held_out_mean_acc_regret": dict(zip(map(str, quantiles), outcomes.mean_acc_regret.quantile(quantiles))),
        "held_out_median_abs_log_ratio": dict(zip(map(str, quantiles),
                                                  outcomes.median_abs_log_ratio.quantile(quantiles))),
        "share_target_met": float(outcomes.met.mean()),
        "defaults_chosen": outcomes.default.value_counts(normalize=True).head(5).to_dict(),
        "best_in_hindsight": {"criterion": str(everywhere.index[0]), "mean_acc_regret": best.mean_acc_regret,
                              "median_abs_log_ratio": best.median_abs_log_ratio,
                              "meets_target": meets_target(best)},
    }


VOTED = ("largest:", "median:")  # the voted picks' names (candidates(votes=True))


def conclude(picks: pd.DataFrame, configurations: list[dict], seconds: float) -> dict:
    """Two stages. The first, as declared when it ran: the first draw's data sets split in halves by SPLIT_SEED, the
    default of the family without voted picks chosen on one half and measured on the other (it missed the target).
    The second: the family with voted picks — added after the first stage's held-out half had been seen, so that
    half can no longer test anything — its default chosen on the whole first draw and measured on the fresh draw
    (fresh_benchmarks, FRESH_SEED), which nothing was chosen on. The platform's default is the second stage's."""
    first, fresh = picks[picks.draw == "first"], picks[picks.draw == "fresh"]
    halves = split(sorted(first.dataset.unique()))
    voted = first.criterion.str.startswith(VOTED) | first.criterion.isin(
        [name for name in SELECTION_CRITERIA.names() if issubclass(SELECTION_CRITERIA.get(name), VotedPick)])
    unvoted = first[~voted]
    first_default = str(summary(unvoted[unvoted.dataset.isin(halves[0])]).index[0])
    first_held = summary(unvoted[unvoted.dataset.isin(halves[1]) & (unvoted.criterion == first_default)]).iloc[0]
    on_development = summary(first)
    default = str(on_development.index[0])
    on_held_out = summary(fresh)
    chosen = on_held_out.loc[default]
    registered = on_held_out.index.isin(SELECTION_CRITERIA.names())
    return {
        "default": default,
        "chosen_on": "lowest mean ACC regret on every data set of the first draw, of the registered criteria and the "
                     "candidates (parsimony rules, pairs' mean ranks, voted picks of two and three criteria)",
        "fresh_seed": FRESH_SEED, "development": sorted(first.dataset.unique()),
        "held_out": sorted(fresh.dataset.unique()), "temi_datasets": TEMI_DATASETS,
        "target": TARGET, "default_on_held_out": chosen.to_dict(), "target_met": meets_target(chosen),
        "first_stage": {"split_seed": SPLIT_SEED, "development": halves[0], "held_out": halves[1],
                        "default": first_default, "default_on_held_out": first_held.to_dict(),
                        "target_met": meets_target(first_held)},
        "split_spread": protocol_spread(first),
        "development_table": on_development.reset_index().to_dict("records"),
        "held_out_table": on_held_out[registered].reset_index().to_dict("records"),
        "held_out_candidates": on_held_out[~registered].reset_index().to_dict("records"),
        "picks": picks.drop(columns=[c for c in picks if c.startswith("best_") and c.endswith("_run")])
                      .to_dict("records"),
        "configurations": configurations,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three small data sets and one fresh (the tests' variant)")
    parser.add_argument("--rescore", action="store_true",
                        help="conclude again from the committed picks (benchmarks/selection.json), clustering nothing")
    arguments = parser.parse_args()
    if arguments.rescore:
        committed = json.loads(RESULT.read_text())
        record = conclude(pd.DataFrame(committed["picks"]), committed["configurations"], committed["seconds"])
    else:
        draws = {"first": benchmarks(), "fresh": fresh_benchmarks()}
        if arguments.quick:
            draws = {"first": [b for b in draws["first"] if b.name in ("digits-012", "iris", "mixture-k5-r1-sep0.3")],
                     "fresh": draws["fresh"][:1]}
        started = time.perf_counter()
        frames, tables = [], []
        for draw, benchmark in ((draw, benchmark) for draw, items in draws.items() for benchmark in items):
            item_started = time.perf_counter()
            picks, table = evaluate(benchmark)
            frames.append(picks.assign(draw=draw))
            tables.append(table.assign(draw=draw))
            print(f"{benchmark.name}: K = {picks.k_true.iloc[0]}, {time.perf_counter() - item_started:.1f} s",
                  flush=True)
        record = conclude(pd.concat(frames, ignore_index=True), pd.concat(tables, ignore_index=True).to_dict("records"),
                          time.perf_counter() - started)
    out = QUICK_RESULT if arguments.quick else RESULT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=float) + "\n")
    default, chosen, spread = record["default"], record["default_on_held_out"], record["split_spread"]
    on_development = pd.DataFrame(record["development_table"]).set_index("criterion")
    on_held_out = pd.DataFrame(record["held_out_table"] + record["held_out_candidates"]).set_index("criterion")
    shown = on_held_out.index.isin(SELECTION_CRITERIA.names()) | (on_held_out.index == default)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 10)
    print(f"\nfirst draw ({len(record['development'])} data sets; the best 15):\n"
          f"{on_development.head(15).round(3)}")
    print(f"\nfresh draw ({len(record['held_out'])} data sets; registered criteria and the default):\n"
          f"{on_held_out[shown].round(3)}")
    stage = record["first_stage"]
    print(f"\nfirst stage (split {stage['split_seed']}): {stage['default']}, held-out mean ACC regret "
          f"{stage['default_on_held_out']['mean_acc_regret']:.3f}; {'met' if stage['target_met'] else 'NOT met'}")
    print(f"\ndefault (chosen on the first draw): {default}; on the fresh draw: mean ACC regret "
          f"{chosen['mean_acc_regret']:.3f} (target <= {TARGET['mean_acc_regret']}), median |log(K̂/K)| "
          f"{chosen['median_abs_log_ratio']:.3f} (target <= {TARGET['median_abs_log_ratio']:.3f}); "
          f"{'met' if record['target_met'] else 'NOT met'}; {record['seconds']:.0f} s -> {out}")
    regret, best = spread["held_out_mean_acc_regret"], spread["best_in_hindsight"]
    print(f"over {spread['repeats']} random halvings: held-out mean ACC regret {regret['0.5']:.3f} "
          f"(90% between {regret['0.05']:.3f} and {regret['0.95']:.3f}), target met in "
          f"{spread['share_target_met']:.1%}; the family's best on all data sets, in hindsight: {best['criterion']} "
          f"(mean ACC regret {best['mean_acc_regret']:.3f}, median |log(K̂/K)| {best['median_abs_log_ratio']:.3f})")


if __name__ == "__main__":
    main()
