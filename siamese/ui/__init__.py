"""`siamese ui`: the systems of a run side by side on the user's own queries (``app.py``)."""
