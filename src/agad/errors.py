"""Errors that the CLI turns into one line on stderr and exit code 2."""


class AgadError(ValueError):
    """Bad user input: the message names what is wrong and what to do."""


class DataError(AgadError):
    """A dataset file or directory is missing, corrupt or inconsistent."""
