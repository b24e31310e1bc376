"""Every backbone family through the real loading code, with tiny randomly initialised models (no weights
can be downloaded here), and the offline error for missing weights."""

import argparse

import numpy as np
import pytest
import torch

from lightning_modules.backbones import build_backbone
from lightning_modules.backbones.weights import MissingWeightsError, load_state_dict
from lightning_modules.embeddings.extract import embed_images

GRAY_8X8 = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)


def embed(spec, **options):
    model, transform = build_backbone(spec, **options)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    return embed_images(model, transform, GRAY_8X8, batch_size=2, progress=False), transform


def test_timm_random_vit_embeds_grayscale_digits_at_its_input_size():
    features, transform = embed("timm/vit_tiny_patch16_224", pretrained=False)
    assert features.shape == (5, 192) and np.isfinite(features).all()
    assert transform(torch.from_numpy(GRAY_8X8[0])).shape == (3, 224, 224)
    assert transform.config.resize == 248  # timm's data config: 224 / crop_pct 0.9


def test_torchvision_random_resnet_loses_its_classifier():
    features, _ = embed("torchvision/resnet18", pretrained=False)
    assert features.shape == (5, 512)


def test_openclip_random_image_tower_keeps_the_text_tower():
    model, transform = build_backbone("openclip/ViT-B-32", pretrained=False)
    features = embed_images(model, transform, GRAY_8X8[:2], batch_size=2, progress=False)
    assert features.shape == (2, 512)
    tokens = model.tokenizer(["a photo of a 3."])
    assert model.clip.encode_text(tokens).shape == (1, 512)


def tiny_hf_vit(folder):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_hf_model_from_a_local_folder(tmp_path, pooling):
    features, transform = embed("hf/tiny-vit", weights=str(tiny_hf_vit(tmp_path / "vit")), pooling=pooling)
    assert features.shape == (5, 16)
    assert transform.config.size == (32, 32) and transform.config.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    "spec,where",
    [
        ("timm/vit_small_patch16_224.dino", "timm/vit_small_patch16_224.dino"),
        ("openclip/ViT-B-32:openai", "timm/vit_base_patch32_clip_224.openai"),
        ("torchvision/resnet18:IMAGENET1K_V1", "resnet18-f37072fd.pth"),
        ("hf/facebook/dinov2-small", "facebook/dinov2-small"),
    ],
)
def test_missing_weights_offline_is_one_line_naming_spec_place_and_fix(tmp_path, monkeypatch, spec, where):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as raised:
        build_backbone(spec)
    message = str(raised.value)
    assert "\n" not in message
    assert spec in message and where in message and "allow_download: true" in message and "pre-fetch" in message


def test_explicit_weights_file_is_loaded(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    save_file(source.state_dict(), tmp_path / "weights.safetensors")
    model, _ = build_backbone("timm/vit_tiny_patch16_224", weights=str(tmp_path / "weights.safetensors"))
    torch.testing.assert_close(model.state_dict()["pos_embed"], source.state_dict()["pos_embed"])


def test_weights_that_need_unpickling_are_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": argparse.Namespace(run=1)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="cannot be read as plain tensors"):
        load_state_dict(tmp_path / "pickled.pt")
