"""Errors the user can act on. Every message names the problem and the fix; the CLI and the app print
them as they are, without a traceback."""


class StudioError(Exception):
    """Base class of user-facing errors."""


class ModelNotFoundError(StudioError):
    pass


class ModelFormatError(StudioError):
    """A folder or file that is not a studio model, or is corrupted."""


class ConfigError(StudioError, ValueError):
    """A bad configuration key or value."""


class DataError(StudioError):
    """Missing, empty or malformed data."""
