"""Untangling Features: the course library (reference SAEs, training, data, models, checks).

The import name ``utils`` is common, so :mod:`utils.runtime` checks that the ``utils`` a
notebook imports is this one (see ``COURSE_MARKER``).
"""

COURSE_MARKER = "untangling-features"
__version__ = "0.1.0"
