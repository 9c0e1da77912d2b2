"""Exceptions raised for invalid input data."""


class DataFormatError(ValueError):
    """An input file or table is malformed; the message names the file, line and value."""


class DataNotFoundError(FileNotFoundError):
    """A data file is missing locally and could not be downloaded."""
