"""Evaluation: prompt alignment on `shapes` (`alignment`), FID / KID (`fid`) and the paper's experiments at CPU
scale (`experiments`, written up by `experiments_report`).

Names are imported lazily, so `import studio.eval` stays light (no torch / scipy until they are used).
The FID function itself is `studio.eval.fid.fid` (`studio.eval.fid` is the module).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "QUESTIONS": "alignment", "AlignmentReport": "alignment", "QuestionStats": "alignment",
    "DetectedObject": "alignment", "Detection": "alignment", "detect_objects": "alignment",
    "answer_questions": "alignment", "check_image": "alignment", "evaluate_alignment": "alignment",
    "checker_ceiling": "alignment", "align_model": "alignment", "format_question_table": "alignment",
    "inception_features": "fid", "kid": "fid", "frechet_distance": "fid",
    "feature_stats": "fid", "reference_features": "fid", "fid_model": "fid", "inception_path": "fid",
    "ExperimentScale": "experiments", "run_experiments": "experiments",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"studio.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'studio.eval' has no attribute {name!r}")
