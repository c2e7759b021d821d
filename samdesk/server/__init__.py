"""``samdesk serve``: the HTTP server that shares one machine's models.

Routes, pydantic request models, the scheduler that owns the models and the
remote engine a desktop uses go here. It may import the engines, the models
and the core; never Qt, the views or the window's worker.
"""
