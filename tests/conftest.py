"""Tests run against the installed package (the wheel), not the source tree.

FASTEMBED_REQUIRE_BACKENDS (e.g. "cython,numba", as CI sets it) turns a
missing compiled backend into a failure instead of a silently smaller sweep.
"""

import os
import sys
from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parent.parent
# `python -m pytest` from the repository root puts the root on sys.path, which would import the
# source tree's fastembed/ (no compiled kernels) instead of the installed package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != SOURCE_TREE]

import fastembed  # noqa: E402


def pytest_report_header(config):
    return [
        f"fastembed {fastembed.__version__} from {Path(fastembed.__file__).parent}",
        f"backends: {fastembed.backends.available()}",
    ]


def pytest_sessionstart(session):
    required = [b for b in os.environ.get("FASTEMBED_REQUIRE_BACKENDS", "").split(",") if b]
    missing = [b for b in required if b not in fastembed.backends.available()]
    if missing:
        raise RuntimeError(f"required backends missing from the installed fastembed: {missing}")
    if os.environ.get("FASTEMBED_REQUIRE_INSTALLED") == "1":
        location = Path(fastembed.__file__).resolve()
        if SOURCE_TREE / "fastembed" in location.parents:
            raise RuntimeError(f"tests imported fastembed from the source tree ({location}), not the install")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def minilm_dir():
    from fastembed.models import minilm_dir as locate

    try:
        return locate()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def minilm_word_embeddings(minilm_dir):
    from fastembed.io import load_safetensors

    name = "embeddings.word_embeddings.weight"
    return load_safetensors(minilm_dir / "model.safetensors", [name])[name]
