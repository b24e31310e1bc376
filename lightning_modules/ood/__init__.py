"""OOD scorer registry (OpenOOD-style: one small class per score). Contract:
`Scorer(**params).fit(train_embeddings, train_labels or None)` then `.score(x)` -> (N,) float64, higher =
more in-distribution.

Registry info: `params` (defaults baked into the registered name, e.g. knn1 -> k=1), `config` (the sections
of the `ood` config whose settings it takes, merged in order), `labels` (what it was fitted with: None,
"classes" (the ID labels), "clusters" (a clustering run's assignments as pseudo-labels) or "plp" (CLIP
zero-shot pseudo-labels from the class names; no ID labels)), `probe` (reads the shared linear probe of that
label source, trained once by the `ood_probe` rule), `text` (needs a backbone with a text tower; zero-shot's
`fit` then also gets `backbone` and `class_names`) and `negatives` (runs once per entry of
`ood.negatives` as `<scorer>-<negatives name>`; `fit` also gets `negatives`, the embeddings of
that shifted dataset)."""

from lightning_modules.core.naming import slugify
from lightning_modules.core.registry import Registry

OOD_SCORERS = Registry("OOD scorer")
OOD_SCORERS.register("knn1", "lightning_modules.ood.knn:KNNScorer", params={"k": 1}, config="knn")
OOD_SCORERS.register("knn50", "lightning_modules.ood.knn:KNNScorer", params={"k": 50}, config="knn")
OOD_SCORERS.register("knn50-mean", "lightning_modules.ood.knn:KNNScorer", params={"k": 50, "reduce": "mean"},
                     config="knn")
OOD_SCORERS.register("mahalanobis", "lightning_modules.ood.mahalanobis:Mahalanobis", labels="classes")
OOD_SCORERS.register("relative-mahalanobis", "lightning_modules.ood.mahalanobis:RelativeMahalanobis",
                     labels="classes")
OOD_SCORERS.register("cluster-mahalanobis", "lightning_modules.ood.mahalanobis:Mahalanobis", labels="clusters")
# Mahalanobis++: the two scores on L2-normalised features (lightning_modules/ood/mahalanobis.py says whose code)
OOD_SCORERS.register("mahalanobis-pp", "lightning_modules.ood.mahalanobis:Mahalanobis", params={"normalise": True},
                     labels="classes")
OOD_SCORERS.register("relative-mahalanobis-pp", "lightning_modules.ood.mahalanobis:RelativeMahalanobis",
                     params={"normalise": True}, labels="classes")
OOD_SCORERS.register("zeroshot-msp", "lightning_modules.ood.zeroshot:ZeroShotMSP", config="zeroshot", text=True)
OOD_SCORERS.register("neglabel", "lightning_modules.ood.neglabel:NegLabel", config="neglabel", text=True)
OOD_SCORERS.register("selfdistill", "lightning_modules.ood.self_distillation:SelfDistillation",
                     config="self_distillation", negatives=True)

# Post-hoc scores on a linear probe: <source>-<score>, e.g. probe-vim (ID labels), plp-energy, cluster-probe-gen.
PROBE_SOURCES = {"probe": "classes", "cluster-probe": "clusters", "plp": "plp"}
POSTHOC_SCORES = {"msp": ("MSP", ()), "energy": ("Energy", ()), "maxlogit": ("MaxLogit", ()),
                  "gen": ("GEN", ("gen",)), "vim": ("ViM", ("vim",))}
for _prefix, _source in PROBE_SOURCES.items():
    for _score, (_class, _sections) in POSTHOC_SCORES.items():
        OOD_SCORERS.register(f"{_prefix}-{_score}", f"lightning_modules.ood.posthoc:{_class}",
                             config=("probe", *_sections), labels=_source, probe=_source, text=_source == "plp")
del _prefix, _source, _score, _class, _sections

# Where a shared probe's labels come from: (fit_x, fit_y, fit_dir, fit_split, assignments, backbone) ->
# (labels, number of classes or None, what it measured on the way). Info `assignments`: it reads the clustering run of
# `ood.clusters` (its job waits for it).
PROBE_LABELS = Registry("probe label source")
PROBE_LABELS.register("classes", "lightning_modules.ood.probe.labels:class_labels")
PROBE_LABELS.register("clusters", "lightning_modules.ood.probe.labels:cluster_labels", assignments=True)
PROBE_LABELS.register("plp", "lightning_modules.ood.probe.labels:plp_labels")

ADVERSARIAL_MARK = "-adv-"  # `knn1-adv-smooth`: knn1 on OOD images attacked with the `smooth` setting
_NEGATIVES_SCORERS = [name for name in OOD_SCORERS.names() if OOD_SCORERS.entry(name).info.get("negatives")]


def split_scorer_name(name: str) -> tuple[str, str | None]:
    """`knn1-adv-smooth` -> ("knn1", "smooth"); `knn1` -> ("knn1", None); `selfdistill-rotations` ->
    ("selfdistill", None) (its negatives: `scorer_negatives`)."""
    base, mark, style = name.partition(ADVERSARIAL_MARK)
    base, style = (base, style) if mark else (name, None)
    return next((registered for registered in _NEGATIVES_SCORERS if base.startswith(f"{registered}-")), base), style


def scorer_negatives(name: str) -> str | None:
    """`selfdistill-rotations[-adv-…]` -> "rotations": the entry of `ood.negatives` it trains on."""
    base = name.partition(ADVERSARIAL_MARK)[0]
    registered = split_scorer_name(name)[0]
    return base[len(registered) + 1:] if registered in _NEGATIVES_SCORERS else None


def build_scorer(name: str, **params):
    """The registered scorer with its baked-in defaults, overridden by `params`."""
    entry = OOD_SCORERS.entry(name)
    return entry.load()(**{**entry.info.get("params", {}), **params})


# `ood.probe`'s settings that train the shared probe (the ood_probe rule's params); a post-hoc score on it reads the
# others (its temperature), so retraining settings rerun the probe and not, by their params, every score on it
PROBE_TRAINING = ("feature_norm", "epochs", "batch_size", "lr", "weight_decay", "warmup_fraction", "seed", "progress")


def probe_training(ood_config: dict) -> dict:
    return {key: value for key, value in (ood_config.get("probe") or {}).items() if key in PROBE_TRAINING}


def scorer_params(name: str, ood_config: dict) -> dict:
    """The settings a scorer takes from the `ood` config: its sections, merged in order (without the shared
    probe's training settings where it scores a shared probe)."""
    info = OOD_SCORERS.entry(split_scorer_name(name)[0]).info
    sections = info.get("config") or ()
    params = {}
    for section in (sections,) if isinstance(sections, str) else sections:
        params.update(ood_config.get(section) or {})
    return {key: value for key, value in params.items() if not (info.get("probe") and key in PROBE_TRAINING)}



def ood_side(side) -> dict:
    """An OOD pair's `out` (or `in`): a dataset name, or `{dataset, classes}` -> `{dataset, classes}`."""
    return {"dataset": side, "classes": None} if isinstance(side, str) else {"classes": None, **side}


def describe_side(side: dict) -> str:
    """`digits` or `digits{5,6,7,8,9}`: how tables name one side of a pair."""
    classes = side.get("classes")
    return side["dataset"] + ("{" + ",".join(map(str, classes)) + "}" if classes else "")


def ood_pairs(config: dict) -> dict[str, dict]:
    """Pair name -> `{in, out: {dataset, classes}}`, in config order. A pair without a `name` gets
    `<in>-vs-<out dataset>[-<classes>]`."""
    pairs = {}
    for pair in (config.get("ood") or {}).get("pairs", []):
        out = ood_side(pair["out"])
        default = f"{pair['in']}-vs-{out['dataset']}" + ("-" + "-".join(map(str, out["classes"])) if out["classes"] else "")
        pairs[pair.get("name") or slugify(default)] = {"in": pair["in"], "out": out}
    return pairs

__all__ = ["ADVERSARIAL_MARK", "describe_side", "ood_pairs", "ood_side", "OOD_SCORERS", "POSTHOC_SCORES", "PROBE_LABELS", "PROBE_SOURCES", "PROBE_TRAINING", "build_scorer",
           "probe_training", "scorer_negatives", "scorer_params", "split_scorer_name"]
