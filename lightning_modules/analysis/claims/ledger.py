"""The papers' findings as tests over a sweep's tables. Each finding is a small function that reduces the tables to
values at its *unit of replication* (what is independent: a seed, an OOD set, a cluster condition — named in the
`unit` column, and `n` counts units) and returns the test it ran; `ledger` runs them all and decides every verdict
by one rule:

    The deciding interval is the finding's interval at level 1 − ALPHA × p / p_Holm, Holm's adjustment taken over
    every finding tested (at that level it excludes the threshold exactly when p_Holm < ALPHA). The finding is
    supported when the deciding interval lies wholly on the finding's side of its threshold (inside its margins, for
    a finding of no effect), contradicted when it lies wholly on the other side, and inconclusive otherwise.

`low` / `high` are the raw 95% interval, `low_decides` / `high_decides` the deciding one. A finding is not testable
only for the reasons `NotTestable` names (a missing table, variant or column); a finding whose code raises anything
else fails the ledger, naming the finding. Values without spread are tested as `metrics.stats.MeanTest` says (no
variance below MIN_N_WITHOUT_SPREAD: inconclusive, never p = 0).

Findings are numbered as in issue 29 (C1 ... C12); their statements are ours, from TEMI (BMVC 2023), "scaling deep
clustering" (ImageNet-21K), C-EDM, the CLIP-OOD paper (TMLR) and SSLSDN. `context` carries what the tables do not:
each dataset's role in the sweep (`datasets`: name -> {imbalanced_of, easy, largest, coarse_chance}) and the
declared margins (`margins`), read from the config by `lightning_modules.analysis.claims.claims_context`.

Clustering and diffusion findings replicate over seeds: a seed's runs (every head against the k-means run they
share, every representation of the same images) are averaged into one value, so the verdict is about the sweep's own
settings (fixed effects); `benchmarks/ledger_calibration.py` measures the error rates of every finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from lightning_modules.clustering import METHODS
from lightning_modules.metrics.stats import ALPHA, LEVEL, MIN_N_WITHOUT_SPREAD, MeanTest, holm, mean_test

VERDICTS = ("supported", "contradicted", "inconclusive", "not testable")
COLUMNS = ["claim", "statement", "verdict", "unit", "n", "test", "metric", "effect", "low", "high", "threshold",
           "side", "margin", "level_decides", "low_decides", "high_decides", "p_value", "p_holm", "reason"]
RULE = ("supported / contradicted when the deciding interval (level 1 − α·p/p_Holm, Holm over the findings tested, "
        f"α = {ALPHA}) lies wholly on the finding's side of its threshold / wholly on the other side (for a finding "
        "of no effect: inside / outside its declared margins); inconclusive otherwise")
SEED_UNIT = "seed (a seed's runs averaged: the verdict is about the sweep's settings)"


class NotTestable(Exception):
    """The sweep's tables lack what a finding needs; the message says what."""


class FindingError(RuntimeError):
    """A finding's code raised: the claims job fails with the finding's name, never a designed-looking verdict."""


@dataclass
class Evidence:
    """What a finding hands the ledger: its test over values at its unit. `estimate` gives the effect, n, the
    two-sided p against the threshold and intervals at any level; `corrected` multiplies that p where the finding
    picked one of several candidates (Bonferroni); `side` is +1 when the finding claims the effect lies above the
    threshold, -1 below, 0 for a finding of no effect (inside ±margin)."""

    test: str
    metric: str
    unit: str
    estimate: MeanTest | Correlation
    side: int = 1
    corrected: int = 1
    margin: float = np.nan

    @property
    def p_value(self) -> float:
        p = self.estimate.p_value
        return min(1.0, p * self.corrected) if np.isfinite(p) else np.nan


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho over n units, tested for equivalence to zero within ±margin (two one-sided tests) and against
    the margin (a strong correlation): Fisher's z with Fieller, Hartley and Pearson's variance 1.06 / (n − 3) for a
    rank correlation. p is the smaller of the two; intervals are dual to both (scipy has no interval for Spearman)."""

    x: np.ndarray
    y: np.ndarray
    margin: float
    threshold: float = 0.0

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def effect(self) -> float:
        return float(stats.spearmanr(self.x, self.y).statistic)

    @property
    def no_variance(self) -> bool:
        return len(np.unique(self.x)) < 2 or len(np.unique(self.y)) < 2

    @property
    def _z(self) -> tuple[float, float]:
        return float(np.arctanh(np.clip(self.effect, -0.999999, 0.999999))), float(np.sqrt(1.06 / (self.n - 3)))

    @property
    def p_value(self) -> float:
        if self.no_variance:
            return np.nan
        z, se = self._z
        bound = np.arctanh(self.margin)
        equivalent = 2 * max(stats.norm.sf((z + bound) / se), stats.norm.sf((bound - z) / se))
        strong = 2 * min(stats.norm.sf((z - bound) / se), stats.norm.sf((-bound - z) / se))
        return float(min(1.0, equivalent, strong))

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        if self.no_variance:
            return np.nan, np.nan
        z, se = self._z
        half = stats.norm.ppf((1 + level) / 2) * se
        return float(np.tanh(z - half)), float(np.tanh(z + half))


def _table(tables: dict, name: str, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = tables.get(name)
    if frame is None or frame.empty:
        raise NotTestable(f"no {name} table")
    missing = [column for column in columns if column not in frame]
    if missing:
        raise NotTestable(f"the {name} table has no {', '.join(missing)}")
    return frame


def _margin(context: dict, name: str) -> float:
    """A declared margin: the config's (claims.margins, in the context), else the schema's default."""
    from lightning_modules.analysis.claims import default_margins

    return float({**default_margins(), **(context.get("margins") or {})}[name])


CLUSTERING_COLUMNS = ("dataset", "backbone", "method", "k", "seed", "acc")


def _head_gaps(runs: pd.DataFrame) -> pd.DataFrame:
    """head ACC − k-means ACC for every head run with a k-means run of the same dataset, backbone, K and seed."""
    keys = ["dataset", "backbone", "k", "seed"]
    kmeans = runs[runs.method == "kmeans"][keys + ["acc"]].drop_duplicates(keys)
    heads = [name for name in METHODS.names() if METHODS.entry(name).info.get("head")]  # registry info `head`
    gaps = runs[runs.method.isin(heads)].merge(kmeans, on=keys, suffixes=("", "_kmeans"))
    gaps["gap"] = gaps.acc - gaps.acc_kmeans
    gaps = gaps[np.isfinite(gaps.gap)]  # ACC is undefined where K exceeds the classes' labels
    if gaps.empty:
        raise NotTestable("no clustering head shares a dataset, backbone, K and seed with a k-means run")
    return gaps


def _per_seed(frame: pd.DataFrame, value: str) -> tuple[np.ndarray, int]:
    """One value per seed (the mean of that seed's settings), and the number of settings averaged."""
    frame = frame[np.isfinite(frame[value])]
    settings = frame.groupby(["dataset", "backbone", "k", "method"]).ngroups
    return frame.groupby("seed")[value].mean().to_numpy(), settings


def _balanced(gaps: pd.DataFrame, context: dict) -> tuple[pd.DataFrame, list[str]]:
    imbalanced = [name for name, role in context.get("datasets", {}).items() if role.get("imbalanced_of")]
    return gaps[~gaps.dataset.isin(imbalanced)], imbalanced


def c1_heads_beat_kmeans(tables: dict, context: dict) -> Evidence:
    gaps = _head_gaps(_table(tables, "clustering", CLUSTERING_COLUMNS))
    # the papers' benchmarks are balanced; how imbalance changes the gap is C2's question, not this one's
    gaps, imbalanced = _balanced(gaps, context)
    if gaps.empty:
        raise NotTestable("no head with k-means runs on a balanced dataset")
    values, settings = _per_seed(gaps, "gap")
    left_out = f" (imbalanced variants left out: {', '.join(imbalanced)})" if imbalanced else ""
    return Evidence(f"head ACC − k-means ACC (same dataset, backbone, K, seed), averaged over {settings} settings "
                    f"per seed; one-sample t-test over seeds{left_out}", "acc difference", SEED_UNIT, mean_test(values))


def c2_imbalance_shrinks_the_gap(tables: dict, context: dict) -> Evidence:
    gaps = _head_gaps(_table(tables, "clustering", CLUSTERING_COLUMNS))
    pairs = {name: role["imbalanced_of"] for name, role in context.get("datasets", {}).items()
             if role.get("imbalanced_of")}
    if not pairs:
        raise NotTestable("no imbalanced variant of a dataset in the sweep")
    by = ["backbone", "k", "method", "seed"]
    shrinkage = []
    for imbalanced, balanced in pairs.items():
        a = gaps[gaps.dataset == balanced].set_index(by).gap
        b = gaps[gaps.dataset == imbalanced].set_index(by).gap
        both = a.index.intersection(b.index)
        shrinkage.append((a.loc[both] - b.loc[both]).rename("shrinkage"))
    shrinkage = pd.concat(shrinkage).reset_index()
    if shrinkage.empty:
        raise NotTestable("no head runs at the same backbone, K and seed on a dataset and its imbalanced variant")
    per_seed = shrinkage.groupby("seed").shrinkage.mean().to_numpy()
    return Evidence("(head − k-means ACC) on the balanced dataset minus on its imbalanced variant, averaged over "
                    "backbone x K x head per seed; one-sample t-test over seeds", "gap shrinkage (acc)", SEED_UNIT,
                    mean_test(per_seed))


def c3_kmeans_lags_on_easy_benchmarks(tables: dict, context: dict) -> Evidence:
    names = [name for name, role in context.get("datasets", {}).items() if role.get("easy")]
    if not names:
        raise NotTestable("no easy benchmark in the sweep (claims.easy_datasets)")
    gaps = _head_gaps(_table(tables, "clustering", CLUSTERING_COLUMNS))
    gaps = gaps[gaps.dataset.isin(names)]
    if gaps.empty:
        raise NotTestable(f"no head with k-means runs on the easy benchmarks {', '.join(names)}")
    values, settings = _per_seed(gaps, "gap")
    return Evidence(f"head ACC − k-means ACC on easy benchmarks ({', '.join(names)}), averaged over {settings} "
                    "settings per seed; one-sample t-test over seeds", "acc difference", SEED_UNIT, mean_test(values))


@dataclass(frozen=True)
class WelchTest:
    """mean(a) − mean(b) with Welch's test and interval (scipy's ttest_ind and its confidence_interval)."""

    a: np.ndarray
    b: np.ndarray
    threshold: float = 0.0

    @property
    def n(self) -> int:
        return len(self.a) + len(self.b)

    @property
    def effect(self) -> float:
        return float(self.a.mean() - self.b.mean())

    @property
    def no_variance(self) -> bool:
        return len(self.a) >= 2 and len(self.b) >= 2 and self.a.var() + self.b.var() == 0

    def _result(self):
        if len(self.a) < 2 or len(self.b) < 2 or self.no_variance:
            return None
        return stats.ttest_ind(self.a, self.b, equal_var=False)

    @property
    def p_value(self) -> float:
        result = self._result()
        return np.nan if result is None else float(result.pvalue)

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        result = self._result()
        return (np.nan, np.nan) if result is None else tuple(map(float, result.confidence_interval(level)))


def c4_gap_shrinks_at_the_largest_scale(tables: dict, context: dict) -> Evidence:
    largest = [name for name, role in context.get("datasets", {}).items() if role.get("largest")]
    if not largest:
        raise NotTestable("no largest-scale benchmark in the sweep (claims.largest_datasets; ImageNet-21K in the paper)")
    gaps = _head_gaps(_table(tables, "clustering", CLUSTERING_COLUMNS))
    # one value per dataset x backbone x K (heads sharing a k-means baseline and seeds averaged together)
    per_setting = gaps.groupby(["dataset", "backbone", "k"]).gap.mean().reset_index()
    at_scale = per_setting[per_setting.dataset.isin(largest)].gap.to_numpy()
    smaller = per_setting[~per_setting.dataset.isin(largest)].gap.to_numpy()
    if not len(at_scale) or not len(smaller):
        raise NotTestable("head and k-means runs are needed both at the largest scale and on a smaller benchmark")
    return Evidence("mean (head − k-means ACC) on smaller benchmarks minus at the largest scale, one value per "
                    "dataset x backbone x K (heads and seeds averaged); Welch's t-test", "gap shrinkage (acc)",
                    "setting (dataset x backbone x K)", WelchTest(smaller, at_scale))


def c5_second_clusters_capture_coarse_classes(tables: dict, context: dict) -> Evidence:
    runs = _table(tables, "clustering", ("dataset", "backbone", "method", "k", "seed", "coarse_acc_2nd"))
    chance = {name: role["coarse_chance"] for name, role in context.get("datasets", {}).items()
              if role.get("coarse_chance") is not None}
    runs = runs[runs.dataset.isin(chance) & runs.coarse_acc_2nd.notna()]
    if runs.empty:
        raise NotTestable("no run with coarse labels (a dataset's coarse_groups) and a second cluster prediction")
    runs = runs.assign(above=runs.coarse_acc_2nd.to_numpy() - runs.dataset.map(chance).to_numpy())
    values, settings = _per_seed(runs, "above")
    return Evidence("coarse accuracy of the second most likely cluster minus its chance level (sum of squared coarse "
                    f"group shares), averaged over {settings} settings per seed; one-sample t-test over seeds",
                    "coarse acc above chance", SEED_UNIT, mean_test(values))


DIFFUSION_UNIT = "diffusion model (dataset x seed)"


def _fd_column(runs: pd.DataFrame) -> str:
    for column in ("fd_inception", "fd_classifier", "fd_backbone"):
        if column in runs and runs[column].notna().any():
            return column
    raise NotTestable("the diffusion table has no Fréchet distance")


def _best_clusters_against(tables: dict, reference: str, transform=lambda fd: fd, threshold: float = 0.0):
    """transform(FD(reference)) − transform(FD(the cluster condition of the lowest mean FD)), paired on dataset and
    seed, against `threshold`; its p is Bonferroni-corrected over the cluster conditions the best was picked from."""
    runs = _table(tables, "diffusion", ("dataset", "cond", "seed"))
    score = _fd_column(runs)
    by_seed = runs.dropna(subset=[score]).pivot_table(index=["dataset", "seed"], columns="cond", values=score,
                                                       aggfunc="first")
    clusters = sorted(c for c in by_seed.columns if c.startswith("clusters-"))
    if reference not in by_seed or not clusters:
        raise NotTestable(f"needs '{reference}' runs and cluster-conditioned runs")
    cond = by_seed[clusters].mean().idxmin()
    both = by_seed[[reference, cond]].dropna()
    if both.empty:
        raise NotTestable(f"no cluster-conditioned run shares a dataset and seed with a '{reference}' run")
    values = transform(both[reference].to_numpy()) - transform(both[cond].to_numpy())
    return score, cond, len(clusters), mean_test(values, threshold)


def c6_clusters_beat_unconditional(tables: dict, context: dict) -> Evidence:
    score, cond, tried, estimate = _best_clusters_against(tables, "none")
    return Evidence(f"{score}(none) − {score}({cond}), paired on dataset and seed, at the best of {tried} cluster "
                    f"conditions (p Bonferroni x {tried}); one-sample t-test", f"{score} improvement", DIFFUSION_UNIT,
                    estimate, corrected=tried)


def c6b_clusters_match_classes(tables: dict, context: dict) -> Evidence:
    margin = _margin(context, "fd_ratio")
    score, cond, tried, estimate = _best_clusters_against(tables, "class", np.log, -np.log1p(margin))
    return Evidence(f"log {score}(class) − log {score}({cond}), paired on dataset and seed, at the best of {tried} "
                    f"cluster conditions (p Bonferroni x {tried}); non-inferiority against the declared margin: "
                    f"clusters' FD at most {margin:.0%} above the classes' (threshold −log(1 + {margin:g}))",
                    f"log {score} ratio (class / clusters)", DIFFUSION_UNIT, estimate, corrected=tried, margin=margin)


def c7_fd_optimal_k_within_the_bound(tables: dict, context: dict) -> Evidence:
    runs = _table(tables, "diffusion", ("dataset", "cond", "seed", "k"))
    bounds = _table(tables, "cluster_bounds", ("dataset", "bound"))
    score = _fd_column(runs)
    bound = bounds.groupby("dataset").bound.max()
    clustered = runs[runs.cond.str.startswith("clusters-") & runs.k.notna() & runs.dataset.isin(bound.index)]
    clustered = clustered.assign(within=clustered.k <= clustered.dataset.map(bound))
    margins = []
    for dataset, group in clustered.groupby("dataset"):
        within = sorted(group[group.within].k.unique(), reverse=True)  # nearest the bound first
        above = sorted(group[~group.within].k.unique())
        pairs = min(len(within), len(above))
        if pairs == 0:
            continue
        # like with like: the same number of K on each side, the nearest to the bound (a minimum over three K
        # against one would be biased low)
        fd = group[group.k.isin(within[:pairs] + above[:pairs])].groupby(["seed", "within"])[score].min().unstack()
        margins.append((fd[False] - fd[True]).dropna())
    if not margins:
        raise NotTestable("needs cluster-conditioned runs at K both at or below and above a dataset's upper cluster "
                          "bound (with K on one side only, the FD-optimal K is there by construction)")
    margins = pd.concat(margins)
    return Evidence(f"per dataset and seed, lowest {score} over the j K nearest above the upper cluster bound minus "
                    "the lowest over the j nearest at or below it (j: the fewer side's count); one-sample t-test",
                    f"{score} margin of the bound", DIFFUSION_UNIT, mean_test(margins.to_numpy()))


def c8_no_link_between_clustering_and_generation(tables: dict, context: dict) -> Evidence:
    runs = _table(tables, "diffusion", ("dataset", "cond", "method", "k"))
    clustering = _table(tables, "clustering", ("dataset", "backbone", "method", "k", "nmi"))
    score = _fd_column(runs)
    clustered = runs[runs.cond.str.startswith("clusters-")].groupby(["dataset", "method", "k"])[score].mean()
    backbone = context.get("diffusion_backbone")
    quality = clustering[clustering.backbone == backbone] if backbone else clustering
    nmi = quality.groupby(["dataset", "method", "k"]).nmi.mean()
    both = clustered.index.intersection(nmi.index)
    if len(both) < 4:
        raise NotTestable(f"{len(both)} cluster conditions with a clustering run; a rank correlation's interval "
                          "needs 4 or more")
    margin = _margin(context, "rank_correlation")
    estimate = Correlation(nmi.loc[both].to_numpy(), clustered.loc[both].to_numpy(), margin)
    return Evidence(f"Spearman correlation of NMI and {score} over {len(both)} cluster conditions (Fisher z, variance "
                    f"1.06 / (n − 3)); equivalence within the declared ±{margin:g} (two one-sided tests)",
                    "spearman rho", "cluster condition (dataset x method x K)", estimate, side=0, margin=margin)


OOD_UNIT = "OOD set (pair: its backbones averaged)"
UNSUPERVISED = ("none", "clusters")  # fit labels of the scores that use no ID labels


def _clean_ood(tables: dict) -> pd.DataFrame:
    runs = _table(tables, "ood", ("ood", "backbone", "scorer", "auroc", "fit_labels"))
    return runs[runs.attack_style.isna()] if "attack_style" in runs else runs


def _family_margin(runs: pd.DataFrame, mine: pd.Series, theirs: pd.Series) -> tuple[np.ndarray, str]:
    """Per OOD set, the mean over backbones of AUROC(my family's best) − AUROC(their family's best), each family's
    best chosen once per backbone by its mean AUROC over the sets (not per set: a maximum per set would favour the
    larger family by its noise)."""
    margins, chosen = [], set()
    for _, group in runs.groupby("backbone"):
        a, b = group[mine.loc[group.index]], group[theirs.loc[group.index]]
        if a.empty or b.empty:
            continue
        best_a, best_b = a.groupby("scorer").auroc.mean().idxmax(), b.groupby("scorer").auroc.mean().idxmax()
        chosen |= {best_a, best_b}
        margin = (a[a.scorer == best_a].set_index("ood").auroc - b[b.scorer == best_b].set_index("ood").auroc)
        margins.append(margin.dropna())
    if not margins:
        return np.array([]), ""
    return pd.concat(margins).groupby(level=0).mean().to_numpy(), ", ".join(sorted(chosen))


def c9_knn_is_the_best_unsupervised_score(tables: dict, context: dict) -> Evidence:
    runs = _clean_ood(tables)
    runs = runs[runs.fit_labels.fillna("none").isin(UNSUPERVISED)]
    knn = runs.scorer.str.startswith("knn")
    margins, chosen = _family_margin(runs, knn, ~knn)
    if not len(margins):
        raise NotTestable("needs a kNN score and another unsupervised score on the same pair and backbone")
    return Evidence(f"AUROC of the best kNN score − the best other unsupervised score (per backbone, by mean AUROC: "
                    f"{chosen}), averaged over backbones per OOD set; one-sample t-test over sets",
                    "auroc difference", OOD_UNIT, mean_test(margins))


def c10_probes_beat_unsupervised_scores(tables: dict, context: dict) -> Evidence:
    runs = _clean_ood(tables)
    labels = runs.fit_labels.fillna("none")
    probe = runs.scorer.str.contains("probe|plp", regex=True) & labels.isin(("classes", "plp"))
    margins, chosen = _family_margin(runs, probe, labels.isin(UNSUPERVISED))
    if not len(margins):
        raise NotTestable("needs a linear-probe score (ID labels or PLP) and an unsupervised score on the same pair")
    return Evidence("AUROC of the best probe score (ID labels or PLP pseudo-labels) − the best unsupervised score "
                    f"(per backbone, by mean AUROC: {chosen}), averaged over backbones per OOD set; one-sample t-test "
                    "over sets", "auroc difference", OOD_UNIT, mean_test(margins))


def c11_adversarial_images_defeat_the_detector(tables: dict, context: dict) -> Evidence:
    runs = _table(tables, "ood", ("ood", "backbone", "scorer", "auroc"))
    attacked = runs[runs.attack_style.notna()] if "attack_style" in runs else runs.iloc[:0]
    if attacked.empty:
        raise NotTestable("no adversarial OOD runs (ood.adversarial)")
    margin = _margin(context, "auroc_above_chance")
    scorer = attacked.base_scorer.fillna(attacked.scorer) if "base_scorer" in attacked else attacked.scorer
    # the attacker picks the style: per attacked scorer x pair x backbone, its most effective one
    strongest = attacked.assign(attacked_scorer=scorer).groupby(["attacked_scorer", "ood", "backbone"]).auroc.min()
    per_set = strongest.groupby(level="ood").mean().to_numpy()
    return Evidence(f"AUROC on the attacked OOD images at the most effective attack style, averaged over attacked "
                    f"scorers and backbones per OOD set, against chance + the declared margin ({0.5 + margin:g}); "
                    "defeated when it lies below", "attacked auroc", OOD_UNIT,
                    mean_test(per_set, 0.5 + margin, bounds=(0.0, 1.0)), side=-1, margin=margin)


def c12_sensitivity_picks_the_best_negatives(tables: dict, context: dict) -> Evidence:
    runs = _clean_ood(tables)
    if "sensitivity" not in runs:
        raise NotTestable("no self-distillation runs with shifted negatives")
    shifted = runs[runs.sensitivity.notna()]
    hits = []
    for (pair, _), group in shifted.groupby(["ood", "backbone"]):
        # a tie at the top (of AUROC, as against far OOD at 1.0, or of sensitivity) says nothing about which set
        # is best: dropped, as a sign test drops zero differences
        top_auroc, top_sensitivity = group.auroc == group.auroc.max(), group.sensitivity == group.sensitivity.max()
        if len(group) >= 2 and top_auroc.sum() == 1 and top_sensitivity.sum() == 1:
            hits.append({"ood": pair, "above_chance": float((top_auroc & top_sensitivity).any()) - 1 / len(group)})
    if not hits:
        raise NotTestable("needs two or more negative sets scored on the same pair and backbone, with a single best "
                          "AUROC and a single highest sensitivity")
    per_set = pd.DataFrame(hits).groupby("ood").above_chance.mean().to_numpy()
    return Evidence("per pair x backbone, whether the negative set of the highest sensitivity gives the highest AUROC "
                    "(ties dropped) minus chance (1 / the number of sets), averaged over backbones per OOD set; "
                    "one-sample t-test over sets", "share picked right above chance", OOD_UNIT, mean_test(per_set))


CLAIMS: dict[str, tuple[str, Callable[[dict, dict], Evidence]]] = {
    "C1": ("Clustering heads on frozen features beat k-means on the same features", c1_heads_beat_kmeans),
    "C2": ("k-means' gap to the heads shrinks (or reverses) under class imbalance", c2_imbalance_shrinks_the_gap),
    "C3": ("k-means underperforms on easy-to-classify benchmarks by large margins", c3_kmeans_lags_on_easy_benchmarks),
    "C4": ("The heads' gap over k-means diminishes in the largest data regime", c4_gap_shrinks_at_the_largest_scale),
    "C5": ("Non-primary cluster predictions capture meaningful, coarser classes",
           c5_second_clusters_capture_coarse_classes),
    "C6": ("Cluster conditioning of the right granularity beats unconditional generation",
           c6_clusters_beat_unconditional),
    "C6b": ("Cluster conditioning of the right granularity matches or beats conditioning on the classes",
            c6b_clusters_match_classes),
    "C7": ("The FD-optimal K lies at or below the upper cluster bound", c7_fd_optimal_k_within_the_bound),
    "C8": ("Clustering quality (NMI) and cluster-conditioned generation quality are not connected",
           c8_no_link_between_clustering_and_generation),
    "C9": ("Nearest-neighbour similarity is the best unsupervised OOD score", c9_knn_is_the_best_unsupervised_score),
    "C10": ("Linear probes (ID labels or PLP pseudo-labels) beat the unsupervised OOD scores",
            c10_probes_beat_unsupervised_scores),
    "C11": ("Adversarially manipulated OOD images defeat the detector", c11_adversarial_images_defeat_the_detector),
    "C12": ("The score's sensitivity identifies the best shifted negatives", c12_sensitivity_picks_the_best_negatives),
}


def decide(low: float, high: float, threshold: float, side: int, margin: float = np.nan) -> str:
    """RULE: where the deciding interval [low, high] lies against the finding's threshold (or ±margin, side 0)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if side == 0:
        if -margin < low and high < margin:
            return "supported"
        return "contradicted" if low > margin or high < -margin else "inconclusive"
    if low > threshold or high < threshold:
        return "supported" if (low > threshold) == (side > 0) else "contradicted"
    return "inconclusive"


def _row(claim: str, statement: str, evidence: Evidence) -> dict:
    estimate = evidence.estimate
    low, high = estimate.interval(LEVEL) if estimate.n >= 2 else (np.nan, np.nan)
    reason = ""
    if estimate.n < 2:
        reason = "one value: no interval (more seeds or settings decide)"
    elif estimate.no_variance:
        reason = (f"no variance: {estimate.n} equal values (a test without spread needs {MIN_N_WITHOUT_SPREAD} or "
                  "more)")
    return {"claim": claim, "statement": statement, "unit": evidence.unit, "n": estimate.n, "test": evidence.test,
            "metric": evidence.metric, "effect": estimate.effect, "low": low, "high": high,
            "threshold": estimate.threshold, "side": evidence.side, "margin": evidence.margin,
            "p_value": evidence.p_value, "reason": reason, "evidence": evidence}


def ledger(tables: dict, context: dict | None = None) -> pd.DataFrame:
    """One row per finding: its unit and n, test, effect with its raw and deciding intervals, raw and Holm-adjusted
    p, and the verdict by RULE. Raises FindingError when a finding's code fails."""
    context = context or {}
    rows = []
    for claim, (statement, test) in CLAIMS.items():
        try:
            rows.append(_row(claim, statement, test(tables, context)))
        except NotTestable as missing:
            rows.append({"claim": claim, "statement": statement, "reason": str(missing), "p_value": np.nan,
                         "evidence": None})
        except Exception as error:
            raise FindingError(f"claims finding {claim} failed: {type(error).__name__}: {error}") from error
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS + ["evidence"])
    frame["p_holm"] = holm(frame.p_value)
    verdicts, levels, lows, highs = [], [], [], []
    for row in frame.itertuples(index=False):
        evidence = row.evidence
        level, low, high = np.nan, np.nan, np.nan
        if evidence is None:
            verdicts.append("not testable")
        elif not np.isfinite(row.p_holm):
            verdicts.append("inconclusive")
        else:
            # dual to Holm: the interval excludes the threshold exactly when p_Holm < ALPHA (an underflowed p of 0:
            # Bonferroni's level over the findings tested, which excludes it too)
            p_test = evidence.estimate.p_value
            level = 1 - (ALPHA * p_test / row.p_holm if row.p_holm > 0 else ALPHA / frame.p_value.notna().sum())
            low, high = evidence.estimate.interval(level)
            verdicts.append(decide(low, high, evidence.estimate.threshold, evidence.side, evidence.margin))
        levels.append(level)
        lows.append(low)
        highs.append(high)
    frame["verdict"], frame["level_decides"] = verdicts, levels
    frame["low_decides"], frame["high_decides"] = lows, highs
    return frame[COLUMNS].astype({"n": "Int64"})


TABLES = ("clustering", "cluster_bounds", "ood", "diffusion")  # the stage tables the findings read


def build_claims_table(table_files: dict, out_path, context: dict, registration: dict | None = None) -> pd.DataFrame:
    """The ledger of the stage tables in `table_files` (name -> parquet; absent stages are left out) as
    `tables/claims.parquet`, with the pre-registration's state (`lightning_modules.analysis.claims.registration_state`) in
    its `analysis_*` columns."""
    from lightning_modules.analysis.tables import write_table

    tables = {name: pd.read_parquet(path) for name, path in table_files.items() if name in TABLES and path}
    frame = ledger(tables, context)
    registration = registration or {}
    frame["analysis_registered_at"] = registration.get("registered_at", "")
    frame["analysis_state"] = registration.get("state", "not registered")
    write_table(frame, out_path)
    return frame


def _interval_text(low: float, high: float) -> str:
    return "" if not np.isfinite(low) else f" [{low:.3g}, {high:.3g}]"


def summary_lines(frame: pd.DataFrame) -> list[str]:
    """One line per finding: `C1 supported: <statement> (effect [95%] decided by [level], n units, Holm p)` or its
    reason."""
    lines = []
    for row in frame.itertuples(index=False):
        if row.verdict == "not testable":
            lines.append(f"{row.claim} not testable: {row.statement} ({row.reason})")
            continue
        decides = (f", deciding{_interval_text(row.low_decides, row.high_decides)} at {row.level_decides:.4g}"
                   if np.isfinite(row.level_decides) else "")
        p = "" if not np.isfinite(row.p_holm) else f", Holm p {row.p_holm:.2g}"
        lines.append(f"{row.claim} {row.verdict}: {row.statement} ({row.metric} {row.effect:.3g}"
                     f"{_interval_text(row.low, row.high)}{decides}; n {row.n} {row.unit.split(' (')[0]}s{p}"
                     + (f"; {row.reason}" if row.reason else "") + ")")
    return lines


def registration_banner(frame: pd.DataFrame) -> str:
    """The claims report's opening banner when the analysis was not fixed before the results ('' when it was)."""
    state = frame.analysis_state.iloc[0] if "analysis_state" in frame and len(frame) else "not registered"
    if state == "pre-registered":
        return ""
    return {"changed after results": "**The analysis changed after the first result was written**: the claims "
                                     "settings or the ledger's code differ from those registered when the sweep "
                                     f"started ({frame.analysis_registered_at.iloc[0]}). These verdicts are not "
                                     "pre-registered.",
            "registered after results": "**The analysis was registered after results existed** "
                                        f"({frame.analysis_registered_at.iloc[0]}): these verdicts are not "
                                        "pre-registered."}.get(state, "**No registration of the analysis was found**: "
                                                                      "these verdicts are not pre-registered.")


if __name__ == "__main__":  # the end of `make claims`: the ledger of a results folder, one line per finding
    import argparse
    from pathlib import Path

    from lightning_modules.core.layout import Table

    parser = argparse.ArgumentParser(description="the papers' findings on a sweep: its tables/claims.parquet")
    parser.add_argument("results_dir", nargs="?", default="results")
    parser.add_argument("--config", help="the sweep's config file: its results_dir instead of the argument")
    arguments = parser.parse_args()
    if arguments.config:
        from lightning_modules.core.checks import results_dir_of

        arguments.results_dir = results_dir_of(arguments.config)
    results_dir = Path(arguments.results_dir)
    print("\n".join(summary_lines(pd.read_parquet(results_dir / Table().file("claims.parquet")))))
