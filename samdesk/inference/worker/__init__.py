"""The worker: immutable requests with ids, results, the embedding cache, the
QThread ``InferenceWorker`` that owns every model and the GUI-side
``InferenceClient``. The only place in ``samdesk.inference`` that imports Qt.
"""
