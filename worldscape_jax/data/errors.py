"""The one error type of the data layer (defined with the project's other input errors in worldscape_jax/errors.py).

Every reader and pipeline stage raises `DataFormatError` for bad input, with a message that names the
file, the line / frame / key where the problem is, and what was expected. It subclasses
`WorldscapeInputError` (and so ValueError): launch scripts catch the base class, and callers that
already catch ValueError keep working; tests catch `DataFormatError` itself.
"""

from worldscape_jax.errors import DataFormatError, WorldscapeInputError

__all__ = ["DataFormatError", "WorldscapeInputError"]
