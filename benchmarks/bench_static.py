"""Static embeddings: pooled lookups over real-text CSR ids and StaticEmbedding.encode, against
torch's EmbeddingBag and model2vec where installed (cases from fastembed._bench_static, shared
with the report)."""

from fastembed import _bench_static as cases

N_SENTENCES = 10_000


class PooledLookup:
    params = ["fastembed dense", "fastembed factorized r=64", "torch EmbeddingBag(mean)"]
    param_names = ["method"]

    def setup(self, method):
        try:
            methods = cases.pooled_methods(N_SENTENCES)
        except (FileNotFoundError, ImportError) as exc:
            raise NotImplementedError(str(exc)) from None  # asv: skipped (no model package)
        if method not in methods:
            raise NotImplementedError(f"{method} is not installed")
        self.run = methods[method]
        self.run()  # warm (JIT, pools)

    def time_pool(self, method):
        self.run()


class StaticEncode:
    params = ["fastembed encode", "fastembed tokenizer alone", "model2vec encode"]
    param_names = ["method"]
    timeout = 300

    def setup(self, method):
        try:
            methods = cases.encode_methods(N_SENTENCES)
        except (FileNotFoundError, ImportError) as exc:
            raise NotImplementedError(str(exc)) from None
        if method not in methods:
            raise NotImplementedError(f"{method} is not installed")
        self.run = methods[method]
        self.run()

    def time_encode(self, method):
        self.run()


class Tokenize:
    params = ["fastembed WordPiece", "tokenizers encode_batch_fast", "tokenizers encode_batch", "UTF-8 encode and join"]
    param_names = ["method"]
    timeout = 300

    def setup(self, method):
        try:
            methods = cases.tokenize_methods(N_SENTENCES)
        except (FileNotFoundError, ImportError) as exc:
            raise NotImplementedError(str(exc)) from None
        if method not in methods:
            raise NotImplementedError(f"{method} is not installed")
        self.run = methods[method]
        self.run()  # the character tables are built on the first call

    def time_tokenize(self, method):
        self.run()
