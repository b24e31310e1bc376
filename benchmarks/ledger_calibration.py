"""How often the claims ledger errs, measured: the ledger's own code (`lightning_modules.analysis.claims.ledger.ledger`) run on
simulated sweeps with the claims sweep's structure (config/claims.yaml: datasets x representations x K x methods x
seeds with a shared k-means baseline per setting and seed; diffusion conditions x seeds; OOD pairs x
representations x scorers, attacks and negative sets), its variances and effects estimated from the claims sweep's
own tables.

    .venv/bin/python -m benchmarks.ledger_calibration [--sims 1000] [--results results-claims] [--quick]

Scenarios (`--sims` simulated sweeps under the null; a quarter as many with random settings, half under the effect,
a seventh at each larger size):
- **null**: every finding at the boundary of its null at once — the heads' gap centred within each dataset (C1,
  C2, C3), second clusters at chance (C5), the best cluster condition as good as unconditional (C6) and exactly
  the declared margin worse than the classes (C6b), the nearest K above the bound as good as the nearest below
  (C7), the best kNN score as good as the best other unsupervised one and the best probe as good as both (C9,
  C10), the attacked AUROC at chance + the margin (C11), the sensitivity right with probability 1/m (C12). Counted:
  false "supported" and false "contradicted" per finding, and the family-wise rate (any false verdict).
- **random settings**: the null with every setting's gap drawn afresh (between-setting s.d. from the tables) instead
  of fixed: what the seed unit's verdicts would risk if read as claims about other settings.
- **effect**: every effect as the claims sweep measured it; power = the share of sweeps whose verdict is the one
  that effect points to, at the sweep's size and with more seeds / OOD sets (80% power: the smallest that reaches it).

The parameters (estimated from `--results` when its tables exist, else read back from the committed
`benchmarks/ledger_calibration.json`) and the table go to that file; the claims report shows it. C4 (no largest
scale) and C8 (three cluster conditions; a rank correlation needs four) are not testable in this structure.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lightning_modules.analysis.claims.ledger import CLAIMS, ledger
from lightning_modules.metrics.stats import ALPHA

CALIBRATION_FILE = Path(__file__).with_name("ledger_calibration.json")
CLAIMS_CONFIG = Path(__file__).parents[1] / "config" / "claims.yaml"
SIZES = (5, 10, 20)  # seeds (clustering, diffusion) and OOD sets tried for 80% power


def _context(config: dict) -> dict:
    from lightning_modules.analysis.claims import claims_context

    return claims_context(config)


def _sweep_config() -> dict:
    import yaml

    from lightning_modules.workflow.config import validate_config

    return validate_config(yaml.safe_load(CLAIMS_CONFIG.read_text()), CLAIMS_CONFIG.with_name("schema.yaml"))


def estimate(results: Path, context: dict) -> dict:
    """The simulation's parameters from a claims sweep's tables (`results/tables/*.parquet`)."""
    tables = {name: pd.read_parquet(results / "tables" / f"{name}.parquet")
              for name in ("clustering", "diffusion", "ood", "cluster_bounds")}
    runs = tables["clustering"]
    kmeans = runs[runs.method == "kmeans"]
    heads = runs[runs.method != "kmeans"]
    setting = ["dataset", "backbone", "k"]
    joined = heads.merge(kmeans[setting + ["seed", "acc"]], on=setting + ["seed"], suffixes=("", "_kmeans"))
    joined["gap"] = joined.acc - joined.acc_kmeans
    gap_mean = joined.groupby(setting + ["method"]).gap.transform("mean")
    residual = joined.gap - gap_mean
    seed_shared = residual.groupby(joined.seed).mean().var(ddof=1) - residual.var(ddof=1) / joined.groupby(
        setting + ["method"]).ngroups
    kmeans_means = kmeans.groupby(setting).acc.mean()
    kmeans_sd = (kmeans.acc - kmeans.groupby(setting).acc.transform("mean")).std(ddof=1)
    gaps = joined.groupby(setting + ["method"]).gap.agg(["mean", "std"]).dropna()
    chance = {name: role["coarse_chance"] for name, role in context["datasets"].items() if role.get("coarse_chance")}
    coarse = runs[runs.dataset.isin(chance) & runs.coarse_acc_2nd.notna()]  # every method with a second cluster
    coarse_above = (coarse.coarse_acc_2nd - coarse.dataset.map(chance)).groupby(
        [coarse.dataset, coarse.backbone, coarse.k, coarse.method]).agg(["mean", "std"])

    diffusion = tables["diffusion"]
    score = "fd_classifier"
    log_fd = np.log(diffusion[score])
    fd_sd = (log_fd - log_fd.groupby(diffusion.cond).transform("mean")).std(ddof=1)
    conditions = diffusion.groupby("cond").agg(k=("k", "first"), method=("method", "first"))
    conditions["log_fd"] = log_fd.groupby(diffusion.cond).mean()

    ood = tables["ood"]
    clean = ood[ood.attack_style.isna()]
    means = clean.groupby(["scorer", "backbone"]).auroc.mean()
    by_backbone = clean.groupby("backbone").auroc.transform("mean")
    cell = clean.groupby(["ood", "backbone"]).auroc.transform("mean") - by_backbone
    pair_sd = cell.groupby([clean.ood, clean.backbone]).first().std(ddof=1)
    residual_ood = clean.auroc - clean.groupby(["scorer", "backbone"]).auroc.transform("mean") - cell
    attacked = ood[ood.attack_style.notna()]
    attacked_key = [attacked.base_scorer.fillna(attacked.scorer), attacked.attack_style, attacked.backbone]
    attacked_means = attacked.groupby(attacked_key).auroc.mean()
    attacked_sd = (attacked.auroc - attacked.groupby(attacked_key).auroc.transform("mean")).std(ddof=1)
    shifted = ood[ood.sensitivity.notna()]
    measured = ledger(tables, context).set_index("claim")
    negative_sets = int(shifted.groupby(["ood", "backbone"]).size().max())
    # C12's effect is the share picked right minus chance 1/m, by the ledger's own tie rule
    hit_rate = (measured.effect["C12"] + 1 / negative_sets if measured.verdict["C12"] != "not testable"
                else 1 / negative_sets)
    return {
        "directions": measured_directions(measured),
        "clustering": {
            "seeds": int(runs.seed.nunique()),
            "kmeans_settings": [[d, b, int(k), float(m)] for (d, b, k), m in kmeans_means.items()],
            "kmeans_seed_sd": float(kmeans_sd),
            "gaps": [[d, b, int(k), method, float(row["mean"]), float(row["std"])] for (d, b, k, method), row in
                     gaps.iterrows()],
            "gap_shared_seed_sd": float(np.sqrt(max(seed_shared, 0.0))),
            "coarse": [[d, b, int(k), method, float(row["mean"]), float(row["std"])] for (d, b, k, method), row in
                       coarse_above.iterrows()],
        },
        "diffusion": {
            "seeds": int(diffusion.seed.nunique()), "score": score, "log_fd_seed_sd": float(fd_sd),
            "conditions": [[cond, None if pd.isna(row.k) else int(row.k), row.method, float(row.log_fd)]
                           for cond, row in conditions.iterrows()],
            "bound": int(tables["cluster_bounds"].bound.max()),
        },
        "ood": {
            "pairs": int(clean.ood.nunique()),
            "scorers": [[s, b, float(m), clean[clean.scorer == s].fit_labels.fillna("none").iloc[0]]
                        for (s, b), m in means.items()],
            "pair_sd": float(pair_sd), "residual_sd": float(residual_ood.std(ddof=1)),
            "attacked": [[s, style, b, float(m)] for (s, style, b), m in attacked_means.items()],
            "attacked_sd": float(attacked_sd),
            "negative_sets": negative_sets,
            "negative_scorers": sorted(shifted.scorer.unique()),
            "hit_rate": float(hit_rate),
        },
    }


def _null_parameters(params: dict) -> dict:
    """The parameters moved to the boundary of every finding's null (module docstring)."""
    params = json.loads(json.dumps(params))
    clustering = params["clustering"]
    for key in ("gaps", "coarse"):
        frame = pd.DataFrame(clustering[key], columns=["dataset", "backbone", "k", "method", "value", "sd"])
        # the gaps centred within each dataset (C1, C2, C3 at once), second clusters over all settings (C5)
        centre = frame.groupby("dataset").value.transform("mean") if key == "gaps" else frame.value.mean()
        centred = frame.value - centre
        clustering[key] = [[*row[:4], float(value), row[5]] for row, value in zip(clustering[key], centred)]
    diffusion = params["diffusion"]
    conditions = {row[0]: row for row in diffusion["conditions"]}
    clusters = {cond: row for cond, row in conditions.items() if cond.startswith("clusters-")}
    bound = diffusion["bound"]
    within = sorted((row for row in clusters.values() if row[1] <= bound), key=lambda row: -row[1])
    above = sorted((row for row in clusters.values() if row[1] > bound), key=lambda row: row[1])
    for near_above, near_within in zip(above, within):  # like with like: the nearest pairs at equal FD
        near_above[3] = near_within[3]
    best = min(row[3] for row in clusters.values())
    conditions["none"][3] = best
    margins = params["context"]["margins"]  # the claims sweep's declared margins
    conditions["class"][3] = best - np.log1p(margins["fd_ratio"])
    ood = params["ood"]
    frame = pd.DataFrame(ood["scorers"], columns=["scorer", "backbone", "auroc", "fit_labels"])
    unsupervised = frame.fit_labels.isin(("none", "clusters"))
    knn = frame.scorer.str.startswith("knn") & unsupervised
    probe = frame.scorer.str.contains("probe|plp") & frame.fit_labels.isin(("classes", "plp"))
    for backbone in frame.backbone.unique():
        here = frame.backbone == backbone
        other_best = frame[here & unsupervised & ~knn].auroc.max()
        frame.loc[here & knn, "auroc"] += other_best - frame[here & knn].auroc.max()
        frame.loc[here & probe, "auroc"] += other_best - frame[here & probe].auroc.max()
    ood["scorers"] = frame.values.tolist()
    # E[min of two styles] = mean − sd / sqrt(pi) for two independent normal draws: the strongest style at the margin
    styles = len({row[1] for row in ood["attacked"]})
    lift = ood["attacked_sd"] / np.sqrt(np.pi) if styles == 2 else 0.0
    ood["attacked"] = [[s, style, b, 0.5 + margins["auroc_above_chance"] + lift] for s, style, b, _ in ood["attacked"]]
    ood["hit_rate"] = 1 / ood["negative_sets"]
    return params


def simulate(params: dict, rng: np.random.Generator, seeds: int | None = None, pairs: int | None = None,
             random_settings: bool = False) -> dict:
    """One simulated sweep's tables, in the columns the ledger reads."""
    clustering, diffusion, ood = params["clustering"], params["diffusion"], params["ood"]
    diffusion_seeds = seeds or diffusion["seeds"]
    seeds = seeds or clustering["seeds"]
    kmeans = {(d, b, k): m for d, b, k, m in clustering["kmeans_settings"]}
    gaps = pd.DataFrame(clustering["gaps"], columns=["dataset", "backbone", "k", "method", "gap", "sd"])
    if random_settings:  # every setting's gap drawn afresh around its dataset's mean
        spread = (gaps.gap - gaps.groupby("dataset").gap.transform("mean")).std(ddof=1)
        gaps["gap"] = gaps.groupby("dataset").gap.transform("mean") + rng.normal(0, spread, len(gaps))
    coarse = {(d, b, k, m): (c, sd) for d, b, k, m, c, sd in clustering["coarse"]}
    # each setting's heads, in the table's order (looked up once: a boolean filter per setting was a third of the time)
    heads = {setting: list(rows.itertuples()) for setting, rows in gaps.groupby(["dataset", "backbone", "k"], sort=False)}

    def capture(setting: tuple) -> np.ndarray:
        above, sd = coarse.get(setting, (np.nan, 0.0))
        return above + rng.normal(0, sd, seeds)

    rows = []
    shared = rng.normal(0, clustering["gap_shared_seed_sd"], seeds)
    for (d, b, k), mean in kmeans.items():
        base = mean + rng.normal(0, clustering["kmeans_seed_sd"], seeds)
        second = capture((d, b, k, "kmeans"))
        rows += [{"dataset": d, "backbone": b, "method": "kmeans", "k": k, "seed": s, "acc": base[s], "nmi": base[s],
                  "coarse_acc_2nd": second[s]} for s in range(seeds)]
        for row in heads.get((d, b, k), []):
            head = base + row.gap + shared + rng.normal(0, row.sd, seeds)
            second = capture((d, b, k, row.method))
            rows += [{"dataset": d, "backbone": b, "method": row.method, "k": k, "seed": s, "acc": head[s],
                      "nmi": head[s], "coarse_acc_2nd": second[s]} for s in range(seeds)]
    chance = params["coarse_chance"]
    table = pd.DataFrame(rows)
    table["coarse_acc_2nd"] += table.dataset.map(chance).fillna(0.0)

    fd_rows = []
    for cond, k, method, log_fd in diffusion["conditions"]:
        values = np.exp(log_fd + rng.normal(0, diffusion["log_fd_seed_sd"], diffusion_seeds))
        fd_rows += [{"dataset": "digits", "cond": cond, "method": method, "k": k, "seed": s,
                     diffusion["score"]: values[s]} for s in range(diffusion_seeds)]

    pairs = pairs or ood["pairs"]
    scorers = pd.DataFrame(ood["scorers"], columns=["scorer", "backbone", "auroc", "fit_labels"])
    backbones = scorers.backbone.unique()
    ood_rows = []
    for p in range(pairs):
        for backbone in backbones:
            effect = rng.normal(0, ood["pair_sd"])
            here = scorers[scorers.backbone == backbone]
            aurocs = np.clip(here.auroc.to_numpy() + effect + rng.normal(0, ood["residual_sd"], len(here)), 0, 1)
            cell = [{"ood": f"pair{p}", "backbone": backbone, "scorer": s, "fit_labels": f, "auroc": a,
                     "attack_style": None, "base_scorer": None, "sensitivity": np.nan}
                    for s, f, a in zip(here.scorer, here.fit_labels, aurocs)]
            negatives = [i for i, name in enumerate(here.scorer) if name in ood["negative_scorers"]]
            if len(negatives) >= 2:  # the sensitivity picks the best negative set (by AUROC) with the hit rate
                by_auroc = sorted(negatives, key=lambda i: -aurocs[i])
                right = rng.random() < ood["hit_rate"]
                picked = by_auroc[0] if right else by_auroc[1 + rng.integers(len(by_auroc) - 1)]
                sensitivity = dict(zip(negatives, rng.random(len(negatives))))
                top = max(sensitivity, key=sensitivity.get)
                sensitivity[top], sensitivity[picked] = sensitivity[picked], sensitivity[top]
                for i, value in sensitivity.items():
                    cell[i]["sensitivity"] = value
            ood_rows += cell
            for scorer, style, b, mean in ood["attacked"]:
                if b == backbone:
                    ood_rows.append({"ood": f"pair{p}", "backbone": backbone, "scorer": f"{scorer}-adv-{style}",
                                     "fit_labels": "none", "base_scorer": scorer, "attack_style": style,
                                     "auroc": float(np.clip(mean + rng.normal(0, ood["attacked_sd"]), 0, 1)),
                                     "sensitivity": np.nan})
    return {"clustering": table, "diffusion": pd.DataFrame(fd_rows), "ood": pd.DataFrame(ood_rows),
            "cluster_bounds": pd.DataFrame({"dataset": ["digits"], "bound": [diffusion["bound"]]})}


def verdict_counts(params: dict, sims: int, seed: int, context: dict, **size) -> pd.DataFrame:
    """Each finding's verdicts over `sims` simulated sweeps (one row per sweep, one column per finding)."""
    rng = np.random.default_rng(seed)
    random_settings = size.pop("random_settings", False)
    rows = []
    for _ in range(sims):
        frame = ledger(simulate(params, rng, random_settings=random_settings, **size), context)
        rows.append(dict(zip(frame.claim, frame.verdict)))
    return pd.DataFrame(rows)


def _rate(verdicts: pd.Series, word: str) -> tuple[float, float]:
    rate = float((verdicts == word).mean())
    return rate, float(np.sqrt(max(rate * (1 - rate), 1e-12) / len(verdicts)))


def measured_directions(measured: pd.DataFrame) -> dict:
    """The verdict each effect of the claims sweep's ledger (indexed by claim) points to: the side of the threshold
    its estimate lies on."""
    from lightning_modules.analysis.claims.ledger import decide

    return {claim: decide(row.effect, row.effect, row.threshold, row.side, row.margin)
            for claim, row in measured.iterrows() if row.verdict != "not testable"}


def calibrate(params: dict, sims: int, quick: bool = False) -> dict:
    context = params["context"]
    null = _null_parameters(params)
    started = time.perf_counter()
    # statsmodels' Holm runs gc.collect() on every call (55 ms over this process' heap, most of a ledger's time):
    # the objects alive now are frozen out of the collector while the simulations run
    gc.freeze()
    try:
        return _calibrate(params, null, sims, quick, context, started)
    finally:
        gc.unfreeze()


def _calibrate(params: dict, null: dict, sims: int, quick: bool, context: dict, started: float) -> dict:
    under_null = verdict_counts(null, sims, 1, context)
    random_settings = under_effect = None
    expected, powers = {}, {}
    if not quick:
        random_settings = verdict_counts(null, max(sims // 4, 50), 2, context, random_settings=True)
        under_effect = verdict_counts(params, max(sims // 2, 50), 3, context)
        expected = {claim: word for claim, word in params["directions"].items() if word != "inconclusive"}
        for n in SIZES:
            powers[n] = verdict_counts(params, max(sims // 7, 50), 10 + n, context, seeds=n, pairs=n)
    tested = [claim for claim in CLAIMS if (under_null[claim] != "not testable").any()]
    rows = []
    for claim in CLAIMS:
        if claim not in tested:
            rows.append({"claim": claim, "testable": False})
            continue
        false_supported, se_supported = _rate(under_null[claim], "supported")
        false_contradicted, se_contradicted = _rate(under_null[claim], "contradicted")
        row = {"claim": claim, "testable": True, "false_supported": false_supported, "se_supported": se_supported,
               "false_contradicted": false_contradicted, "se_contradicted": se_contradicted}
        if not quick:
            row["random_settings_false"] = float(random_settings[claim].isin(("supported", "contradicted")).mean())
            direction = expected.get(claim)
            row["effect_direction"] = direction or "none (at its threshold)"
            if direction:
                row["power"] = float((under_effect[claim] == direction).mean())
                for n, verdicts in powers.items():
                    row[f"power_n{n}"] = float((verdicts[claim] == direction).mean())
                reached = [n for n, verdicts in powers.items() if (verdicts[claim] == direction).mean() >= 0.8]
                row["n_for_80_power"] = str(min(reached)) if reached else f"> {max(SIZES)}"
        row["holds"] = bool(false_supported - 2 * se_supported <= ALPHA and
                            false_contradicted - 2 * se_contradicted <= ALPHA)
        rows.append(row)
    false_any = under_null[tested].isin(("supported", "contradicted")).any(axis=1)
    family, family_se = float(false_any.mean()), float(np.sqrt(max(false_any.mean() * (1 - false_any.mean()),
                                                                    1e-12) / sims))
    return {"sims": sims, "seconds": time.perf_counter() - started, "family_wise": family, "family_wise_se": family_se,
            "family_holds": bool(family - 2 * family_se <= ALPHA), "findings": rows}


def summary_text(result: dict, params: dict) -> str:
    findings = [row for row in result["findings"] if row.get("testable")]
    failing = [row["claim"] for row in findings if not row["holds"]]
    per_finding = (f"within {ALPHA} for every finding" if not failing else f"above {ALPHA} for {', '.join(failing)}")
    return (f"{result['sims']} simulated claims sweeps under the null ({params['clustering']['seeds']} seeds, "
            f"{params['ood']['pairs']} OOD sets): family-wise false-verdict rate **{result['family_wise']:.3f}** "
            f"(± {result['family_wise_se']:.3f} Monte Carlo s.e.; target ≤ {ALPHA}: "
            f"{'holds' if result['family_holds'] else 'fails'}); per finding, false supported / contradicted "
            f"{per_finding} "
            "(within 2 Monte Carlo s.e.). Not testable in this structure: "
            + ", ".join(row["claim"] for row in result["findings"] if not row.get("testable")) + ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--results", default="results-claims", help="a claims sweep's results folder")
    parser.add_argument("--quick", action="store_true", help="200 sweeps under the null only (the test's version)")
    parser.add_argument("--out", help=f"default: {CALIBRATION_FILE.name} beside this file (--quick: results/bench/)")
    arguments = parser.parse_args()
    config = _sweep_config()
    context = _context(config)
    tables = Path(arguments.results) / "tables"
    if (tables / "clustering.parquet").exists():
        params = estimate(Path(arguments.results), context)
        source = f"estimated from {tables}"
    else:
        params = json.loads(CALIBRATION_FILE.read_text())["parameters"]
        source = f"read back from {CALIBRATION_FILE.name} (no claims tables at {tables})"
    params["context"] = context
    params["coarse_chance"] = {name: role["coarse_chance"] for name, role in context["datasets"].items()
                               if role.get("coarse_chance")}
    sims = 200 if arguments.quick else arguments.sims
    print(f"ledger calibration: parameters {source}; {sims} simulated sweeps under the null", flush=True)
    result = calibrate(params, sims, quick=arguments.quick)
    result["summary"] = summary_text(result, params)
    result["parameters"] = {key: value for key, value in params.items() if key not in ("context", "coarse_chance")}
    result["parameters_source"] = source
    print(result["summary"])
    print(pd.DataFrame(result["findings"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    out = arguments.out or ("results/bench/ledger_calibration-quick.json" if arguments.quick else CALIBRATION_FILE)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    from benchmarks.common import report

    report("ledger_calibration", [("family_wise_false_rate", result["family_wise"], f"target <= {ALPHA}"),
                                  ("seconds", result["seconds"], f"{sims} sweeps per scenario")])


if __name__ == "__main__":
    main()
