"""Inference: everything that runs a model, in three rooms.

- :mod:`.models`: what each model is and where its checkpoint lives;
- :mod:`.engines`: the model families behind the Engine and Detector protocols;
- :mod:`.worker`: the QThread worker and its client, which own the engines.

Each room imports only the rooms listed before it; ``docs/architecture.md`` draws it.
"""
