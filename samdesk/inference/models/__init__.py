"""Models: the registry of known checkpoints, installed and registered files,
verified resumable downloads and where files live. No torch, no engines.
"""
