"""Cold start in a fresh interpreter: import cost, and the first call of each backend
(Numba compiles, or loads its on-disk cache, on its first call)."""


class ColdStart:
    def timeraw_import_fastembed(self):
        return "import fastembed"

    def timeraw_first_call_auto(self):
        return (
            "fastembed.factorized_lookup(ids, table, proj, pos_table=pos)",
            "import numpy as np, fastembed\n"
            "table = np.ones((100, 8), np.float32); proj = np.ones((8, 16), np.float32)\n"
            "pos = np.zeros((32, 16), np.float32); ids = np.arange(64).reshape(2, 32)",
        )

    def timeraw_first_call_numba(self):
        return (
            "fastembed.factorized_lookup(ids, table, proj, pos_table=pos, backend='numba')",
            "import numpy as np, fastembed\n"
            "table = np.ones((100, 8), np.float32); proj = np.ones((8, 16), np.float32)\n"
            "pos = np.zeros((32, 16), np.float32); ids = np.arange(64).reshape(2, 32)",
        )
