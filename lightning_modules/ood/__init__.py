"""OOD scorer registry (OpenOOD-style: one small class per score). Contract:
`Scorer(**params).fit(train_embeddings, train_labels or None)` then `.score(x)` -> (N,) float64, higher =
more in-distribution.

Registry info: `params` (defaults baked into the registered name, e.g. knn1 -> k=1), `config` (the section
of the `ood` config whose settings it takes), `labels` (what `fit`
needs: None, "classes" (the ID labels) or "clusters" (a clustering run's assignments as pseudo-labels)),
`text` (needs a backbone with a text tower; `fit` then also gets `backbone` and `class_names`) and
`lightning` (trains a LightningModule)."""

from lightning_modules.registry import Registry

OOD_SCORERS = Registry("OOD scorer")
OOD_SCORERS.register("knn1", "lightning_modules.ood.knn:KNNScorer", params={"k": 1}, config="knn")
OOD_SCORERS.register("knn50", "lightning_modules.ood.knn:KNNScorer", params={"k": 50}, config="knn")
OOD_SCORERS.register("knn50-mean", "lightning_modules.ood.knn:KNNScorer", params={"k": 50, "reduce": "mean"},
                     config="knn")
OOD_SCORERS.register("mahalanobis", "lightning_modules.ood.mahalanobis:Mahalanobis", labels="classes")
OOD_SCORERS.register("relative-mahalanobis", "lightning_modules.ood.mahalanobis:RelativeMahalanobis",
                     labels="classes")
OOD_SCORERS.register("cluster-mahalanobis", "lightning_modules.ood.mahalanobis:Mahalanobis", labels="clusters")
OOD_SCORERS.register("probe-msp", "lightning_modules.ood.probe:ProbeScorer", params={"score": "msp"},
                     config="probe", labels="classes", lightning=True)
OOD_SCORERS.register("probe-energy", "lightning_modules.ood.probe:ProbeScorer", params={"score": "energy"},
                     config="probe", labels="classes", lightning=True)
OOD_SCORERS.register("zeroshot-msp", "lightning_modules.ood.zeroshot:ZeroShotMSP", config="zeroshot", text=True)

ADVERSARIAL_MARK = "-adv-"  # `knn1-adv-smooth`: knn1 on OOD images attacked with the `smooth` setting


def split_scorer_name(name: str) -> tuple[str, str | None]:
    """`knn1-adv-smooth` -> ("knn1", "smooth"); `knn1` -> ("knn1", None)."""
    base, mark, style = name.partition(ADVERSARIAL_MARK)
    return (base, style) if mark else (name, None)


def build_scorer(name: str, **params):
    """The registered scorer with its baked-in defaults, overridden by `params`."""
    entry = OOD_SCORERS.entry(name)
    return entry.load()(**{**entry.info.get("params", {}), **params})


__all__ = ["ADVERSARIAL_MARK", "OOD_SCORERS", "build_scorer", "split_scorer_name"]
