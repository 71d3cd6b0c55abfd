"""The Numenta Anomaly Benchmark for citylab: corpus loading, the runner and the project's own scorer.

The runner (``bench.nab.runner``) streams every CSV of the corpus through the production
detector, ``stream.StreamProcessor``, one file per series, and writes NAB's results format.
The scorer (``bench.nab.scorer``) follows the method of the NAB paper and whitepaper: a
probationary period, scaled-sigmoid weighting of the earliest detection in each window,
weighted false positives, one threshold per profile for the whole corpus, and normalisation
so that the null detector scores 0 and the perfect detector 100.
"""

from __future__ import annotations

from bench.nab.corpus import CorpusFile, load_corpus
from bench.nab.scorer import PROFILES, CorpusScore, FileLabels, Profile, label_points, score_corpus

__all__ = [
    "PROFILES",
    "CorpusFile",
    "CorpusScore",
    "FileLabels",
    "Profile",
    "label_points",
    "load_corpus",
    "score_corpus",
]
