"""samdesk: label images with Segment Anything.

The package root holds the Qt-free, torch-free core: projects, images, masks,
annotations and undo history. ``samdesk.inference`` owns the models,
``samdesk.export`` the file formats and ``samdesk.views`` the window.
"""

__version__ = "0.1.0"
