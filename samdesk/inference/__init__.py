"""Models: engines for SAM, SAM 2, GroundingDINO and GrabCut, the embedding
cache, the model registry and the QThread worker that owns them all.

Only ``worker.py`` imports Qt (QtCore). Nothing here imports ``samdesk.views``.
"""
