"""Errors shown to users without a traceback: the message says what is wrong and how to fix it."""


class UserFacingError(Exception):
    """An error whose message names the file, line, field or setting at fault."""
