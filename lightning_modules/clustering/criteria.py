"""Label-free selection criteria (the SELECTION_CRITERIA registry): one small class each, higher is better.

A criterion sees a configuration (method, K) through its runs, one per seed (`RunView`: the assignments, a sample
of L2-normalised embedding rows, the run's label-free metrics) and never a label. `score(runs)` rates the
configuration; the default is the mean of `score_run` over the seeds. A criterion that ranks the others'
(`consensus`) rates the finished table instead (`score_table`). `pick(table)` is the configuration it picks:
the best score, ties to the first configuration in (method, K) order, unless the criterion has its own rule
(the gap statistic's).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RunView:
    """What a criterion may see of one clustering run: nothing labelled."""

    method: str
    k: int
    seed: int
    assignments: np.ndarray  # (N,) every row's cluster
    rows: np.ndarray  # the scoring sample's row indices (sorted), shared by every run of the selection
    x: np.ndarray  # those rows' embeddings, L2-normalised (float32)
    knn_agreement: float  # the run's own metric: share of its 10 nearest neighbours in the same cluster
    effective_clusters: float  # exp(entropy of the cluster sizes)

    @property
    def sample_assignments(self) -> np.ndarray:
        return np.asarray(self.assignments)[self.rows]


def subsample(n: int, size: int) -> np.ndarray:
    """`size` of the sample's n positions, spread over it (the sample's rows are sorted by index, and a data set's
    rows are often sorted by class: its first rows would be its first classes)."""
    return np.sort(np.random.default_rng(0).permutation(n)[:size])


class Criterion:
    table_level = False  # True: scores the configuration table (score_table), not runs

    def score_run(self, run: RunView) -> float:
        raise NotImplementedError

    def score(self, runs: list[RunView]) -> float:
        return float(np.mean([self.score_run(run) for run in runs]))

    def pick(self, table: pd.DataFrame, name: str) -> int:
        """The row of `table` (in (method, k) order, one criterion per column) this criterion picks from its column
        `name`."""
        return int(table[name].idxmax())


class KnnAgreement(Criterion):
    """Share of the 10 nearest neighbours in a point's own cluster (the run's metric). Rises as K falls."""

    def score_run(self, run: RunView) -> float:
        return float(run.knn_agreement)


def same_cluster_chance(assignments: np.ndarray) -> float:
    """P(two distinct random rows share a cluster) for these cluster sizes: Σ n_c (n_c − 1) / (N (N − 1))."""
    sizes = np.bincount(np.asarray(assignments, dtype=np.int64)).astype(np.float64)
    n = sizes.sum()
    return float((sizes * (sizes - 1)).sum() / (n * (n - 1)))


class KnnAgreementCorrected(Criterion):
    """kNN agreement above chance: the agreement minus its expectation under a random assignment with the same
    cluster sizes (same_cluster_chance). The uncorrected score rises as K falls — one cluster agrees with every
    neighbour — and this is what the cluster sizes alone give: merging two clean clusters keeps the agreement at 1
    but doubles the chance part. (Normalising by 1 − chance, as Cohen's kappa does, would undo that: 1 stays 1.)"""

    def score_run(self, run: RunView) -> float:
        return float(run.knn_agreement - same_cluster_chance(run.assignments))


class Balance(Criterion):
    """Effective clusters over K: 1 when every cluster is equally used."""

    def score_run(self, run: RunView) -> float:
        return float(run.effective_clusters / run.k)


class Generalisation(Criterion):
    """TURTLE's generalisation score: two-fold accuracy of a linear classifier trained on one half of the sample
    with the run's assignments as targets, tested on the other half. A ridge (least-squares) classifier: one solve
    per half, where TURTLE trains its linear heads by gradient steps."""

    def score_run(self, run: RunView) -> float:
        from sklearn.linear_model import RidgeClassifier

        y = run.sample_assignments
        halves = np.array_split(np.random.default_rng(run.seed).permutation(len(y)), 2)
        scores = []
        for train, test in (halves, halves[::-1]):
            if len(np.unique(y[train])) < 2:  # one cluster in the training half: it predicts that cluster
                scores.append(float(np.mean(y[test] == y[train][0])))
                continue
            probe = RidgeClassifier(alpha=1.0).fit(run.x[train], y[train])
            scores.append(float(np.mean(probe.predict(run.x[test]) == y[test])))
        return float(np.mean(scores))


class Silhouette(Criterion):
    """The mean cosine silhouette of the sample (scikit-learn's silhouette_score; 0 for one cluster)."""

    def score_run(self, run: RunView) -> float:
        from sklearn.metrics import silhouette_score

        y = run.sample_assignments
        if not 2 <= len(np.unique(y)) < len(y):
            return 0.0
        return float(silhouette_score(run.x, y, metric="cosine"))


class UmapSilhouette(Criterion):
    """The silhouette on a UMAP of ROWS rows of the sample, which Lowe et al. (arXiv 2406.02465) report tracks
    AMI where the silhouette in the encoder's own space does not. UMAP as their recommended code sets it
    (n_neighbors 30, min_dist 0, Euclidean silhouette in the reduced space); COMPONENTS of their 5 to 100, and ROWS
    rows, keep it to seconds on CPU. One map per sample, shared by every configuration. A sample of no more rows
    than N_NEIGHBORS is not scored (NaN): no neighbourhood of that size exists, and the spectral start fails."""

    ROWS = 1000
    COMPONENTS = 10
    N_NEIGHBORS = 30

    def __init__(self):
        self.maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id of the sample's array -> (positions, map)

    @classmethod
    def project(cls, x: np.ndarray) -> np.ndarray:
        """The UMAP of the rows `x` the silhouette is computed on."""
        import warnings

        import umap

        from lightning_modules.clustering.umap_input import umap_distances
        from lightning_modules.core.compiled import cache_compilations

        cache_compilations("umap", "pynndescent")  # compiled once, not in every job
        with warnings.catch_warnings():  # the seed is deliberate: UMAP's note that it runs single-threaded
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            warnings.filterwarnings("ignore", message="using precomputed metric", category=UserWarning)  # no inverse
            return umap.UMAP(n_neighbors=cls.N_NEIGHBORS, min_dist=0.0, n_components=cls.COMPONENTS,
                             random_state=0, metric="precomputed").fit_transform(umap_distances(x))

    def reduced(self, run: RunView) -> tuple[np.ndarray, np.ndarray]:
        if id(run.x) not in self.maps:
            positions = subsample(len(run.x), self.ROWS)
            self.maps[id(run.x)] = positions, self.project(run.x[positions])
        return self.maps[id(run.x)]

    def score_run(self, run: RunView) -> float:
        from sklearn.metrics import silhouette_score

        if len(run.x) <= self.N_NEIGHBORS:
            return float("nan")
        positions, reduced = self.reduced(run)
        y = run.sample_assignments[positions]
        if not 2 <= len(np.unique(y)) < len(y):
            return 0.0
        return float(silhouette_score(reduced, y))


def disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows two labellings disagree on after the best one-to-one matching of their clusters (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    a, b = np.unique(a, return_inverse=True)[1], np.unique(b, return_inverse=True)[1]
    counts = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(counts, (a, b), 1)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    return float(1 - counts[rows, columns].sum() / len(a))


class Stability(Criterion):
    """Stability across seeds as Lange et al. (2004) normalise it: 1 − d / d_random, d the mean disagreement
    between two seeds' labellings of the sample (after matching clusters), d_random the same between random
    labellings with K clusters (averaged over RANDOM_PAIRS draws). Needs two or more seeds (else NaN): instability
    that random labellings also reach at this K is no instability of the clustering's own."""

    RANDOM_PAIRS = 5

    def score(self, runs: list[RunView]) -> float:
        if len(runs) < 2:
            return float("nan")
        d = np.mean([disagreement(a.sample_assignments, b.sample_assignments) for a, b in combinations(runs, 2)])
        rng = np.random.default_rng(runs[0].k)
        n, k = len(runs[0].rows), runs[0].k
        d_random = np.mean([disagreement(rng.integers(0, k, n), rng.integers(0, k, n)) for _ in range(self.RANDOM_PAIRS)])
        return float(1 - d / d_random) if d_random > 0 else float("nan")


class PredictionStrength(Criterion):
    """Prediction strength (Tibshirani & Walther 2005), on the run's own labelling: split the sample in halves; the
    training half's clusters give centroids, and for each cluster of the test half, the share of its pairs of
    points that the nearest training centroid also puts together; the strength is the smallest share (clusters of
    one point left out). The paper clusters each half anew; a run's labelling of both halves stands in for that,
    so every method is rated without running it again. Its pick is the paper's rule: per method the largest K
    whose strength reaches THRESHOLD (the highest strength where none does); across methods, the strongest."""

    THRESHOLD = 0.8  # the paper's suggestion: 0.8 to 0.9

    def pick(self, table: pd.DataFrame, name: str) -> int:
        candidates = []
        for _, group in table.groupby("method", sort=False):
            strong = group[group[name] >= self.THRESHOLD]
            candidates.append(strong.k.idxmax() if len(strong) else group[name].idxmax())
        return int(max(candidates, key=lambda index: (table.loc[index, name], -index)))

    def score_run(self, run: RunView) -> float:
        y = run.sample_assignments
        train, test = np.array_split(np.random.default_rng(run.seed).permutation(len(y)), 2)
        clusters = np.unique(y[train])
        centroids = np.stack([run.x[train][y[train] == c].mean(axis=0) for c in clusters])
        predicted = clusters[np.argmax(run.x[test] @ centroids.T, axis=1)]  # cosine: the rows are unit length
        shares = []
        for c in np.unique(y[test]):
            members = predicted[y[test] == c]
            if len(members) < 2:
                continue
            together = np.bincount(np.unique(members, return_inverse=True)[1]).astype(np.float64)
            shares.append((together * (together - 1)).sum() / (len(members) * (len(members) - 1)))
        return float(min(shares)) if shares else 0.0


def within_dispersion(x: np.ndarray, labels: np.ndarray) -> float:
    """W_K: the summed squared distances of the rows to their cluster's mean."""
    total = 0.0
    for c in np.unique(labels):
        members = x[labels == c]
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


class GapStatistic(Criterion):
    """The gap statistic (Tibshirani, Walther & Hastie 2001) on ROWS rows of the sample: Gap(K) = the mean
    log W_K of REFERENCES uniform samples in the sample's principal-axes box, k-means clustered at K, minus the
    run's log W_K (means over seeds). Its pick, per method: the smallest K of the grid with Gap(K) ≥ Gap(K') − s_K'
    for the next K' (s: the references' standard deviation × √(1 + 1/REFERENCES)); across methods, the largest gap.
    Costs REFERENCES k-means runs per configuration."""

    REFERENCES = 5
    ROWS = 1000

    def __init__(self):
        self.spreads: dict[tuple[str, int], float] = {}  # (method, K) -> s_K, for pick

    def score(self, runs: list[RunView]) -> float:
        from lightning_modules.clustering.kmeans import LloydKMeans

        positions, k = subsample(len(runs[0].x), self.ROWS), runs[0].k
        x = runs[0].x[positions].astype(np.float64)
        log_w = np.mean([np.log(within_dispersion(x, run.sample_assignments[positions])) for run in runs])
        centred = x - x.mean(axis=0)
        axes = np.linalg.svd(centred, full_matrices=False)[2]
        projected = centred @ axes.T
        rng = np.random.default_rng(k)
        reference_logs = []
        for b in range(self.REFERENCES):
            reference = rng.uniform(projected.min(axis=0), projected.max(axis=0), size=projected.shape) @ axes
            labels = LloydKMeans(k, seed=b, max_iter=50).fit(reference.astype(np.float32)).labels_
            reference_logs.append(np.log(within_dispersion(reference, labels)))
        self.spreads[(runs[0].method, k)] = float(np.std(reference_logs) * np.sqrt(1 + 1 / self.REFERENCES))
        return float(np.mean(reference_logs) - log_w)

    def pick(self, table: pd.DataFrame, name: str) -> int:
        best = None
        for method, group in table.groupby("method", sort=False):
            group = group.sort_values("k")
            chosen = group.index[-1]
            for (index, row), (_, following) in zip(group.iterrows(), group.iloc[1:].iterrows()):
                if row[name] >= following[name] - self.spreads.get((method, int(following.k)), 0.0):
                    chosen = index
                    break
            if best is None or table.loc[chosen, name] > table.loc[best, name]:
                best = chosen
        return int(best)


class MeanRank(Criterion):
    """The mean rank of other criteria's scores over the configurations (higher is better; a criterion without a
    score for a configuration is left out of its mean)."""

    table_level = True
    OF: tuple[str, ...] = ()

    def __init__(self, *of: str):
        self.of = of or self.OF

    def score_table(self, table: pd.DataFrame) -> pd.Series:
        return -table[list(self.of)].rank(ascending=False, method="average").mean(axis=1)


class Consensus(MeanRank):
    """The mean rank of kNN agreement, balance and the generalisation score."""

    OF = ("knn_agreement", "balance", "generalisation")


class AgreementGeneralisation(MeanRank):
    """The mean rank of chance-corrected kNN agreement and TURTLE's generalisation score: the candidate of lowest
    mean ACC regret on benchmarks/selection.py's development half (its family: every criterion, each with a
    parsimony rule, and the mean rank of every pair)."""

    OF = ("knn_agreement_corrected", "generalisation")


class VotedPick(Criterion):
    """Several criteria each pick a configuration (their best score); this picks among those picks by K — the one
    of the most clusters (`rule="largest"`) or the middle one (`"median"`, for an odd number of criteria). Criteria
    that stop short err towards too few clusters, and seldom at the same data sets (stability on long tails, the
    silhouette on overlapping classes), so the larger of their picks corrects one with the other. Its score column
    counts each configuration's votes."""

    table_level = True
    OF: tuple[str, ...] = ()
    RULE = "largest"

    def __init__(self, *of: str, rule: str | None = None):
        self.of, self.rule = of or self.OF, rule or self.RULE
        if self.rule not in ("largest", "median") or (self.rule == "median" and len(self.of) % 2 == 0):
            raise ValueError(f"rule {self.rule!r} over {len(self.of)} criteria: 'largest', or 'median' of an odd "
                             "number")

    def votes(self, table: pd.DataFrame) -> list:
        """Each criterion's pick (the first row of its best score), those without any score left out."""
        return [table[name].idxmax() for name in self.of if table[name].replace(-np.inf, np.nan).notna().any()]

    def score_table(self, table: pd.DataFrame) -> pd.Series:
        return pd.Series(self.votes(table), dtype=object).value_counts().reindex(table.index, fill_value=0).astype(float)

    def pick(self, table: pd.DataFrame, name: str) -> int:
        votes = self.votes(table)
        if not votes:
            return int(table.index[0])
        # by K; among equal K the more voted, then the first configuration
        picks = sorted(votes, key=lambda index: (table.loc[index, "k"], votes.count(index), -index))
        return int(picks[-1] if self.rule == "largest" else picks[len(picks) // 2])


class LargestOfPicks(VotedPick):
    """The largest K of the picks of TURTLE's generalisation score, stability across seeds and the UMAP silhouette:
    the candidate of lowest mean ACC regret on the first draw of benchmarks/selection.py's data sets (its family:
    every criterion, each with a parsimony rule, the mean rank of every pair, the voted picks of every pair and
    triple), measured on its fresh draw. Stability needs two or more seeds; with one, the other two vote."""

    OF = ("generalisation", "stability", "umap_silhouette")


class Parsimonious(Criterion):
    """Another criterion's scores with a parsimony rule for the pick: the method of the best score, and of its K
    the smallest whose score is within `tolerance` x (that method's range of scores) of its best — the 1-SE rule's
    idea, for criteria whose curve flattens past the true K."""

    table_level = True

    def __init__(self, base: str, tolerance: float):
        self.base, self.tolerance = base, tolerance

    def score_table(self, table: pd.DataFrame) -> pd.Series:
        return table[self.base]

    def pick(self, table: pd.DataFrame, name: str) -> int:
        method = table.loc[table[name].idxmax(), "method"]
        scores = table[name][table.method == method].replace(-np.inf, np.nan)
        near = scores[scores >= scores.max() - self.tolerance * (scores.max() - scores.min())]
        return int(table.loc[near.index, "k"].idxmin())


class KeptClustersKnee(Criterion):
    """The knee of the clusters a method keeps as K grows (what the upper cluster bound measures,
    clustering/bound.py, read from the sweep's own runs): per method, the Kneedle difference (Satopää et al. 2011)
    of `clusters_used` (the table's mean over seeds) against K, both scaled to [0, 1]; its largest value is the
    knee. A method that keeps SATURATED or more of the clusters at its largest K (k-means keeps them all) has no
    knee: not scored (NaN). Written here, not with the `kneed` package: one line of arithmetic."""

    table_level = True
    SATURATED = 0.9

    def score_table(self, table: pd.DataFrame) -> pd.Series:
        scores = pd.Series(np.nan, index=table.index)
        for _, group in table.groupby("method", sort=False):
            group = group.sort_values("k")
            k, used = group.k.to_numpy(float), group.clusters_used.to_numpy(float)
            if len(group) < 3 or used[-1] >= self.SATURATED * k[-1] or used.max() == used.min():
                continue
            scores[group.index] = (used - used.min()) / (used.max() - used.min()) - (k - k.min()) / (k.max() - k.min())
        return scores
