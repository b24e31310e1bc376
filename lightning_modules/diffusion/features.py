"""The feature networks generated images are scored in (FEATURE_NETWORKS, by name in
`diffusion.metrics.networks`):

- `inception`: the standard FID network (torch-fidelity's port of TF Inception-v3 through torchmetrics, 2,048-d
  pool features), weights read from a local file only;
- `classifier`: the small data set's analogue of Inception — a CNN trained once per data set on its labelled
  training split (rule `diffusion_classifier`); its penultimate features give FD, its predictions the class
  consistency of conditional samples. Raw-pixel FD cannot tell clean digits from blurred ones;
- `backbone`: the clustering backbone's embedding (FD_DINOv2-style).

Each is `features(images in [0, 1], (N, C, H, W)) -> (N, D) float64`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightning_modules.core.io import read_json, save_torch, write_json

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def default_inception_weights() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def require_inception_weights(path: str | os.PathLike | None) -> Path:
    """The weights file, or one line naming it and how to fetch it (no downloads at run time)."""
    path = Path(path).expanduser() if path else default_inception_weights()
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights for FID not found at {path}; on a connected machine run "
                                f"`curl -L -o {path.name} {INCEPTION_URL}` and copy the file there "
                                f"(or set diffusion.metrics.inception_weights)")
    return path


def _batches(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32))


class InceptionFeatures:
    """2,048-d pool3 features of the FID network; grey images are repeated to three channels. `antialias=False`
    resizes to 299 as TF1 did (the FID everyone reports)."""

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", antialias: bool = False):
        from torchmetrics.image.fid import NoTrainInceptionV3

        path = require_inception_weights(weights)
        self.network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                          feature_extractor_weights_path=str(path), antialias=antialias).to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 200) -> np.ndarray:
        out = []
        for batch in _batches(images, batch_size):
            if batch.shape[1] == 1:
                batch = batch.repeat(1, 3, 1, 1)
            uint8 = (batch * 255).round().clamp(0, 255).to(torch.uint8).to(self.device)
            out.append(self.network(uint8).double().cpu().numpy())
        return np.concatenate(out)


class DigitsClassifier(nn.Module):
    """Two 3×3 convolutions, global pooling to 4×4, a 128-d penultimate layer (the features), then the logits."""

    def __init__(self, channels: int, n_classes: int, width: int = 32, features: int = 128):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, features), nn.ReLU())
        self.head = nn.Linear(features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def train_classifier(images: np.ndarray, labels: np.ndarray, out_dir: str | os.PathLike, epochs: int = 30,
                     held_out: float = 0.2, seed: int = 0) -> dict:
    """Train the feature classifier on `images` (N, C, H, W) in [0, 1] with a seeded held-out fraction for its
    accuracy; writes `model.pt` and `metrics.json`. Labels are needed (−1 rows are dropped)."""
    known = labels >= 0
    images, labels = np.asarray(images[known], np.float32), np.asarray(labels[known], np.int64)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    if n_classes < 2:
        raise ValueError("the diffusion feature classifier needs a labelled data set with at least two classes; "
                         "leave 'classifier' out of diffusion.metrics.networks for unlabelled data")
    torch.manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * (1 - held_out))
    train, test = order[:cut], order[cut:]
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    model = DigitsClassifier(images.shape[1], n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(train), generator=generator).split(64):
            index = torch.from_numpy(train)[batch]
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x[test]).argmax(1) == y[test]).float().mean()) if len(test) else float("nan")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_torch(out_dir / "model.pt", model.state_dict())
    record = {"channels": images.shape[1], "n_classes": n_classes, "held_out_accuracy": accuracy,
              "train_images": len(train), "held_out_images": len(test), "epochs": epochs, "seed": seed}
    write_json(out_dir / "metrics.json", record)
    return record


class ClassifierFeatures:
    """The trained classifier's penultimate features, and its class predictions (`predict`)."""

    def __init__(self, directory: str | os.PathLike, device: str = "cpu"):
        directory = Path(directory)
        meta = read_json(directory / "metrics.json")
        self.model = DigitsClassifier(meta["channels"], meta["n_classes"])
        self.model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
        self.model.to(device).eval()
        self.device = device
        self.held_out_accuracy = meta["held_out_accuracy"]

    @torch.no_grad()
    def _run(self, images: np.ndarray, part: str) -> np.ndarray:
        network = self.model.trunk if part == "features" else self.model
        return np.concatenate([network(batch.to(self.device)).double().cpu().numpy()
                               for batch in _batches(images, 512)])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, "features")

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, "logits").argmax(1)


def class_consistency(predicted: np.ndarray, conditioning: np.ndarray, train_conditioning: np.ndarray,
                      train_labels: np.ndarray) -> float:
    """The fraction of conditional samples the classifier puts in the majority true class of the training images
    that carry the same conditioning label (for class conditioning: the class itself). Ties go to the
    smallest class index; conditioning labels no training image carries count as misses."""
    known = train_labels >= 0
    majority = {}
    for value in np.unique(train_conditioning[known]):
        counts = np.bincount(train_labels[known][train_conditioning[known] == value])
        majority[int(value)] = int(np.argmax(counts))
    hits = [majority.get(int(c), -1) == int(p) for p, c in zip(predicted, conditioning)]
    return float(np.mean(hits)) if hits else float("nan")
