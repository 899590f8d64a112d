"""The model layer: pure domain code (records, rules, online models), no I/O.

Importing it defers library sub-packages the models never use while serving
(:mod:`models.deferred_imports`), which halves a pipeline process's start-up.
"""

from models.deferred_imports import defer_library_imports

defer_library_imports()
