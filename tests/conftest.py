import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))  # the one installed beside this Python


@pytest.fixture(scope="session")
def digits_pixels():
    """Digits as the `pixels` backbone embeds them: (1797, 64) in [0, 1], and the labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
