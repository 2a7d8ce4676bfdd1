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
