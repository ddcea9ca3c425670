"""Data: the procedural `shapes` set, folders of captioned images, and pixel caches.

Modules: `scene` (the vocabulary and scene types, no torch), `shapes` (sampling, captions, rendering,
`ShapesDataset`), `folder` (folders of captioned images), `emoji` (the emoji sets from npm packages), `cache`
(pixel caches, `collate_samples`). Every data set yields sample dicts: image (float (3, R, R) in [-1, 1]),
caption, index, and per source `scene` / `metadata`. Import names from their module, e.g.
`from studio.data.shapes import heldout_captions`.
"""
