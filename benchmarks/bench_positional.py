"""Positional encodings: sinusoidal tables and rotary embeddings."""

import numpy as np

import fastembed as fe

from .common import backend_or_skip, torch_or_skip


class Sinusoidal:
    params = [
        ["cython", "numba", "numpy", "numpy-float64-formula"],
        [(4096, 768), (32768, 768)],
        ["interleaved", "concat"],
    ]
    param_names = ["method", "shape", "layout"]

    def setup(self, method, shape, layout):
        n, d = shape
        out = np.empty((n, d), np.float32)  # every method writes into a buffer: no page faults timed
        if method == "numpy-float64-formula":
            w = 10000.0 ** (-2.0 * np.arange(d // 2) / d)

            def run():
                ang = np.arange(n, dtype=np.float64)[:, None] * w
                if layout == "interleaved":
                    out[:, 0::2], out[:, 1::2] = np.sin(ang), np.cos(ang)
                else:
                    out[:, : d // 2], out[:, d // 2 :] = np.sin(ang), np.cos(ang)

            self.run = run
        else:
            backend_or_skip(method)
            self.run = lambda: fe.sinusoidal(n, d, layout=layout, out=out, backend=method)
        self.run()

    def time_table(self, method, shape, layout):
        self.run()


class Rope:
    params = [["cython", "numba", "numpy", "torch-user"], ["neox", "gptj"]]
    param_names = ["method", "style"]

    def setup(self, method, style):
        shape = (4, 32, 1024, 128)
        self.x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        self.out = np.empty_like(self.x)
        if method == "torch-user":
            torch = torch_or_skip()
            cos, sin = fe.rope_cos_sin(1024, 128, dtype=np.float32)
            X = torch.from_numpy(self.x)
            if style == "neox":
                C, S = (
                    torch.from_numpy(np.concatenate([cos, cos], -1)),
                    torch.from_numpy(np.concatenate([sin, sin], -1)),
                )

                def rotate(t):
                    return torch.cat((-t[..., 64:], t[..., :64]), dim=-1)
            else:
                C, S = torch.from_numpy(np.repeat(cos, 2, -1)), torch.from_numpy(np.repeat(sin, 2, -1))

                def rotate(t):
                    return torch.stack((-t[..., 1::2], t[..., 0::2]), dim=-1).flatten(-2)

            self.run = lambda: X * C + rotate(X) * S
        else:
            backend_or_skip(method)
            self.run = lambda: fe.apply_rope(self.x, out=self.out, style=style, backend=method)
        self.run()

    def time_apply(self, method, style):
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

    params = [["cython", "numba", "numpy"], list(ROPE_CASES)]
    param_names = ["method", "rope_type"]

    def setup(self, method, rope_type):
        backend_or_skip(method)
        shape = (4, 32, 1024, 128)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal(shape, dtype=np.float32)
        self.out = np.empty_like(self.x)
        kwargs = dict(ROPE_CASES[rope_type], backend=method, out=self.out)
        if rope_type.startswith("mrope"):
            text = np.arange(1024)
            grid = np.stack([np.minimum(text, 300), text % 37 + 300, text % 41 + 300])  # image-like positions
            kwargs["positions"] = np.broadcast_to(grid[:, None, None, :], (3, 4, 1, 1024))
        if rope_type == "per-row-offset":
            kwargs["offset"] = np.array([0, 17, 4000, 123])
        self.run = lambda: fe.apply_rope(self.x, **kwargs)
        self.run()

    def time_apply(self, method, rope_type):
        self.run()
