"""`timm/<model_name>` (e.g. timm/vit_base_patch16_224.dino): the pooled, pre-logits features."""

from __future__ import annotations

from lightning_modules.backbones.preprocess import PreprocessConfig, TensorPreprocess
from lightning_modules.backbones.weights import (first_existing, hub_cache_dir, hub_snapshot, load_state_dict,
                                                 missing)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def build(name: str, weights: str | None = None, allow_download: bool = False, pretrained: bool = True):
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=0)
    if weights:
        model.load_state_dict(load_state_dict(weights), strict=False)
    elif pretrained:
        repo = model.pretrained_cfg.get("hf_hub_id")
        snapshot = hub_snapshot(repo, allow_download) if repo else None
        file = first_existing(snapshot, WEIGHT_FILES) if snapshot else None
        if file is None:
            raise missing(f"timm/{name}", f"{hub_cache_dir()} for {repo}",
                          f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\"")
        missing_keys, _ = model.load_state_dict(load_state_dict(file), strict=False)
        if missing_keys:
            raise ValueError(f"backbone 'timm/{name}': {file} lacks {len(missing_keys)} weights, e.g. {missing_keys[0]}")
    data = timm.data.resolve_model_data_config(model)
    config = PreprocessConfig.from_crop_pct(data["input_size"][1:], data.get("crop_pct", 1.0), mean=tuple(data["mean"]),
                                            std=tuple(data["std"]), interpolation=data.get("interpolation", "bicubic"))
    return model, TensorPreprocess(config)
