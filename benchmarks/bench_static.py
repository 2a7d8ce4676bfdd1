"""Static embeddings: pooled lookups over real-text CSR ids and StaticEmbedding.encode, against
torch's EmbeddingBag and model2vec where installed (cases from fastembed._bench_static, shared
with the report)."""

from fastembed import _bench_static as cases

from .common import available, prepared

N_SENTENCES = 10_000


def warm_method(methods, method):
    """The named callable of ``methods(N_SENTENCES)``, called once (JIT, pools, character tables);
    NotImplementedError (asv: skipped) without the model package or the peer."""
    try:
        found = methods(N_SENTENCES)
    except (FileNotFoundError, ImportError) as exc:
        raise NotImplementedError(str(exc)) from None
    return available(found, method)


class PooledLookup:
    params = ["fastembed dense", "fastembed factorized r=64", "torch EmbeddingBag(mean)"]
    param_names = ["method"]

    @prepared
    def setup(self, method):
        return warm_method(cases.pooled_methods, method)

    def time_pool(self, method):
        self.run()


class StaticEncode:
    params = ["fastembed encode", "fastembed tokenizer alone", "model2vec encode"]
    param_names = ["method"]
    timeout = 300

    @prepared
    def setup(self, method):
        return warm_method(cases.encode_methods, method)

    def time_encode(self, method):
        self.run()


class EncodeQuery:
    params = ["fastembed encode", "model2vec encode"]
    param_names = ["method"]
    number = 100  # a sample: 100 queries, each timed alone (see bench_lookup.DecodeStep)

    @prepared
    def setup(self, method):
        return warm_method(lambda n: cases.query_methods(), method)

    def time_encode_query(self, method):
        self.run()


class Tokenize:
    params = ["fastembed WordPiece", "tokenizers encode_batch_fast", "tokenizers encode_batch", "UTF-8 encode and join"]
    param_names = ["method"]
    timeout = 300

    @prepared
    def setup(self, method):
        return warm_method(cases.tokenize_methods, method)

    def time_tokenize(self, method):
        self.run()
