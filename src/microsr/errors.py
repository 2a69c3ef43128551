"""The one exception type that means "the user's input is wrong"."""


class InputError(ValueError):
    """A problem with user input: a path, a file, a parameter or an image.

    The message alone must tell the user what is wrong (naming the file or
    parameter) and what to do about it. The CLI prints it without a traceback
    and exits with code 2.

    Examples
    --------
    >>> raise InputError("image.tif: file not found. Check the path.")
    Traceback (most recent call last):
    ...
    microsr.errors.InputError: image.tif: file not found. Check the path.
    """
