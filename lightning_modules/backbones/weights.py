"""Where pretrained weights come from: each library's own cache or an explicit file, never the network
unless the config says `allow_download: true`."""

from __future__ import annotations

from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights that are neither cached nor allowed to be downloaded (one-line message)."""

    def __str__(self) -> str:
        return str(self.args[0])


def missing(spec: str, looked_in: str, prefetch: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"backbone '{spec}': pretrained weights not found offline (looked in {looked_in}); pre-fetch them "
        f"where there is internet with `{prefetch}` and copy the cache here, or set `weights:` to a local "
        f"file, or `allow_download: true`"
    )


def hub_snapshot(repo_id: str, allow_download: bool) -> Path | None:
    """The local folder of a Hugging Face Hub repo: from the cache, or downloaded when allowed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=not allow_download))
    except LocalEntryNotFoundError:
        return None


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / name for name in names if (folder / name).exists()), None)


def load_state_dict(path: str | Path) -> dict:
    """A state dict from .safetensors, or from a torch file without unpickling arbitrary objects."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # noqa: BLE001 - one line naming the file and the fix
            raise ValueError(f"weights file {path} is not a readable safetensors file ({error}); download or "
                             f"convert it again") from None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - one line naming the file and why
        raise ValueError(f"weights file {path} cannot be read as plain tensors ({type(error).__name__}); "
                         f"only .safetensors or weights-only torch files are loaded") from None
    return state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
