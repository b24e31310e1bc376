"""Published numbers beside measured ones: the file's entries, their matching on tables (exact settings, lists,
the best over a column, units), the reproduction statuses, and that config/paper.yaml runs every published
setting."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from lightning_modules.analysis.published import (PUBLISHED_FILE, Published, annotate, load_published, main, reproduction,
                                         _table_setting)

ROOT = PUBLISHED_FILE.parents[1]


def entry(stage="clustering", setting=None, values=None, unit="percent", tolerance=1.0, best_over=None):
    setting = setting or {"dataset": "cifar10", "backbone": "timm/vit_base_patch16_224.dino", "method": "temi", "k": 10}
    return Published(id="e", paper="P", source="S", stage=stage, setting=setting, values=values or {"acc": 94.5},
                     unit=unit, tolerance=tolerance, tolerance_source="default", best_over=best_over,
                     table_setting=_table_setting(setting))


def clustering_rows(accs, method="temi", k=10):
    return pd.DataFrame({"dataset": "cifar10", "backbone": "timm-vit_base_patch16_224.dino", "method": method,
                         "k": k, "seed": range(len(accs)), "acc": accs})


def test_every_entry_loads_with_a_source_a_setting_and_a_tolerance():
    entries = load_published()
    assert len({e.id for e in entries}) == len(entries) >= 10
    for e in entries:
        assert e.source and e.values and e.tolerance > 0 and e.tolerance_source
    temi = next(e for e in entries if e.id == "temi-imagenet-msn-vitl")
    assert temi.values["acc"] == 61.6 and temi.table_setting["backbone"] == "hf-facebook-vit-msn-large"


def test_the_mean_over_seeds_in_percent_and_the_status():
    report = reproduction({"clustering": pd.concat([clustering_rows([0.940, 0.946, 0.949]),
                                                    clustering_rows([0.5], method="kmeans")])}, [entry()])
    row = report.iloc[0]
    assert row.measured == pytest.approx(94.5) and row.runs == 3 and row.status == "reproduced"
    far = reproduction({"clustering": clustering_rows([0.90, 0.92])}, [entry()]).iloc[0]
    assert far.delta == pytest.approx(-3.5) and far.status == "not reproduced"
    edge = reproduction({"clustering": clustering_rows([0.935])}, [entry()]).iloc[0]  # |Δ| = tolerance: reproduced
    assert edge.delta == pytest.approx(-1.0) and edge.status == "reproduced"


def test_not_run_when_no_row_matches_or_the_table_is_missing():
    assert reproduction({"clustering": clustering_rows([0.9], k=20)}, [entry()]).iloc[0].status == "not run in this sweep"
    assert reproduction({}, [entry()]).iloc[0].status == "not run in this sweep"
    nan = reproduction({"clustering": clustering_rows([np.nan])}, [entry()]).iloc[0]  # ACC undefined: not run
    assert nan.status == "not run in this sweep" and math.isnan(nan.measured)


def test_best_over_a_column_takes_the_best_seed_mean_lower_for_fid():
    table = pd.DataFrame({"dataset": "cifar10", "method": "temi", "cond": ["clusters-temi-k10"] * 2 + ["clusters-temi-k100"] * 2 + ["class"],
                          "k": [10, 10, 100, 100, np.nan], "seed": [0, 1, 0, 1, 0],
                          "fd_inception": [3.0, 2.0, 1.7, 1.8, 1.0]})
    table.loc[4, "method"] = None
    e = entry(stage="diffusion", setting={"dataset": "cifar10", "method": "temi"}, values={"fd_inception": 1.67},
              unit="raw", tolerance=0.1, best_over="k")
    row = reproduction({"diffusion": table}, [e]).iloc[0]
    assert row.measured == pytest.approx(1.75) and row.best == "k=100.0" and row.status == "reproduced"
    assert row.runs == 2  # the class-conditioned row (FID 1.0) is not a cluster-conditioned setting


def test_a_list_in_the_setting_allows_any_of_its_values_and_best_is_highest_auroc():
    table = pd.DataFrame({"dataset": "cifar100", "ood": "cifar100-vs-cifar10", "backbone": "b",
                          "scorer": ["knn1", "knn50", "mahalanobis"], "auroc": [0.85, 0.87, 0.99]})
    e = entry(stage="ood", setting={"dataset": "cifar100", "ood": "cifar100-vs-cifar10", "backbone": "b",
                                    "scorer": ["knn1", "knn50"]}, values={"auroc": 87.6}, best_over="scorer")
    row = reproduction({"ood": table}, [e]).iloc[0]
    assert row.measured == pytest.approx(87.0) and row.best == "scorer=knn50"


def test_tables_gain_published_and_delta_columns_where_a_setting_matches():
    table = pd.concat([clustering_rows([0.940, 0.950]), clustering_rows([0.5], method="kmeans")], ignore_index=True)
    annotated = annotate(table, "clustering", [entry(values={"acc": 94.5, "nmi": 88.6})])
    assert list(annotated["published_acc"].iloc[:2]) == [94.5, 94.5] and math.isnan(annotated["published_acc"].iloc[2])
    np.testing.assert_allclose(annotated["delta_acc"].iloc[:2], [-0.5, 0.5], atol=1e-9)
    assert annotated["published_nmi"].iloc[0] == 88.6 and math.isnan(annotated["delta_nmi"].iloc[0])  # no nmi column
    assert "published_acc" in annotate(table.iloc[0:0], "clustering", [entry()])  # the columns exist on any sweep


def test_a_broken_entry_is_one_line_naming_it(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"entries": [{"id": "x", "paper": "p", "stage": "clustering", "setting": {},
                                                 "values": {"acc": 1}, "unit": "percent"}]}))
    with pytest.raises(ValueError, match=r"entries\[0\] \(x\): missing source"):
        load_published(path)


def test_the_command_on_a_folder_without_tables_says_nothing_was_run(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not run in this sweep" in out and "no published setting was run in this sweep" in out


def test_paper_yaml_runs_every_published_setting():
    """Every entry's setting is a run of config/paper.yaml's grid (so paper.yaml stays complete): the grid's run
    folders, parsed back into their table columns, contain a row matching each entry."""
    from lightning_modules.workflow.config import validate_config
    from lightning_modules.core.naming import backbone_slug
    from lightning_modules.diffusion import parse_condition
    from lightning_modules.workflow.sweep import clustering_runs, diffusion_runs, ood_runs
    from lightning_modules.ood import ood_pairs

    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for dataset in config["datasets"].values():  # validated (defaults filled in) as where the data is
        dataset["root"] = str(ROOT)
    config["data_roots"] = [str(ROOT)]
    validate_config(config, ROOT / "config" / "schema.yaml")
    backbones = {backbone_slug(b["spec"]): b for b in config["backbones"]}
    rows = {"clustering": [], "ood": [], "diffusion": []}
    for run in clustering_runs(config, backbones):
        rows["clustering"].append({"dataset": run.dataset, "backbone": run.backbone, "method": run.method, "k": run.k,
                                   "acc": 1.0, "nmi": 1.0, "ari": 1.0})
    pairs = ood_pairs(config)
    for run in ood_runs(config, backbones):
        rows["ood"].append({"dataset": run.dataset, "backbone": run.backbone, "ood": run.ood, "scorer": run.scorer,
                            "auroc": 1.0})
        assert pairs[run.ood]["in"] == run.dataset
    for run in diffusion_runs(config, lambda dataset: None):
        _, method, k = parse_condition(run.cond)
        rows["diffusion"].append({"dataset": run.dataset, "cond": run.cond, "method": method, "k": k, "fd_inception": 1.0})
    report = reproduction({stage: pd.DataFrame(r) for stage, r in rows.items()})
    missing = report[report["status"] == "not run in this sweep"]
    assert missing.empty, f"published settings config/paper.yaml does not run: {sorted(set(missing['id']))}"


def test_a_second_source_is_reported_beside_the_first_and_the_table_keeps_the_first(tmp_path):
    """C-EDM's released TEMI clustering of CIFAR-10 is a second source for the TEMI paper's setting: the
    reproduction report lists both, the table's published_acc is the first's."""
    entries = load_published()
    first, second = (next(e for e in entries if e.id == name)
                     for name in ("temi-cifar10-dino-vitb16", "cedm-released-temi-cifar10-dino-vitb16"))
    assert second.second_source_of == first.id and second.setting == first.setting
    row = pd.DataFrame([{"dataset": "cifar10", "backbone": "vit_base_patch16_224.dino", "method": "temi", "k": 10,
                         "acc": 0.946, "nmi": 0.886, "ari": 0.886}])
    row["backbone"] = first.table_setting["backbone"]
    report = reproduction({"clustering": row}, [first, second]).set_index(["id", "metric"])
    assert report.loc[(first.id, "acc"), "published"] == 94.5 and report.loc[(second.id, "acc"), "published"] == 94.594
    assert annotate(row, "clustering", [first, second]).published_acc.iloc[0] == 94.5
    bad = tmp_path / "published.yaml"
    bad.write_text("entries:\n  - {id: b, second_source_of: a, paper: p, source: s, stage: clustering,"
                   " setting: {dataset: d}, values: {acc: 1}, unit: percent}\n")
    with pytest.raises(ValueError, match=r"entries\[0\] \(b\): second_source_of must name an earlier entry"):
        load_published(bad)
