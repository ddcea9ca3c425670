"""Evaluation: prompt alignment on `shapes` (`alignment`), FID / KID (`fid`), the sampling frontier
(`frontier`), the paper's experiments at CPU scale (`experiments`, written up by `experiments_report`) and the
prompt-following recipe sweep (`recipe`, `recipe_report`). Import names from their module, e.g.
`from studio.eval.alignment import align_model`.
"""
