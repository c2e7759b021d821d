"""Engines: the Engine and Detector protocols and one module per model family.

SAM, SAM 2, GrabCut and GroundingDINO, the pieces they share (decoding,
upsampling, block-by-block encoding, devices) and :mod:`.loading`, which turns a
model name into an engine. Torch and the model libraries are imported here and
below; never Qt, the project, the worker or the views.
"""
