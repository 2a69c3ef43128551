"""The one exception type that means "the user's input is wrong", and how to say it in one line."""


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


def one_line(exc: BaseException) -> str:
    """A parser's complaint on one line: what is wrong and where, without its multi-line excerpt of the file.

    Examples
    --------
    >>> import yaml
    >>> try:
    ...     yaml.safe_load("steps: [a\\n")
    ... except yaml.YAMLError as exc:
    ...     print(one_line(exc))
    line 2, column 1: expected ',' or ']', but got '<stream end>'
    """
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(exc).split())
