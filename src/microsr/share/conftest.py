"""Without the optional ``bioimageio`` extra, the modules that import it are not collected for doctests."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("bioimageio.core") else ["bioimageio.py", "package.py"]
