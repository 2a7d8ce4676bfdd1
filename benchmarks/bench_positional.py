"""Positional encodings: sinusoidal tables and rotary embeddings."""

import numpy as np

from fastembed import _bench_cases as cases

from .common import available, prepared


class Sinusoidal:
    params = [
        ["fastembed cython", "fastembed numba", "numpy float64"],
        [(4096, 768), (32768, 768)],
        ["interleaved", "concat"],
    ]
    param_names = ["method", "shape", "layout"]

    @prepared
    def setup(self, method, shape, layout):
        return available(cases.sinusoidal_methods(*shape, layout=layout), method)

    def time_table(self, method, shape, layout):
        self.run()


class Rope:
    params = [["fastembed cython", "fastembed numba", "fastembed numpy", "torch (user)"], ["neox", "gptj"]]
    param_names = ["method", "style"]

    @prepared
    def setup(self, method, style):
        return available(cases.rope_methods(cases.ROPE_SHAPE, style, compile_torch=False), method)

    def time_apply(self, method, style):
        self.run()


class RopeDecodeStep:
    """One generation step's rotation, x (B, 32, 1, 128) float32 at a position advancing by one a
    call (``offset=``), against the peers rotating with a kept cos/sin table
    (fastembed._bench_cases.rope_step_methods)."""

    params = [["fastembed auto", "numpy", "torch (user)", "torch.compile"], list(cases.STEP_BATCHES)]
    param_names = ["method", "batch"]
    timeout = 300
    number = 100  # as DecodeStep's

    @prepared
    def setup(self, method, batch):
        return available(cases.rope_step_methods(batch, compile_torch=method == "torch.compile"), method)

    def time_step(self, method, batch):
        self.run()


ROPE_CASES = {
    "default": {},
    "yarn": {
        "scaling": {
            "rope_type": "yarn",
            "factor": 40,
            "original_max_position_embeddings": 4096,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        }
    },
    "longrope": {
        "scaling": {
            "rope_type": "longrope",
            "long_factor": [1.0 + i for i in range(64)],
            "short_factor": [1.0 + 0.01 * i for i in range(64)],
            "original_max_position_embeddings": 512,
            "max_position_embeddings": 131072,
        }
    },
    "proportional": {"scaling": {"rope_type": "proportional", "partial_rotary_factor": 0.25}},
    "ntk": {"scaling": {"rope_type": "ntk", "factor": 4.0}},
    "mrope": {"mrope_section": [16, 24, 24]},
    "mrope-interleaved": {"mrope_section": [24, 20, 20], "mrope_interleaved": True},
    "per-row-offset": {},
}


class RopeTypes:
    """Every rope type on the (4, 32, 1024, 128) float32 case of Rope: the same rotation kernel,
    only the frequency table (and for mrope the per-token positions) differs."""

    params = [["fastembed cython", "fastembed numba", "fastembed numpy"], list(ROPE_CASES)]
    param_names = ["method", "rope_type"]

    @prepared
    def setup(self, method, rope_type):
        options = dict(ROPE_CASES[rope_type])
        if rope_type.startswith("mrope"):
            text = np.arange(1024)
            grid = np.stack([np.minimum(text, 300), text % 37 + 300, text % 41 + 300])  # image-like positions
            options["positions"] = np.broadcast_to(grid[:, None, None, :], (3, 4, 1, 1024))
        if rope_type == "per-row-offset":
            options["offset"] = np.array([0, 17, 4000, 123])
        return available(cases.rope_methods(cases.ROPE_SHAPE, **options), method)

    def time_apply(self, method, rope_type):
        self.run()
