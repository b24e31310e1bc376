"""`synthetic`: Gaussian mixtures in feature space with a controllable number of classes, dimension,
separation, imbalance and a two-level hierarchy (classes grouped into superclasses). For fast tests and
scaling benchmarks; no images involved."""

from __future__ import annotations

import numpy as np

from lightning_modules.data.base import DatasetSplit

SPLIT_OFFSETS = {"all": 0, "train": 1, "test": 2}  # each split draws its own samples around the same centres


def load_synthetic_split(split: str, n_classes: int = 10, dims: int = 32, samples_per_class: int = 100,
                         separation: float = 4.0, imbalance_ratio: float = 1.0, n_superclasses: int | None = None,
                         anisotropy: float = 1.0, normalise: bool = False, seed: int = 0) -> DatasetSplit:
    """Class c has samples_per_class * imbalance_ratio^(-c / (n_classes - 1)) samples (largest / smallest =
    imbalance_ratio) drawn from N(mu_c, Σ_c). Σ_c = I, or with `anisotropy` a > 1 a diagonal of standard deviations
    drawn log-uniformly from [1/a, a] per class and dimension (its own random stream: a = 1 draws the same data as
    before it existed). With n_superclasses, mu_c = superclass centre (spread `separation`) + a class offset (spread
    separation / 2), so classes of one superclass lie closer together. `normalise`: every row scaled to unit length,
    as frozen-backbone embeddings are compared (a mixture on the sphere, like a von Mises-Fisher one)."""
    rng = np.random.default_rng(seed)
    if n_superclasses:
        superclass_of = np.arange(n_classes) % n_superclasses
        centres = rng.normal(0, separation, (n_superclasses, dims))[superclass_of]
        centres += rng.normal(0, separation / 2, (n_classes, dims))
    else:
        superclass_of = None
        centres = rng.normal(0, separation, (n_classes, dims))
    profile = imbalance_ratio ** (-np.arange(n_classes) / max(1, n_classes - 1))
    counts = np.maximum(1, np.round(samples_per_class * profile)).astype(int)
    sample_rng = np.random.default_rng([seed, SPLIT_OFFSETS[split]])
    labels = np.repeat(np.arange(n_classes), counts)
    noise = sample_rng.standard_normal((len(labels), dims))
    if anisotropy != 1.0:
        log_scale = np.log(anisotropy)
        scales = np.exp(np.random.default_rng([seed, 99]).uniform(-log_scale, log_scale, (n_classes, dims)))
        noise *= scales[labels]
    features = centres[labels] + noise
    if normalise:
        features /= np.linalg.norm(features, axis=1, keepdims=True)
    features = features.astype(np.float32)
    return DatasetSplit(
        images=features, labels=labels, label_names=[f"class{c}" for c in range(n_classes)],
        coarse_labels=None if superclass_of is None else superclass_of[labels],
        coarse_names=None if superclass_of is None else [f"super{s}" for s in range(n_superclasses)],
    )
