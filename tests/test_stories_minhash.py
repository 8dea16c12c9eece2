"""Story signatures are computed without datasketch (whose import brings scipy) and must
equal datasketch's own MinHash bit for bit: signatures are stored, and one computed
differently would never match an article stored before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasketch import MinHash  # type: ignore[import-untyped]

from monitor.stories import (
    MAX_WORDS,
    NUM_PERM,
    _shingle_hashes,
    signature,
    text_words,
)
from tests.corpus import require_corpus


def datasketch_signature(text: str) -> bytes | None:
    words = text_words(text[: MAX_WORDS * 12])[:MAX_WORDS]
    if signature(text) is None:
        return None
    permutations = MinHash(num_perm=NUM_PERM, seed=1, scheme="affine32").permutations
    sketch = MinHash(num_perm=NUM_PERM, permutations=permutations, scheme="affine32", hashfunc=int)
    sketch.update_batch(_shingle_hashes(words))
    stored: bytes = sketch.hashvalues.astype(np.dtype("<u4")).tobytes()
    return stored


def corpus_texts(limit: int) -> list[str]:
    texts: list[str] = []
    for path in sorted(require_corpus("articles").glob("*/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        text = data.get("text") or data.get("articleBody") or ""
        if isinstance(text, str) and len(text.split()) > 20:
            texts.append(text)
        if len(texts) >= limit:
            break
    return texts


def test_signatures_equal_datasketchs_on_corpus_articles() -> None:
    texts = corpus_texts(300)
    assert len(texts) >= 100
    for text in texts:
        assert signature(text) == datasketch_signature(text)


@pytest.mark.parametrize(
    "text",
    [
        "un deux trois quatre cinq six sept huit neuf dix onze douze " * 8,
        "Le Togo et le Bénin signent un accord de coopération militaire à Lomé, mardi. " * 40,
        " ".join(f"mot{n}" for n in range(2000)),  # beyond MAX_WORDS
    ],
)
def test_signatures_equal_datasketchs_on_edge_texts(text: str) -> None:
    assert signature(text) is not None
    assert signature(text) == datasketch_signature(text)
