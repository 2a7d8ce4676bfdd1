"""The peers a demanding user would pick for ``(E[ids] @ P) * scale + pos[:L]``, each written at its
best and writing into the same preallocated ``out``: numpy, torch as a user writes it, torch with
index_select + addmm_, torch projecting each distinct id once (unique / inverse), torch.compile of
the user's expression, and ONNX Runtime running the
Gather -> MatMul -> Mul -> Add graph with its output bound to ``out``. The report
(fastembed.bench) and the asv suite (benchmarks/bench_lookup.py) both take them from here."""

import os

import numpy as np

from ._threads import available_cores


def lookup_peers(E, P, pos, scale, ids, out, *, compile_torch=True):
    """name -> zero-argument callable writing the lookup into ``out`` (peers not installed are left out).

    torch.compile compiles on the first call (tens of seconds); ``compile_torch=False`` leaves it out.
    """
    L = ids.shape[-1]
    methods = {"numpy": lambda: np.multiply(E[ids] @ P, scale, out=out).__iadd__(pos[:L])}
    methods.update(_torch(E, P, pos, scale, ids, out, compile_torch))
    methods.update(_onnxruntime(E, P, pos, scale, ids, out))
    return methods


def torch_compile(fn):
    """``torch.compile(fn, dynamic=False)``, its inductor cache kept apart per ATEN_CPU_CAPABILITY.

    Inductor's cache keys leave the capability out: code generated under ``ATEN_CPU_CAPABILITY=avx2``
    (loops of 8 floats) was taken from the cache by a later uncapped run on an AVX-512 CPU, whose
    16-float vector stores then ran past the ends of its buffers (torch 2.13.0, the 32 x 512 lookup:
    "double free or corruption" on the second call). Under a capability the cache is
    ``inductor_cache_dir``'s folder for it; a TORCHINDUCTOR_CACHE_DIR the caller set is kept.
    """
    import torch

    capability = os.environ.get("ATEN_CPU_CAPABILITY")
    if capability and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache_dir(capability)
    return torch.compile(fn, dynamic=False)


def inductor_cache_dir(capability, base=None):
    """The inductor cache folder of runs under ``ATEN_CPU_CAPABILITY=capability``: inductor's own
    default folder (``base``, read from torch when None) with ``-aten-<capability>`` appended."""
    if base is None:
        try:
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir

            base = default_cache_dir()
        except ImportError:  # a torch that moved it: a folder of our own in the temp dir
            import tempfile

            base = os.path.join(tempfile.gettempdir(), "torchinductor")
    safe = "".join(c if c.isalnum() else "_" for c in capability.lower())
    return f"{os.path.normpath(base)}-aten-{safe}"


def _torch(E, P, pos, scale, ids, out, compile_torch):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}
    torch.set_num_threads(available_cores())
    tE, tP, tpos = torch.from_numpy(E), torch.from_numpy(P), torch.from_numpy(np.ascontiguousarray(pos))
    tids = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
    B, L = ids.shape
    tout = torch.from_numpy(out)
    gathered = torch.empty((B * L, E.shape[1]), dtype=tE.dtype)

    def user():
        tout.copy_(F.embedding(tids, tE) @ tP * scale + tpos[:L])

    def best():
        torch.index_select(tE, 0, tids.view(-1), out=gathered)
        tout.copy_(tpos[:L].expand(B, L, -1))
        tout.view(B * L, -1).addmm_(gathered, tP, alpha=scale)

    def dedupe():  # the unique/inverse trick: project each distinct id once
        uniq, inverse = torch.unique(tids.view(-1), return_inverse=True)
        projected = torch.mm(torch.index_select(tE, 0, uniq), tP)
        flat = tout.view(B * L, -1)
        torch.index_select(projected, 0, inverse, out=flat)
        flat.view(B, L, -1).mul_(scale).add_(tpos[:L])

    methods = {"torch (user)": user, "torch (best)": best, "torch (dedupe)": dedupe}
    if compile_torch:
        compiled = torch_compile(lambda i: F.embedding(i, tE) @ tP * scale + tpos[:L])

        def compiled_call():
            with torch.inference_mode():
                tout.copy_(compiled(tids))

        methods["torch.compile"] = compiled_call
    return methods


def _onnxruntime(E, P, pos, scale, ids, out):
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return {}
    B, L = ids.shape
    dtype = TensorProto.FLOAT if E.dtype == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "ids"], ["rows"], axis=0),
            helper.make_node("MatMul", ["rows", "P"], ["projected"]),
            helper.make_node("Mul", ["projected", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "pos"], ["out"]),
        ],
        "factorized_lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [B, L])],
        [helper.make_tensor_value_info("out", dtype, [B, L, P.shape[1]])],
        [
            numpy_helper.from_array(E, "E"),
            numpy_helper.from_array(P, "P"),
            numpy_helper.from_array(np.array(scale, E.dtype), "scale"),
            numpy_helper.from_array(np.ascontiguousarray(pos[:L]), "pos"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    ids64 = np.ascontiguousarray(ids, dtype=np.int64)
    binding.bind_cpu_input("ids", ids64)
    binding.bind_output("out", "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)

    def run():
        session.run_with_iobinding(binding)

    # the bound buffers must outlive the session's use of them: a caller may keep this callable alone
    # (asv keeps the method it times), and ONNX Runtime writing into a freed out corrupted the heap
    run.keep_alive = (ids64, out, model)
    return {"onnxruntime": run}
